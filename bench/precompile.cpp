#include "bench/precompile.hpp"

#include <algorithm>
#include <atomic>
#include <thread>

#include "autotune/cuda_driver.hpp"
#include "runtime/runtime.hpp"

namespace moejit::bench {
namespace {

void compile_defaults(const BenchOptions& o, const PrecompileJob& job) {
  const ProjectionSpec spec = row_spec(job.row, o);
  Runtime runtime(
      RuntimeOptions{.cache_path = job.cache, .tune = false, .gemm_config = o.gemm_config});
  runtime.prepare(spec, job.row.tokens, o.backward);
}

}  // namespace

void precompile_untuned(const BenchOptions& options, const std::vector<PrecompileJob>& jobs) {
  std::atomic<std::size_t> next{0};
  // A job that fails (or a worker that cannot make the context current) is not an error here:
  // each row's measurement runs the same preparation again and reports what fails.
  auto worker = [&] {
    try {
      // The primary context, current on this thread for the worker's lifetime: the Runtimes below
      // then only borrow it, and nothing here changes the main thread's current context.
      const cuda::ContextGuard context(0);
      for (std::size_t i = next++; i < jobs.size(); i = next++) {
        try {
          compile_defaults(options, jobs[i]);
        } catch (const std::exception&) {
        }
      }
    } catch (const std::exception&) {
    }
  };
  const std::size_t workers =
      std::min<std::size_t>(jobs.size(), std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::jthread> threads;
  for (std::size_t i = 0; i < workers; ++i) threads.emplace_back(worker);
}

}  // namespace moejit::bench
