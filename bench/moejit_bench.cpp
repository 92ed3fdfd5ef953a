// moejit_bench: forward and forward + backward times, cold tune time, extra memory and warm first
// launch of moejit on the MoE shapes of public models, per base-weight format, as JSON lines (see
// bench/README.md).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "bench/first_launch.hpp"
#include "bench/options.hpp"
#include "bench/table.hpp"
#include "compiler/error.hpp"

namespace {

using namespace moejit;
using namespace moejit::bench;

ModelPreset preset_named(const std::string& name, const char* argument) {
  if (auto preset = find_preset(name)) return *preset;
  std::string known;
  for (const auto& p : model_presets()) known += (known.empty() ? "" : ", ") + std::string(p.name);
  throw InvalidArgument(argument, "'" + name + "'", "one of " + known);
}

Projection projection_named(const std::string& name, const char* argument) {
  for (Projection p : {Projection::gate_up, Projection::down})
    if (to_string(p) == name) return p;
  throw InvalidArgument(argument, "'" + name + "'", "gate_up or down");
}

std::vector<BenchWeights> weights_named(const std::vector<std::string>& names,
                                        const char* argument) {
  std::vector<BenchWeights> out;
  for (const auto& name : names) out.push_back(parse_bench_weights(name, argument));
  return out;
}

struct CommandLine {
  std::vector<std::string> presets;
  std::string proj;
  std::int64_t tokens = 8192;
  std::vector<std::string> weights = {"bf16"};
  std::vector<std::int64_t> sweep_tokens;
  std::string sweep_preset = "qwen3-30b-a3b";
  std::vector<std::string> sweep_weights = {"bf16"};
  bool sweep_only = false;
  std::vector<std::string> first_launch_weights = {"bf16"};
  std::vector<std::string> tune_weights = {"bf16", "nf4", "nf4-dq", "int8"};
  bool no_first_launch = false;
  bool no_backward = false;
  std::string cache;
  bool first_launch = false;
  std::string preset;
  std::string gemm_config;
  std::string b_storage = "peft";
};

void add_row_options(CLI::App& app, CommandLine& cl) {
  app.add_option("--presets", cl.presets, "presets to measure (default: all)")->delimiter(',');
  app.add_option("--proj", cl.proj, "gate_up or down (default: both)");
  app.add_option("--tokens", cl.tokens, "tokens T per step")->capture_default_str();
  app.add_option("--weights", cl.weights, "base-weight formats, each a row: bf16,nf4,nf4-dq,int8")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--tokens-sweep", cl.sweep_tokens,
                 "also measure --sweep-preset at each of these token counts (e.g. "
                 "1024,4096,8192,32768)")
      ->delimiter(',');
  app.add_option("--sweep-preset", cl.sweep_preset, "the preset of --tokens-sweep")
      ->capture_default_str();
  app.add_option("--sweep-weights", cl.sweep_weights, "the weight formats of --tokens-sweep")
      ->delimiter(',')
      ->capture_default_str();
  app.add_flag("--sweep-only", cl.sweep_only, "measure only the --tokens-sweep rows");
}

void add_options(CLI::App& app, CommandLine& cl, BenchOptions& o) {
  add_row_options(app, cl);
  app.add_option("--rank", o.rank, "LoRA rank r")->capture_default_str();
  app.add_option("--cache", cl.cache,
                 "use this cache instead of a fresh one per row (no cold tune is timed)");
  app.add_option("--warmup", o.timing.warmup, "untimed launches")->capture_default_str();
  app.add_option("--reps", o.timing.reps, "timed launches (median)")->capture_default_str();
  app.add_option("--seed", o.seed, "seed of inputs and routing")->capture_default_str();
  app.add_option("--b-storage", cl.b_storage, "LoRA B storage: peft, expert_major or stacked")
      ->capture_default_str();
  app.add_option("--tune-weights", cl.tune_weights,
                 "weight formats whose rows are autotuned and their cold tune timed; the other "
                 "rows run the default configs, compiled ahead in parallel")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--gemm-config", cl.gemm_config,
                 "a tile config name (e.g. m128n256k64_w8x1_s4_tma) that the forward and dX of "
                 "the untuned rows run instead of the default");
  app.add_option("--grad-b-sms", o.grad_b_sms,
                 "SMs the backward leaves to dB beside dX (RuntimeOptions::grad_b_sms; -1: "
                 "chosen from the shape, 0: dB after dX)")
      ->capture_default_str();
  app.add_flag("--no-backward", cl.no_backward, "forward only: tune and time no backward kernels");
  app.add_flag("--no-first-launch", cl.no_first_launch, "skip the warm first-launch children");
  app.add_option("--first-launch-weights", cl.first_launch_weights,
                 "weight formats whose rows get a warm first-launch child")
      ->delimiter(',')
      ->capture_default_str();
  app.add_flag("--first-launch", cl.first_launch,
               "measure one warm first launch (needs --cache, --preset, --proj)");
  app.add_option("--preset", cl.preset, "the preset of --first-launch");
}

