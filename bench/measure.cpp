#include "bench/measure.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "autotune/cuda_driver.hpp"
#include "bench/first_launch.hpp"
#include "bench/inputs.hpp"
#include "compiler/error.hpp"
#include "runtime/runtime.hpp"
#include "runtime/warm.hpp"

namespace moejit::bench {
namespace {

constexpr std::int64_t kCheckedRows = 4096;  // rows of y and dx downloaded and checked
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

void require_finite(std::int64_t nonfinite, const char* what) {
  if (nonfinite != 0)
    throw Error(fmt::format("{} non-finite or unwritten values in {}", nonfinite, what));
}

// Tunes every kernel the row runs; returns the seconds it took and records the configs.
double prepare_all(Runtime& runtime, const ProjectionSpec& spec, const BenchOptions& o,
                   const RowSpec& row, nlohmann::json& out) {
  const auto start = std::chrono::steady_clock::now();
  const TileConfig config = runtime.prepare(spec, row.tokens, o.backward);
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
  out["config"] = config.name();
  if (o.backward) {
    nlohmann::json configs = nlohmann::json::object();
    for (const ProjectionSpec& op : backward_ops(spec))
      if (op.op == OpKind::backward_dx || op.op == OpKind::grad_a || op.op == OpKind::grad_b)
        configs[std::string(to_string(op.op))] = runtime.prepare(op, row.tokens).name();
    out["backward_configs"] = configs;
  }
  return seconds.count();
}

void time_launches(Runtime& runtime, const ProjectionSpec& spec, const BenchOptions& o,
                   const RowSpec& row, nlohmann::json& out) {
  ProblemInputs inputs(spec, row.tokens, Fill::random, o.seed, o.backward);
  inputs.poison_outputs();
  cuda::Stream stream;
  const ForwardArgs forward = inputs.forward_args(/*save_xa=*/false);
  out["moejit_f_ms"] =
      median_ms(stream.get(), o.timing, [&] { runtime.forward(spec, forward, stream.get()); });
  require_finite(inputs.count_nonfinite_forward(kCheckedRows), "the first rows of y");
  if (!o.backward) return;
  inputs.poison_outputs();
  const ForwardArgs saving = inputs.forward_args(/*save_xa=*/true);
  const BackwardArgs backward = inputs.backward_args();
  out["moejit_fb_ms"] = median_ms(stream.get(), o.timing, [&] {
    runtime.forward(spec, saving, stream.get());
    runtime.backward(spec, backward, stream.get());
  });
  require_finite(inputs.count_nonfinite_backward(kCheckedRows), "the first rows of dx, dA or dB");
  out["peak_extra_gib"] = static_cast<double>(inputs.extra_bytes()) / kGiB;
}

bool wants_first_launch(const BenchOptions& o, const RowSpec& row) {
  return std::ranges::find(o.first_launch_weights, row.weights) != o.first_launch_weights.end();
}

}  // namespace

void measure_row(const BenchOptions& o, const RowSpec& row, const std::filesystem::path& cache,
                 bool cold, nlohmann::json& out) {
  const ProjectionSpec spec = row_spec(row, o);
  const bool tune = o.tunes(row.weights);
  out["tuned"] = tune;
  {
    Runtime runtime(RuntimeOptions{.cache_path = cache,
                                   .tune = tune,
                                   .gemm_config = tune ? std::nullopt : o.gemm_config,
                                   .grad_b_sms = o.grad_b_sms});
    const double tune_seconds = prepare_all(runtime, spec, o, row, out);
    // A pin applies on a cache miss; an entry already in --cache would win, so check.
    if (!tune && o.gemm_config) {
      if (out["config"] != o.gemm_config->name())
        throw Error(fmt::format("--gemm-config {}: the row ran {} from the cache instead",
                                o.gemm_config->name(), out["config"].get<std::string>()));
      out["pinned"] = true;
    }
    if (cold && tune) {
      out["cold_tune_s"] = tune_seconds;
      // Where the cold tune went: NVRTC compiles, and set-up, timing and result checks.
      out["cold_tune_compile_s"] = runtime.stats().tune_compile_seconds;
      out["cold_tune_timing_s"] = runtime.stats().tune_timing_seconds;
    }
    out["tunes"] = runtime.stats().tunes;
    time_launches(runtime, spec, o, row, out);
  }  // the inputs and modules are freed before the child allocates its own
  if (!wants_first_launch(o, row)) return;
  const nlohmann::json child = first_launch_in_child(o, row, cache);
  out["warm_first_launch_ms"] = child.at("warm_first_launch_ms");
  out["first_forward_ms"] = child.at("first_forward_ms");
  out["first_launch_cache_hits"] = child.at("cache_hits");
  out["first_launch_compiles"] = child.at("compiles");
}

}  // namespace moejit::bench
