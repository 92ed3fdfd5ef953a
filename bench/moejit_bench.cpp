// moejit_bench: forward time, cold tune time and warm first launch of moejit on the MoE shapes of
// public models, as JSON lines (see bench/README.md).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
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

struct CommandLine {
  std::vector<std::string> presets;
  std::string preset;
  std::string proj;
  std::string cache;
  bool first_launch = false;
  bool no_first_launch = false;
};

void add_options(CLI::App& app, CommandLine& cl, BenchOptions& o) {
  app.add_option("--presets", cl.presets, "presets to measure (default: all)")->delimiter(',');
  app.add_option("--tokens", o.tokens, "tokens T per forward")->capture_default_str();
  app.add_option("--rank", o.rank, "LoRA rank r")->capture_default_str();
  app.add_option("--cache", cl.cache,
                 "use this cache instead of a fresh one per row (no cold tune is timed)");
  app.add_option("--proj", cl.proj, "gate_up or down (default: both)");
  app.add_option("--warmup", o.timing.warmup, "untimed launches")->capture_default_str();
  app.add_option("--reps", o.timing.reps, "timed launches (median)")->capture_default_str();
  app.add_option("--seed", o.seed, "seed of inputs and routing")->capture_default_str();
  app.add_flag("--no-first-launch", cl.no_first_launch, "skip the warm first-launch child");
  app.add_flag("--first-launch", cl.first_launch,
               "measure one warm first launch (needs --cache, --preset, --proj)");
  app.add_option("--preset", cl.preset, "the preset of --first-launch");
}

BenchOptions resolve(const CommandLine& cl, BenchOptions o) {
  o.cache = cl.cache;
  o.first_launch_child = !cl.no_first_launch;
  if (cl.presets.empty()) {
    for (const auto& p : model_presets()) o.presets.push_back(p);
  } else {
    for (const auto& name : cl.presets) o.presets.push_back(preset_named(name, "--presets"));
  }
  if (cl.proj.empty())
    o.projections = {Projection::gate_up, Projection::down};
  else
    o.projections = {projection_named(cl.proj, "--proj")};
  o.self_exe = std::filesystem::read_symlink("/proc/self/exe");
  return o;
}

int first_launch_mode(const CommandLine& cl, const BenchOptions& o,
                      std::chrono::steady_clock::time_point main_start) {
  if (cl.cache.empty() || cl.preset.empty() || cl.proj.empty())
    throw InvalidArgument("--first-launch", "without --cache, --preset or --proj",
                          "all three: the warm cache, the preset and the projection");
  const nlohmann::json result = measure_first_launch(
      o, preset_named(cl.preset, "--preset"), projection_named(cl.proj, "--proj"), main_start);
  std::cout << result.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const auto main_start = std::chrono::steady_clock::now();
  CLI::App app{
      "moejit_bench: moejit forward time, cold tune and warm first launch per model shape"};
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