void add_row(std::vector<RowSpec>& rows, const RowSpec& row) {
  const bool seen = std::ranges::any_of(rows, [&](const RowSpec& r) {
    return r.preset.name == row.preset.name && r.projection == row.projection &&
           r.tokens == row.tokens && r.weights == row.weights;
  });
  if (!seen) rows.push_back(row);
}

std::vector<RowSpec> resolve_rows(const CommandLine& cl) {
  if (cl.tokens < 1) throw InvalidArgument("--tokens", std::to_string(cl.tokens), ">= 1");
  std::vector<ModelPreset> presets;
  if (cl.presets.empty()) presets.assign(model_presets().begin(), model_presets().end());
  for (const auto& name : cl.presets) presets.push_back(preset_named(name, "--presets"));
  std::vector<Projection> projections = {Projection::gate_up, Projection::down};
  if (!cl.proj.empty()) projections = {projection_named(cl.proj, "--proj")};
  std::vector<RowSpec> rows;
  if (!cl.sweep_only)
    for (const ModelPreset& preset : presets)
      for (Projection proj : projections)
        for (BenchWeights w : weights_named(cl.weights, "--weights"))
          add_row(rows, {preset, proj, cl.tokens, w});
  const ModelPreset sweep = preset_named(cl.sweep_preset, "--sweep-preset");
  for (Projection proj : projections)
    for (std::int64_t tokens : cl.sweep_tokens) {
      if (tokens < 1) throw InvalidArgument("--tokens-sweep", std::to_string(tokens), ">= 1");
      for (BenchWeights w : weights_named(cl.sweep_weights, "--sweep-weights"))
        add_row(rows, {sweep, proj, tokens, w});
    }
  return rows;
}

BenchOptions resolve(const CommandLine& cl, BenchOptions o) {
  o.cache = cl.cache;
  o.backward = !cl.no_backward;
  o.tune_weights = weights_named(cl.tune_weights, "--tune-weights");
  o.b_storage = parse_b_storage(cl.b_storage, "--b-storage");
  if (!cl.gemm_config.empty()) o.gemm_config = parse_tile_config(cl.gemm_config);
  o.first_launch_weights.clear();
  if (!cl.no_first_launch)
    o.first_launch_weights = weights_named(cl.first_launch_weights, "--first-launch-weights");
  if (!cl.first_launch) o.rows = resolve_rows(cl);
  if (o.gemm_config && !cl.first_launch &&
      std::ranges::all_of(o.rows, [&](const RowSpec& r) { return o.tunes(r.weights); }))
    throw InvalidArgument("--gemm-config", cl.gemm_config,
                          "rows that are not tuned: a --tune-weights that leaves out a format of "
                          "the rows");
  o.self_exe = std::filesystem::read_symlink("/proc/self/exe");
  return o;
}

int first_launch_mode(const CommandLine& cl, const BenchOptions& o,
                      std::chrono::steady_clock::time_point main_start) {
  if (cl.cache.empty() || cl.preset.empty() || cl.proj.empty() || cl.weights.size() != 1)
    throw InvalidArgument("--first-launch", "without --cache, --preset, --proj or one --weights",
                          "all four: the warm cache, the preset, the projection and one format");
  const RowSpec row{preset_named(cl.preset, "--preset"), projection_named(cl.proj, "--proj"),
                    cl.tokens, parse_bench_weights(cl.weights.front(), "--weights")};
  const nlohmann::json result = measure_first_launch(o, row, main_start);
  std::cout << result.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const auto main_start = std::chrono::steady_clock::now();
  CLI::App app{
      "moejit_bench: moejit forward and backward times, cold tune, extra memory and warm first "
      "launch per model shape and base-weight format"};
  CommandLine cl;
  BenchOptions defaults;
  add_options(app, cl, defaults);
  CLI11_PARSE(app, argc, argv);
  try {
    const BenchOptions options = resolve(cl, defaults);
    if (cl.first_launch) return first_launch_mode(cl, options, main_start);
    return run_table(options);
  } catch (const std::exception& e) {
    fmt::print(stderr, "moejit_bench: {}\n", e.what());
    return 1;
  }
}
