#include "bench/table.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <stdlib.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "autotune/cuda_driver.hpp"
#include "bench/first_launch.hpp"
#include "bench/inputs.hpp"
#include "compiler/error.hpp"
#include "runtime/runtime.hpp"

namespace moejit::bench {
namespace {

namespace fs = std::filesystem;

// A private directory for the fresh caches of the cold tunes, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "moejit-bench-XXXXXX").string();
    if (!::mkdtemp(pattern.data()))
      throw Error("mkdtemp '" + pattern + "' failed: " + std::strerror(errno));
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;  // best effort: a leftover temp dir is no reason to fail
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

struct RowContext {
  const BenchOptions& options;
  std::string device;
  std::string date;
  fs::path fresh_cache_dir;
};

nlohmann::json row_header(const RowContext& ctx, const ModelPreset& preset, Projection proj) {
  return {{"device", ctx.device},
          {"date", ctx.date},
          {"shape", preset.name},
          {"proj", to_string(proj)},
          {"tokens", ctx.options.tokens},
          {"rank", ctx.options.rank},
          {"weights", "bf16"},
          {"moejit_f_ms", nullptr},
          {"cold_tune_s", nullptr},
          {"warm_first_launch_ms", nullptr},
          {"config", nullptr}};
}

// Tunes (or loads) the kernel, times it on fresh random inputs, then measures a warm first launch.
void measure_row(const RowContext& ctx, const ModelPreset& preset, Projection proj,
                 nlohmann::json& row) {
  const BenchOptions& o = ctx.options;
  const bool cold = o.cache.empty();
  const fs::path cache =
      cold ? ctx.fresh_cache_dir / fmt::format("{}-{}.sqlite", preset.name, to_string(proj))
           : o.cache;
  const ProjectionSpec spec = projection_spec(preset, proj, o.rank);
  Runtime runtime(RuntimeOptions{.cache_path = cache, .tune = true});
  const auto tune_start = std::chrono::steady_clock::now();
  const TileConfig config = runtime.prepare(spec, o.tokens);
  const std::chrono::duration<double> tune_time = std::chrono::steady_clock::now() - tune_start;
  row["config"] = config.name();
  row["tunes"] = runtime.stats().tunes;
  if (cold) row["cold_tune_s"] = tune_time.count();
  {
    ForwardInputs inputs(spec, o.tokens, Fill::random, o.seed);
    inputs.poison_output();
    cuda::Stream stream;
    row["moejit_f_ms"] = median_forward_ms(runtime, spec, inputs.args(), stream.get(), o.timing);
    const std::int64_t nonfinite = inputs.count_nonfinite_output(4096);
    if (nonfinite != 0)
      throw Error(fmt::format("{} non-finite or unwritten values in the first 4096 output rows",
                              nonfinite));
  }  // the inputs are freed before the child allocates its own
  if (o.first_launch_child) {
    const nlohmann::json child = first_launch_in_child(o, preset, proj, cache);
    row["warm_first_launch_ms"] = child.at("warm_first_launch_ms");
    row["first_forward_ms"] = child.at("first_forward_ms");
    row["first_launch_cache_hits"] = child.at("cache_hits");
    row["first_launch_compiles"] = child.at("compiles");
  }
}

std::string optional_number(const nlohmann::json& value, const char* format) {
  return value.is_number() ? fmt::format(fmt::runtime(format), value.get<double>()) : "-";
}

void print_human_line(const nlohmann::json& row) {
  fmt::print(stderr,
             "{:<14} {:<8} T={} r={}: moejit {} ms, cold tune {} s, warm first launch {} ms, "
             "config {}{}\n",
             row["shape"].get<std::string>(), row["proj"].get<std::string>(),
             row["tokens"].get<std::int64_t>(), row["rank"].get<int>(),
             optional_number(row["moejit_f_ms"], "{:.3f}"),
             optional_number(row["cold_tune_s"], "{:.1f}"),
             optional_number(row["warm_first_launch_ms"], "{:.1f}"),
             row["config"].is_string() ? row["config"].get<std::string>() : "-",
             row.contains("error") ? " ERROR: " + row["error"].get<std::string>() : "");
}

}  // namespace

int run_table(const BenchOptions& options) {
  cuda::ContextGuard context(
      0);  // throws NoGpuError with the plain reason on a machine without one
  TempDir fresh_caches;
  const RowContext ctx{options, cuda::query_device(context.device()).name,
                       fmt::format("{:%Y-%m-%d}", fmt::gmtime(std::time(nullptr))),
                       fresh_caches.path()};
  int exit_code = 0;
  for (const ModelPreset& preset : options.presets) {
    for (Projection proj : options.projections) {
      nlohmann::json row = row_header(ctx, preset, proj);
      try {
        measure_row(ctx, preset, proj, row);
      } catch (const std::exception& e) {
        row["error"] = e.what();
        exit_code = 1;
      }
      std::cout << row.dump() << std::endl;  // flushed per row: a timeout keeps the rows so far
      print_human_line(row);
    }
  }
  return exit_code;
}

}  // namespace moejit::bench
