#pragma once
// `moejit warm` flags and their translation into the ProjectionSpecs of one MoE layer.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cache/store.hpp"
#include "compiler/problem.hpp"
#include "runtime/presets.hpp"

namespace moejit::cli {

inline constexpr const char* kDefaultOfflineArch = "sm_90a";

struct WarmFlags {
  std::string model;
  std::string hf_config;    // path of a Hugging Face config.json
  bool from_cache = false;  // tune the shapes the cache holds offline builds of
  int experts = 0, top_k = 0, hidden = 0, intermediate = 0;
  std::string layout = "out_in";
  bool bias = false;
  std::int64_t tokens = 8192;
  int rank = 16;
  std::string weights = "bf16";  // bf16|fp16|nf4|nf4-dq|int8 (int8_rowwise)
  std::string act;               // activations; empty: the weights' dtype, bf16 for quantized ones
  int blocksize = 0;             // nf4's quantization block; 0: 64
  std::string lora = "bf16";
  bool forward_only = false;  // without the backward's kernels
  std::string arch;  // empty: kDefaultOfflineArch without a GPU, the GPU's own target with one
  std::string cache;
  bool no_tune = false;
  double wait_seconds = 600;  // for another process warming the same shape
};

void add_warm_flags(CLI::App& command, WarmFlags& flags);

struct WarmTarget {
  Projection projection;
  ProjectionSpec spec;
  std::int64_t tokens = 0;
};

// The base-weight fields of a ProjectionSpec that --weights names.
struct WarmWeights {
  WeightFormat format = WeightFormat::bf16;
  bool double_quant = false;
};
// bf16, fp16, nf4, nf4-dq (nf4 with double quantization), int8 or int8_rowwise; otherwise
// InvalidArgument naming `argument`.
WarmWeights parse_warm_weights(const std::string& text, std::string_view argument);

// The gate_up and down projections the flags describe, validated. Throws CLI::RequiredError when
// neither --model, --hf-config nor the explicit shape is given, InvalidArgument for values
// SPEC.md rejects or a malformed config file.
std::vector<WarmTarget> warm_targets(const WarmFlags& flags);

// One target per offline build for `arch` in `entries` (for --from-cache), at its token bucket.
std::vector<WarmTarget> offline_build_targets(const std::vector<CacheEntry>& entries,
                                              const std::string& arch);

}  // namespace moejit::cli
