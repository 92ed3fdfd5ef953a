// Hugging Face configs of the preset models give the presets' layers; malformed configs are errors
// that name the file and the field.
#include <gtest/gtest.h>

#include <string>

#include "cli/hf_config.hpp"
#include "compiler/error.hpp"

namespace moejit::cli {
namespace {

const std::filesystem::path kConfigs = MOEJIT_HF_CONFIGS;

void expect_layer(const ModelPreset& actual, const ModelPreset& expected) {
  EXPECT_EQ(actual.experts, expected.experts);
  EXPECT_EQ(actual.top_k, expected.top_k);
  EXPECT_EQ(actual.hidden, expected.hidden);
  EXPECT_EQ(actual.intermediate, expected.intermediate);
  EXPECT_EQ(actual.layout, expected.layout);
  EXPECT_EQ(actual.bias, expected.bias);
}

TEST(HfConfig, EveryPresetsConfigGivesThePreset) {
  for (const ModelPreset& preset : model_presets()) {
    SCOPED_TRACE(std::string(preset.name));
    const HfModel model = read_hf_config(kConfigs / (std::string(preset.name) + ".json"));
    expect_layer(model.layer, preset);
  }
}

TEST(HfConfig, RoutedExpertsAndNestedTextConfigs) {
  const HfModel deepseek = read_hf_config(kConfigs / "deepseek-style.json");
  expect_layer(deepseek.layer, {"", 256, 8, 7168, 2048, WeightLayout::out_in, false});
  EXPECT_EQ(deepseek.model_type, "deepseek_v3");
  const HfModel llama = read_hf_config(kConfigs / "multimodal-text-config.json");
  expect_layer(llama.layer, {"", 16, 1, 5120, 8192, WeightLayout::out_in, false});
}

// The message of the InvalidArgument that parsing `json` throws.
std::string error_of(const std::string& json) {
  try {
    parse_hf_config(json, "my/config.json");
  } catch (const InvalidArgument& error) {
    return error.what();
  }
  return "(no error)";
}

TEST(HfConfig, MalformedConfigsNameTheField) {
  const std::string shape = R"("hidden_size": 2048, "intermediate_size": 1024)";
  const struct {
    std::string json, expected;
  } cases[] = {
      {"{" + shape + R"(, "num_experts": 64})", "'my/config.json: num_experts_per_tok' = missing"},
      {"{" + shape + R"(, "num_experts_per_tok": 2})",
       "'my/config.json: num_experts' = missing: expected the number of routed experts"},
      {R"({"hidden_size": "2048", "intermediate_size": 1024, "num_experts": 8,
           "num_experts_per_tok": 2})",
       "'my/config.json: hidden_size' = \"2048\""},
      {R"({"hidden_size": 2050, "intermediate_size": 1024, "num_experts": 8,
           "num_experts_per_tok": 2})",
       "'my/config.json: hidden_size' = 2050: expected a positive multiple of 8"},
      {"{" + shape + R"(, "num_experts": 4, "num_experts_per_tok": 8})",
       "'my/config.json: num_experts_per_tok' = 8: expected at most the 4 experts"},
      {"{" + shape + R"(, "num_local_experts": -8, "num_experts_per_tok": 2})",
       "'my/config.json: num_local_experts' = -8"},
      {R"({"hidden_size": 2048, "num_experts": 8, "num_experts_per_tok": 2})",
       "'my/config.json: moe_intermediate_size' = missing"},
      {R"({"model_type": 7})", "'my/config.json: model_type' = 7: expected a string"},
      {"[1, 2]", "'my/config.json' = array"},
      {"{\"hidden_size\": 20", "'my/config.json' = not valid JSON"},
  };
  for (const auto& c : cases)
    EXPECT_NE(error_of(c.json).find(c.expected), std::string::npos)
        << c.json << "\n  gives: " << error_of(c.json);
}

TEST(HfConfig, UnreadableFileNamesTheFlag) {
  try {
    read_hf_config(kConfigs / "absent.json");
    ADD_FAILURE() << "no error";
  } catch (const InvalidArgument& error) {
    EXPECT_NE(std::string(error.what()).find("--hf-config"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("absent.json"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace moejit::cli
