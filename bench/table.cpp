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
#include "bench/measure.hpp"
#include "bench/precompile.hpp"
#include "compiler/error.hpp"

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

struct TableContext {
  const BenchOptions& options;
  std::string device;
  std::string date;
  fs::path fresh_cache_dir;
};

// Every field of the report, null until measured, plus the shape that report.py's roofline needs.
nlohmann::json row_header(const TableContext& ctx, const RowSpec& row) {
  const ProjectionSpec spec = projection_spec(row.preset, row.projection, ctx.options.rank);
  return {{"device", ctx.device},
          {"date", ctx.date},
          {"shape", row.preset.name},
          {"proj", to_string(row.projection)},
          {"tokens", row.tokens},
          {"rank", ctx.options.rank},
          {"weights", to_string(row.weights)},
          {"b_storage", to_string(ctx.options.b_storage)},
          {"experts", spec.experts},
          {"top_k", spec.top_k},
          {"in_features", spec.in_features},
          {"out_features", spec.out_features},
          {"moejit_f_ms", nullptr},
          {"moejit_fb_ms", nullptr},
          {"peak_extra_gib", nullptr},
          {"cold_tune_s", nullptr},
          {"warm_first_launch_ms", nullptr},
          {"config", nullptr}};
}

fs::path cache_for(const TableContext& ctx, const RowSpec& row) {
  if (!ctx.options.cache.empty()) return ctx.options.cache;
  return ctx.fresh_cache_dir / fmt::format("{}-{}-{}-{}.sqlite", row.preset.name,
                                           to_string(row.projection), row.tokens,
                                           to_string(row.weights));
}

std::string optional_number(const nlohmann::json& value, const char* format) {
  return value.is_number() ? fmt::format(fmt::runtime(format), value.get<double>()) : "-";
}

void print_human_line(const nlohmann::json& row) {
  fmt::print(stderr,
             "{:<14} {:<8} {:<6} T={} r={}: moejit f {} ms, f+b {} ms, extra {} GiB, cold tune {} "
             "s, warm first launch {} ms, config {}{}\n",
             row["shape"].get<std::string>(), row["proj"].get<std::string>(),
             row["weights"].get<std::string>(), row["tokens"].get<std::int64_t>(),
             row["rank"].get<int>(), optional_number(row["moejit_f_ms"], "{:.3f}"),
             optional_number(row["moejit_fb_ms"], "{:.3f}"),
             optional_number(row["peak_extra_gib"], "{:.3f}"),
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
  const TableContext ctx{options, cuda::query_device(context.device()).name,
                         fmt::format("{:%Y-%m-%d}", fmt::gmtime(std::time(nullptr))),
                         fresh_caches.path()};
  std::vector<PrecompileJob> untuned;
  for (const RowSpec& row : options.rows)
    if (!options.tunes(row.weights)) untuned.push_back({row, cache_for(ctx, row)});
  precompile_untuned(options, untuned);
  int exit_code = 0;
  for (const RowSpec& row : options.rows) {
    nlohmann::json out = row_header(ctx, row);
    const auto start = std::chrono::steady_clock::now();
    try {
      measure_row(options, row, cache_for(ctx, row), options.cache.empty(), out);
    } catch (const std::exception& e) {
      out["error"] = e.what();
      exit_code = 1;
    }
    // What the row cost in wall time, to plan how many rows fit in a device run.
    out["row_wall_s"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << out.dump() << std::endl;  // flushed per row: a timeout keeps the rows so far
    print_human_line(out);
  }
  return exit_code;
}

}  // namespace moejit::bench
