#include "cli/hf_config.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "compiler/error.hpp"

namespace moejit::cli {
namespace {

using nlohmann::json;

class ConfigFields {
 public:
  ConfigFields(const json& object, std::string source) : object_(object), source_(source) {}

  // The first of `names` that is present and not null, as a positive integer (a multiple of
  // `multiple`); `what` says what it is for the "missing" message.
  int positive(std::initializer_list<const char*> names, const char* what, int multiple = 1) const {
    for (const char* name : names) {
      const auto found = object_.find(name);
      if (found == object_.end() || found->is_null()) continue;
      const std::string expected =
          multiple > 1 ? fmt::format("a positive multiple of {} ({})", multiple, what)
                       : fmt::format("a positive integer ({})", what);
      if (!found->is_number_integer() || found->get<std::int64_t>() <= 0 ||
          found->get<std::int64_t>() > std::numeric_limits<int>::max() ||
          found->get<std::int64_t>() % multiple != 0)
        throw InvalidArgument(field(name), found->dump(), expected);
      return found->get<int>();
    }
    throw InvalidArgument(field(*names.begin()), "missing",
                          fmt::format("{} (as {})", what, fmt::join(names, " or ")));
  }
  std::string text(const char* name) const {
    const auto found = object_.find(name);
    if (found == object_.end() || found->is_null()) return {};
    if (!found->is_string()) throw InvalidArgument(field(name), found->dump(), "a string");
    return found->get<std::string>();
  }

 private:
  std::string field(const char* name) const { return fmt::format("{}: {}", source_, name); }
  const json& object_;
  std::string source_;
};

// Multimodal configs (e.g. Llama 4, Qwen3-VL-MoE) keep the language model's fields here.
const json& language_model(const json& root) {
  const auto text = root.find("text_config");
  const bool top_level_has_experts = root.contains("num_experts_per_tok");
  return text != root.end() && text->is_object() && !top_level_has_experts ? *text : root;
}

}  // namespace

HfModel parse_hf_config(std::string_view json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& error) {
    throw InvalidArgument(source, "not valid JSON",
                          fmt::format("a config.json ({})", error.what()));
  }
  if (!root.is_object()) throw InvalidArgument(source, root.type_name(), "a JSON object");
  const ConfigFields top(root, source);
  const json& model = language_model(root);
  const ConfigFields f(model, &model == &root ? source : source + ": text_config");
  HfModel out;
  out.model_type = top.text("model_type");
  const bool gpt_oss = out.model_type == "gpt_oss";
  const int experts = f.positive({"num_experts", "num_local_experts", "n_routed_experts"},
                                 "the number of routed experts of a MoE model");
  const int top_k = f.positive({"num_experts_per_tok"}, "experts per token");
  if (top_k > experts)
    throw InvalidArgument(source + ": num_experts_per_tok", std::to_string(top_k),
                          fmt::format("at most the {} experts", experts));
  out.layer = ModelPreset{
      "hf-config",
      experts,
      top_k,
      f.positive({"hidden_size"}, "the hidden size", 8),
      f.positive({"moe_intermediate_size", "intermediate_size"}, "the expert intermediate size", 8),
      gpt_oss ? WeightLayout::in_out : WeightLayout::out_in,
      gpt_oss};
  return out;
}

HfModel read_hf_config(const std::filesystem::path& path) {
  std::error_code error;
  std::ifstream in(path, std::ios::binary);
  if (!std::filesystem::is_regular_file(path, error) || !in)
    throw InvalidArgument("--hf-config", "'" + path.string() + "'", "a readable config.json");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_hf_config(text.str(), path.string());
}

}  // namespace moejit::cli
