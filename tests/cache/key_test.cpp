#include <gtest/gtest.h>

#include <fmt/format.h>
#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>
#include <vector>

#include "cache/key.hpp"
#include "cache_test_support.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

using testing::sample_key;

using Mutation = std::pair<const char*, std::function<void(CacheKey&)>>;

// One change per field of CacheKey, DeviceIdentity and ProjectionSpec, each away from sample_key().
std::vector<Mutation> one_field_changes() {
  return {
      {"device.name", [](CacheKey& k) { k.device.name = "NVIDIA H200"; }},
      {"device.arch", [](CacheKey& k) { k.device.arch = "sm_90"; }},
      {"device.sm_count", [](CacheKey& k) { k.device.sm_count = 114; }},
      {"device.driver_version", [](CacheKey& k) { k.device.driver_version = 12080; }},
      {"nvrtc_version", [](CacheKey& k) { k.nvrtc_version = "12.8"; }},
      {"template_hash", [](CacheKey& k) { k.template_hash = "fedcba9876543210"; }},
      {"generator_version", [](CacheKey& k) { k.generator_version = 4; }},
      // OpKind has a single value today; an out-of-range one still shows that op is in the key.
      {"spec.op", [](CacheKey& k) { k.spec.op = static_cast<OpKind>(1); }},
      {"spec.experts", [](CacheKey& k) { k.spec.experts = 64; }},
      {"spec.top_k", [](CacheKey& k) { k.spec.top_k = 4; }},
      {"spec.in_features", [](CacheKey& k) { k.spec.in_features = 4096; }},
      {"spec.out_features", [](CacheKey& k) { k.spec.out_features = 768; }},
      {"spec.rank", [](CacheKey& k) { k.spec.rank = 32; }},
      {"spec.act", [](CacheKey& k) { k.spec.act = DType::fp16; }},
      {"spec.lora", [](CacheKey& k) { k.spec.lora = DType::bf16; }},
      {"spec.index", [](CacheKey& k) { k.spec.index = IndexType::int32; }},
      {"spec.weights", [](CacheKey& k) { k.spec.weights = WeightFormat::int8_rowwise; }},
      {"spec.layout", [](CacheKey& k) { k.spec.layout = WeightLayout::out_in; }},
      {"spec.b_storage", [](CacheKey& k) { k.spec.b_storage = BStorage::peft; }},
      {"spec.grouped_in", [](CacheKey& k) { k.spec.grouped_in = false; }},
      {"spec.grouped_out", [](CacheKey& k) { k.spec.grouped_out = true; }},
      {"spec.has_bias", [](CacheKey& k) { k.spec.has_bias = false; }},
      {"spec.quant_blocksize", [](CacheKey& k) { k.spec.quant_blocksize = 128; }},
      {"spec.double_quant", [](CacheKey& k) { k.spec.double_quant = false; }},
      {"token_bucket", [](CacheKey& k) { k.token_bucket = 8192; }},
  };
}

