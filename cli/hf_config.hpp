#pragma once
// The MoE layer a Hugging Face model config (config.json) describes, for `moejit warm --hf-config`.
#include <filesystem>
#include <string>
#include <string_view>

#include "runtime/presets.hpp"

namespace moejit::cli {

struct HfModel {
  std::string model_type;  // "qwen3_moe", "gpt_oss", ... ("" when the config has none)
  ModelPreset layer;       // name "hf-config"
};

// Reads the experts (num_experts, num_local_experts or n_routed_experts), experts per token
// (num_experts_per_tok), hidden_size and the expert intermediate size (moe_intermediate_size,
// else intermediate_size), from the top level or, for multimodal configs, from text_config.
// model_type gpt_oss selects the in_out layout with biases. Throws InvalidArgument naming
// `source` and the field for anything missing or out of range.
HfModel parse_hf_config(std::string_view json_text, const std::string& source);

// parse_hf_config of the file's content; throws InvalidArgument naming --hf-config and the path
// when it cannot be read.
HfModel read_hf_config(const std::filesystem::path& path);

}  // namespace moejit::cli
