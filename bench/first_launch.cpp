#include "bench/first_launch.hpp"

#include <fmt/format.h>

#include <sstream>
#include <string>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "bench/child_process.hpp"
#include "bench/inputs.hpp"
#include "compiler/error.hpp"
#include "runtime/runtime.hpp"

namespace moejit::bench {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// The child may print more than the JSON line (nothing does today); the last line is the answer.
nlohmann::json last_json_line(const std::string& text) {
  std::istringstream lines(text);
  std::string line, last;
  while (std::getline(lines, line))
    if (!line.empty()) last = line;
  const auto parsed = nlohmann::json::parse(last, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object())
    throw Error("the first-launch child printed no JSON object; its stdout was: '" + text + "'");
  return parsed;
}

}  // namespace

nlohmann::json measure_first_launch(const BenchOptions& options, const RowSpec& row,
                                    Clock::time_point main_start) {
  cuda::ContextGuard context(0);
  const auto context_ready = Clock::now();
  const ProjectionSpec spec = row_spec(row, options);
  ProblemInputs inputs(spec, row.tokens, Fill::pattern, options.seed, /*with_backward=*/false);
  cuda::Stream stream;
  const auto inputs_ready = Clock::now();

  // As the parent ran the row: an untuned row's entry would otherwise be tuned in place, inside
  // the timed first launch.
  Runtime runtime(RuntimeOptions{.cache_path = options.cache, .tune = options.tunes(row.weights)});
  runtime.forward(spec, inputs.forward_args(/*save_xa=*/false), stream.get());
  stream.synchronize();
  const auto done = Clock::now();

  const RuntimeStats stats = runtime.stats();
  return {{"warm_first_launch_ms", ms_between(main_start, done)},
          {"first_forward_ms", ms_between(inputs_ready, done)},
          {"context_ms", ms_between(main_start, context_ready)},
          {"inputs_ms", ms_between(context_ready, inputs_ready)},
          {"cache_hits", stats.cache_hits},
          {"cache_misses", stats.cache_misses},
          {"compiles", stats.compiles},
          {"tunes", stats.tunes}};
}

nlohmann::json first_launch_in_child(const BenchOptions& options, const RowSpec& row,
                                     const std::filesystem::path& cache) {
  std::vector<std::string> argv = {options.self_exe.string(),
                                   "--first-launch",
                                   "--cache",
                                   cache.string(),
                                   "--preset",
                                   std::string(row.preset.name),
                                   "--proj",
                                   std::string(to_string(row.projection)),
                                   "--tokens",
                                   std::to_string(row.tokens),
                                   "--weights",
                                   std::string(to_string(row.weights)),
                                   "--rank",
                                   std::to_string(options.rank),
                                   "--b-storage",
                                   std::string(to_string(options.b_storage)),
                                   "--tune-weights"};
  // The child tunes its row exactly when this process did: the row's format, or every other one.
  const bool tuned = options.tunes(row.weights);
  for (const BenchWeights w : kAllWeights)
    if ((w == row.weights) == tuned) argv.emplace_back(to_string(w));
  const ChildOutput out = run_capturing_stdout(argv);
  if (out.exit_code != 0)
    throw Error(fmt::format("the first-launch child '{} --first-launch ...' exited with status {}",
                            argv[0], out.exit_code));
  return last_json_line(out.stdout_text);
}

}  // namespace moejit::bench