std::size_t line_count(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

TEST(CacheKey, EveryFieldChangesTextAndId) {
  const CacheKey base = sample_key();
  const auto changes = one_field_changes();
  // One text line per field: a field added to text() without a mutation here fails this.
  EXPECT_EQ(line_count(base.text()), changes.size()) << base.text();
  std::set<std::string> texts{base.text()}, ids{base.id()};
  for (const auto& [field, change] : changes) {
    CacheKey changed = base;
    change(changed);
    EXPECT_NE(changed, base) << field;
    EXPECT_NE(changed.text(), base.text()) << field;
    EXPECT_NE(changed.id(), base.id()) << field;
    texts.insert(changed.text());
    ids.insert(changed.id());
  }
  EXPECT_EQ(texts.size(), changes.size() + 1);
  EXPECT_EQ(ids.size(), changes.size() + 1);
}

TEST(CacheKey, EqualInputsGiveEqualKeys) {
  const CacheKey a = sample_key(), b = sample_key();
  EXPECT_EQ(a.text(), b.text());
  EXPECT_EQ(a.id(), b.id());
}

TEST(CacheKey, IdIsSixteenHexDigitsOfTheTextHash) {
  const CacheKey key = sample_key();
  const std::string text = key.text();
  EXPECT_EQ(key.id(), fmt::format("{:016x}", fnv1a64(text.data(), text.size())));
  EXPECT_EQ(key.id().size(), 16u);
  EXPECT_EQ(key.id().find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(CacheKey, Fnv1aMatchesPublishedVectors) {
  EXPECT_EQ(fnv1a64("", 0), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a", 1), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar", 6), 0x85944171f73967e8ULL);
}

TEST(CacheKey, DelimitersInsideValuesCannotForgeFields) {
  // Without escaping both would read "device.name=n\ndevice.arch=a\ndevice.arch=b\n...".
  CacheKey a = sample_key(), b = sample_key();
  a.device.name = "n\ndevice.arch=a";
  a.device.arch = "b";
  b.device.name = "n";
  b.device.arch = "a\ndevice.arch=b";
  EXPECT_NE(a.text(), b.text());
  EXPECT_EQ(line_count(a.text()), line_count(sample_key().text()));

  std::set<std::string> texts;
  const std::vector<std::string> names{"a", "a\n", "a=", "a\\", "a\\n", "a\\=", "a\\\\", "=a", ""};
  for (const auto& name : names) {
    CacheKey key = sample_key();
    key.device.name = name;
    texts.insert(key.text());
  }
  EXPECT_EQ(texts.size(), names.size());
}

TEST(CacheKey, OfflineIdentity) {
  const auto device = DeviceIdentity::offline("sm_89");
  EXPECT_EQ(device.name, "offline");
  EXPECT_EQ(device.arch, "sm_89");
  EXPECT_EQ(device.sm_count, 0);
  EXPECT_EQ(device.driver_version, 0);
  EXPECT_TRUE(device.is_offline());
}

TEST(TokenBucket, RoundsUpToPowersOfTwo) {
  EXPECT_EQ(token_bucket(0), 1);
  EXPECT_EQ(token_bucket(1), 1);
  EXPECT_EQ(token_bucket(3), 4);
  EXPECT_EQ(token_bucket(8192), 8192);
  EXPECT_EQ(token_bucket(8193), 16384);
  for (std::int64_t tokens = 1; tokens <= 5000; ++tokens) {
    const auto bucket = token_bucket(tokens);
    EXPECT_EQ(bucket & (bucket - 1), 0) << tokens;
    EXPECT_GE(bucket, tokens);
    EXPECT_LT(bucket / 2, tokens);
  }
  EXPECT_THROW(token_bucket(-1), InvalidArgument);
}

TEST(CacheKeyJson, RoundTripsEveryField) {
  std::vector<CacheKey> keys{sample_key()};
  for (const auto& [field, change] : one_field_changes()) {
    if (std::string(field) == "spec.op") continue;  // no second valid op to serialize
    keys.push_back(sample_key());
    change(keys.back());
  }
  keys.back().device.name = "line\nbreak = \"quoted\"";
  for (const auto& key : keys) {
    const auto parsed = nlohmann::json::parse(nlohmann::json(key).dump()).get<CacheKey>();
    EXPECT_EQ(parsed, key) << nlohmann::json(key).dump();
  }
}

// The message of the moejit error from_json throws for `json`.
std::string from_json_error(const nlohmann::json& json) {
  try {
    (void)json.get<CacheKey>();
  } catch (const Error& error) {
    return error.what();
  }
  return "(no moejit::Error thrown)";
}

TEST(CacheKeyJson, ErrorsNameTheField) {
  const nlohmann::json good = sample_key();
  auto without = [&](const char* outer, const char* inner) {
    nlohmann::json j = good;
    inner ? j[outer].erase(inner) : j.erase(outer);
    return j;
  };
  EXPECT_NE(from_json_error(without("spec", "rank")).find("spec.rank"), std::string::npos);
  EXPECT_NE(from_json_error(without("device", "arch")).find("device.arch"), std::string::npos);
  EXPECT_NE(from_json_error(without("token_bucket", nullptr)).find("token_bucket"),
            std::string::npos);
  nlohmann::json bad_enum = good;
  bad_enum["spec"]["act"] = "fp64";
  EXPECT_NE(from_json_error(bad_enum).find("spec.act"), std::string::npos);
  nlohmann::json bad_type = good;
  bad_type["spec"]["experts"] = "128";
  EXPECT_NE(from_json_error(bad_type).find("spec.experts"), std::string::npos);
  nlohmann::json too_big = good;
  too_big["generator_version"] = 1ULL << 40;
  EXPECT_NE(from_json_error(too_big).find("generator_version"), std::string::npos);
  EXPECT_THROW((void)nlohmann::json::array().get<DeviceIdentity>(), InvalidArgument);
}

}  // namespace
}  // namespace moejit
