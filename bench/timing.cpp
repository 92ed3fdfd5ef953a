#include "bench/timing.hpp"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "compiler/error.hpp"

namespace moejit::bench {

double median_ms(CUstream stream, const TimingOptions& options,
                 const std::function<void()>& launch) {
  if (options.reps < 1) throw InvalidArgument("reps", std::to_string(options.reps), "at least 1");
  for (int i = 0; i < options.warmup; ++i) launch();
  // cuda::Event is neither copyable nor movable, so the vectors hold owners.
  std::vector<std::unique_ptr<cuda::Event>> starts, stops;
  for (int i = 0; i < options.reps; ++i) {
    starts.push_back(std::make_unique<cuda::Event>());
    stops.push_back(std::make_unique<cuda::Event>());
  }
  for (int i = 0; i < options.reps; ++i) {
    starts[i]->record(stream);
    launch();
    stops[i]->record(stream);
  }
  std::vector<double> ms;
  for (int i = 0; i < options.reps; ++i) ms.push_back(stops[i]->elapsed_since(*starts[i]));
  const auto middle = ms.begin() + static_cast<std::ptrdiff_t>(ms.size() / 2);
  std::nth_element(ms.begin(), middle, ms.end());
  return *middle;
}

}  // namespace moejit::bench
