#pragma once
// MoE shapes of public models, for `moejit warm --model` and the benchmarks.
#include <optional>
#include <span>
#include <string_view>

#include "compiler/problem.hpp"

namespace moejit {

struct ModelPreset {
  std::string_view name;
  int experts;
  int top_k;
  int hidden;
  int intermediate;  // per-expert intermediate size I
  WeightLayout layout;
  bool bias;
};

std::span<const ModelPreset> model_presets();
std::optional<ModelPreset> find_preset(std::string_view name);

enum class Projection { gate_up, down };
std::string_view to_string(Projection);

// The ProjectionSpec of one projection of a MoE layer (SPEC.md "Names"): gate_up has K = H,
// N = 2I and an ungrouped input with grouped output; down has K = I, N = H, grouped input and
// scattered output.
ProjectionSpec projection_spec(const ModelPreset& model, Projection proj, int rank,
                               DType act = DType::bf16, DType lora = DType::bf16);

}  // namespace moejit
