#pragma once
// `moejit warm` flags and their translation into the ProjectionSpecs of one MoE layer.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/problem.hpp"
#include "runtime/presets.hpp"

namespace moejit::cli {

inline constexpr const char* kDefaultOfflineArch = "sm_90a";

struct WarmFlags {
  std::string model;
  int experts = 0, top_k = 0, hidden = 0, intermediate = 0;
  std::string layout = "out_in";
  bool bias = false;
  std::int64_t tokens = 8192;
  int rank = 16;
  std::string weights = "bf16";
  std::string lora = "bf16";
  std::string arch;  // empty: kDefaultOfflineArch without a GPU, the GPU's own target with one
  std::string cache;
  bool no_tune = false;
};

void add_warm_flags(CLI::App& command, WarmFlags& flags);

struct WarmTarget {
  Projection projection;
  ProjectionSpec spec;
};

// The gate_up and down projections the flags describe, validated. Throws CLI::RequiredError when
// neither --model nor the explicit shape is given, InvalidArgument for values SPEC.md rejects.
std::vector<WarmTarget> warm_targets(const WarmFlags& flags);

}  // namespace moejit::cli
