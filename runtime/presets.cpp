#include "runtime/presets.hpp"

#include <array>

namespace moejit {
namespace {

constexpr std::array<ModelPreset, 4> kPresets{{
    {"qwen3-30b-a3b", 128, 8, 2048, 768, WeightLayout::out_in, false},
    {"olmoe-1b-7b", 64, 8, 2048, 1024, WeightLayout::out_in, false},
    {"mixtral-8x7b", 8, 2, 4096, 14336, WeightLayout::out_in, false},
    {"gpt-oss-20b", 32, 4, 2880, 2880, WeightLayout::in_out, true},
}};

}  // namespace

std::span<const ModelPreset> model_presets() {
  return kPresets;
}

std::optional<ModelPreset> find_preset(std::string_view name) {
  for (const auto& p : kPresets)
    if (p.name == name) return p;
  return std::nullopt;
}

std::string_view to_string(Projection p) {
  return p == Projection::gate_up ? "gate_up" : "down";
}

ProjectionSpec projection_spec(const ModelPreset& model, Projection proj, int rank, DType act,
                               DType lora) {
  ProjectionSpec s;
  s.experts = model.experts;
  s.top_k = model.top_k;
  s.rank = rank;
  s.act = act;
  s.lora = lora;
  s.weights = act == DType::fp16 ? WeightFormat::fp16 : WeightFormat::bf16;
  s.layout = model.layout;
  s.has_bias = model.bias;
  s.b_storage = BStorage::peft;
  if (proj == Projection::gate_up) {
    s.in_features = model.hidden;
    s.out_features = 2 * model.intermediate;
    s.grouped_in = false;
    s.grouped_out = true;
  } else {
    s.in_features = model.intermediate;
    s.out_features = model.hidden;
    s.grouped_in = true;
    s.grouped_out = false;
  }
  return s;
}

}  // namespace moejit
