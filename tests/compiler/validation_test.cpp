// Argument validation (errors name the argument and the value), enum spellings and config JSON.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compiler/error.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "compiler/problem.hpp"
#include "compiler/source.hpp"
#include "compiler/tile_config.hpp"

namespace moejit {
namespace {

// Runs `action`, expects InvalidArgument, and returns its message.
std::string invalid_argument_message(const std::function<void()>& action) {
  try {
    action();
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InvalidArgument thrown";
  return {};
}

void expect_mentions(const std::string& message, const std::vector<std::string>& words) {
  for (const auto& word : words) EXPECT_NE(message.find(word), std::string::npos) << message;
}

ProjectionSpec valid_spec() {
  ProjectionSpec s;
  s.experts = 8;
  s.top_k = 2;
  s.in_features = 256;
  s.out_features = 512;
  s.rank = 16;
  return s;
}

TEST(ValidateArch, RejectsMalformedTargets) {
  for (const std::string arch :
       {"", "sm80", "sm_", "compute_90", "sm_9", "sm_90b", "SM_90", "90"}) {
    const std::string message = invalid_argument_message([&] { validate_arch(arch); });
    expect_mentions(message, {"arch", "'" + arch + "'"});
  }
}

TEST(ValidateArch, AcceptsRealTargets) {
  for (const std::string arch : {"sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100a"})
    EXPECT_NO_THROW(validate_arch(arch)) << arch;
}

TEST(ValidateArch, CompileRejectsBadArchBeforeNvrtc) {
  const KernelSource source = render_kernel_source(valid_spec(), TileConfig{});
  const std::string message = invalid_argument_message([&] {
    compile({source.source, source.name_expression, "sm_xx", "key"});
  });
  expect_mentions(message, {"arch", "sm_xx"});
}

struct SpecMutation {
  std::string argument;
  std::string value;
  std::function<void(ProjectionSpec&)> apply;
};

class InvalidSpec : public ::testing::TestWithParam<SpecMutation> {};

TEST_P(InvalidSpec, NamesArgumentAndValue) {
  ProjectionSpec spec = valid_spec();
  GetParam().apply(spec);
  expect_mentions(invalid_argument_message([&] { spec.validate(); }),
                  {GetParam().argument, GetParam().value});
  // Rendering validates too, so no stub is ever produced for a bad spec.
  expect_mentions(invalid_argument_message([&] { render_kernel_source(spec, TileConfig{}); }),
                  {GetParam().argument, GetParam().value});
}

INSTANTIATE_TEST_SUITE_P(
    Fields, InvalidSpec,
    ::testing::Values(
        SpecMutation{"experts", "0", [](ProjectionSpec& s) { s.experts = 0; }},
        SpecMutation{"top_k", "9", [](ProjectionSpec& s) { s.top_k = 9; }},
        SpecMutation{"top_k", "0", [](ProjectionSpec& s) { s.top_k = 0; }},
        SpecMutation{"in_features", "12", [](ProjectionSpec& s) { s.in_features = 12; }},
        SpecMutation{"in_features", "0", [](ProjectionSpec& s) { s.in_features = 0; }},
        SpecMutation{"out_features", "100", [](ProjectionSpec& s) { s.out_features = 100; }},
        SpecMutation{"rank", "0", [](ProjectionSpec& s) { s.rank = 0; }},
        SpecMutation{"rank", "257", [](ProjectionSpec& s) { s.rank = 257; }},
        SpecMutation{"act", "fp32", [](ProjectionSpec& s) { s.act = DType::fp32; }},
        SpecMutation{"weights", "fp16", [](ProjectionSpec& s) { s.weights = WeightFormat::fp16; }},
        SpecMutation{"quant_blocksize", "48",
                     [](ProjectionSpec& s) {
                       s.weights = WeightFormat::nf4;
                       s.quant_blocksize = 48;
                     }}),
    [](const ::testing::TestParamInfo<SpecMutation>& info) {
      return info.param.argument + "_" + info.param.value;
    });

TEST(InvalidSpec, WgmmaNeedsLoraInActDtype) {
  const TileConfig wgmma{128, 128, 64, 8, 1, 4, true};
  EXPECT_NO_THROW(render_kernel_source(valid_spec(), wgmma));
  ProjectionSpec in_out = valid_spec();  // N-contiguous weights: wgmma reads B transposed
  in_out.layout = WeightLayout::in_out;
  EXPECT_NO_THROW(render_kernel_source(in_out, wgmma));
  ProjectionSpec fp32_lora = valid_spec();
  fp32_lora.lora = DType::fp32;
  expect_mentions(invalid_argument_message([&] { render_kernel_source(fp32_lora, wgmma); }),
                  {"tile config", "lora"});
}

TEST(InvalidSpec, QuantizedWeightsRenderTheirFormat) {
  ProjectionSpec spec = valid_spec();
  spec.weights = WeightFormat::int8_rowwise;
  EXPECT_NE(render_kernel_source(spec, TileConfig{}).source.find("kWeightFormat = 3;"),
            std::string::npos);
  spec.weights = WeightFormat::nf4;
  spec.quant_blocksize = 48;
  expect_mentions(invalid_argument_message([&] { render_kernel_source(spec, TileConfig{}); }),
                  {"quant_blocksize", "48"});
}

struct ConfigMutation {
  std::string label;
  std::string expected_word;  // the field the message must name
  TileConfig config;
};

class InvalidConfig : public ::testing::TestWithParam<ConfigMutation> {};

TEST_P(InvalidConfig, NamesTheConfigAndTheRule) {
  const TileConfig& config = GetParam().config;
  const std::string message = invalid_argument_message([&] { config.validate(); });
  expect_mentions(message, {"tile config", config.name(), GetParam().expected_word});
  EXPECT_THROW(render_kernel_source(valid_spec(), config), InvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, InvalidConfig,
    ::testing::Values(ConfigMutation{"block_m", "block_m", {96, 128, 32, 4, 2, 3}},
                      ConfigMutation{"block_n", "block_n", {128, 40, 32, 2, 2, 3}},
                      ConfigMutation{"block_k", "block_k", {128, 128, 16, 2, 2, 3}},
                      ConfigMutation{"zero_warps", "warps", {128, 128, 32, 0, 2, 3}},
                      ConfigMutation{"too_many_warps", "warps", {256, 256, 32, 4, 4, 3}},
                      ConfigMutation{"one_stage", "stages", {128, 128, 32, 2, 2, 1}},
                      ConfigMutation{"seven_stages", "stages", {128, 128, 32, 2, 2, 7}},
                      ConfigMutation{"wgmma_block_k", "block_k", {128, 128, 32, 8, 1, 4, true}},
                      ConfigMutation{"wgmma_warps", "warps_m", {128, 128, 64, 2, 2, 4, true}},
                      ConfigMutation{"wgmma_block_n", "block_n", {128, 96, 64, 8, 1, 4, true}},
                      ConfigMutation{"wgmma_stages", "stages", {128, 128, 64, 8, 1, 2, true}}),
    [](const ::testing::TestParamInfo<ConfigMutation>& info) { return info.param.label; });

template <class Enum>
void expect_round_trip(std::initializer_list<Enum> values,
                       Enum (*parse)(std::string_view, std::string_view)) {
  for (Enum v : values) EXPECT_EQ(parse(to_string(v), "arg"), v) << to_string(v);
  const std::string message =
      invalid_argument_message([&] { parse("not-a-spelling", "--the-flag"); });
  expect_mentions(message,
                  {"--the-flag", "not-a-spelling", std::string(to_string(*values.begin()))});
}

TEST(Enums, ToStringAndParseRoundTrip) {
  expect_round_trip({DType::bf16, DType::fp16, DType::fp32}, &parse_dtype);
  expect_round_trip({IndexType::int32, IndexType::int64}, &parse_index_type);
  expect_round_trip(
      {WeightFormat::bf16, WeightFormat::fp16, WeightFormat::nf4, WeightFormat::int8_rowwise},
      &parse_weight_format);
  expect_round_trip({WeightLayout::out_in, WeightLayout::in_out}, &parse_weight_layout);
  expect_round_trip({BStorage::peft, BStorage::expert_major, BStorage::stacked}, &parse_b_storage);
  expect_round_trip({OpKind::forward}, &parse_op);
}

TEST(Enums, SpellingsAreDistinct) {
  EXPECT_NE(to_string(DType::bf16), to_string(DType::fp16));
  EXPECT_NE(to_string(WeightLayout::out_in), to_string(WeightLayout::in_out));
  EXPECT_NE(to_string(BStorage::peft), to_string(BStorage::stacked));
}

TEST(TileConfigJson, RoundTripsEveryField) {
  for (const TileConfig& config :
       {TileConfig{64, 256, 64, 1, 4, 5}, TileConfig{128, 256, 64, 8, 1, 3, true},
        TileConfig{128, 256, 64, 8, 1, 4, true, true, 2}}) {
    const nlohmann::json j = config;
    for (const char* field : {"block_m", "block_n", "block_k", "warps_m", "warps_n", "stages",
                              "wgmma", "tma", "cluster_m"})
      EXPECT_TRUE(j.contains(field)) << field;
    EXPECT_EQ(j.get<TileConfig>(), config);
    EXPECT_EQ(nlohmann::json::parse(j.dump()).get<TileConfig>(), config);
  }
}

TEST(TileConfigJson, EntriesWrittenBeforeWgmmaReadAsMmaSync) {
  nlohmann::json j = TileConfig{};
  j.erase("wgmma");
  EXPECT_EQ(j.get<TileConfig>(), TileConfig{});
}

TEST(TileConfigJson, EntriesWrittenBeforeClustersReadAsOneCta) {
  nlohmann::json j = TileConfig{128, 256, 64, 8, 1, 4, true, true};
  j.erase("cluster_m");
  EXPECT_EQ(j.get<TileConfig>().cluster_m, 1);
}

TEST(TileConfigJson, MissingFieldThrows) {
  nlohmann::json j = TileConfig{};
  j.erase("stages");
  EXPECT_THROW(j.get<TileConfig>(), nlohmann::json::exception);
}

TEST(TileConfigName, IsStableAndDistinguishesConfigs) {
  EXPECT_EQ(TileConfig{}.name(), "m128n128k32_w2x2_s3");
  EXPECT_NE((TileConfig{64, 128, 32, 2, 2, 3}.name()), TileConfig{}.name());
  EXPECT_EQ((TileConfig{128, 128, 64, 8, 1, 4, true}.name()), "m128n128k64_w8x1_s4_wg");
  EXPECT_EQ((TileConfig{128, 256, 64, 8, 1, 4, true, true, 2}.name()),
            "m128n256k64_w8x1_s4_tma_c2");
}

TEST(TileConfigName, ParsesBackEveryFamily) {
  for (const TileConfig& c :
       {TileConfig{}, TileConfig{64, 256, 32, 1, 4, 2}, TileConfig{128, 256, 64, 8, 1, 4, true},
        TileConfig{64, 128, 64, 4, 1, 6, true, true}, TileConfig{128, 64, 64, 8, 1, 2, true, true},
        TileConfig{64, 128, 64, 4, 1, 3, true, true, 2}})
    EXPECT_EQ(parse_tile_config(c.name()), c) << c.name();
}

TEST(TileConfigName, RejectsWhatIsNotAValidConfigName) {
  for (const std::string bad : {"", "m128n128", "m128n128k32_w2x2_s3_xx", "M128N128K32_W2X2_S3",
                                "m128n128k32_w2x2_s3 ", "m99999n1k1_w1x1_s1"}) {
    try {
      parse_tile_config(bad);
      ADD_FAILURE() << "'" << bad << "' parsed";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("m128n256k64_w8x1_s4_wg"), std::string::npos);
    }
  }
  // Well formed but not instantiable: validate() names the config and the rule.
  EXPECT_THROW(parse_tile_config("m128n128k64_w2x2_s4_tma"), InvalidArgument);
  // Clusters: two CTAs, the TMA kernel, and a weight tile of at least 128 columns to split.
  EXPECT_THROW(parse_tile_config("m128n64k64_w8x1_s4_tma_c2"), InvalidArgument);
  EXPECT_THROW(parse_tile_config("m128n256k64_w8x1_s4_wg_c2"), InvalidArgument);
  EXPECT_THROW(parse_tile_config("m128n256k64_w8x1_s4_tma_c4"), InvalidArgument);
  EXPECT_THROW(parse_tile_config("m128n256k64_w8x1_s4_tma_c1"), InvalidArgument);  // not a name()
  EXPECT_THROW(parse_tile_config("m128n128k48_w2x2_s3"), InvalidArgument);
}

}  // namespace
}  // namespace moejit
