// `moejit warm` without a GPU, then `list` and `show` on what it stored. On a machine with a GPU
// warm tunes instead, which tests/gpu covers; these tests skip there.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "autotune/tuner.hpp"
#include "cache/store.hpp"
#include "run_moejit.hpp"
#include "runtime/presets.hpp"
#include "runtime/warm.hpp"

namespace moejit {
namespace {

using testing::run_moejit;
using testing::TempDir;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

int occurrences(const std::string& text, const std::string& part) {
  int n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

class OfflineWarm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() > 0) GTEST_SKIP() << "a GPU is present: warm tunes instead";
  }
  std::string cache_flag() const { return "--cache '" + cache_.string() + "'"; }
  std::vector<CacheEntry> entries() const { return CacheStore(cache_).list(); }

  TempDir dir_;
  std::filesystem::path cache_ = dir_.path() / "cache.sqlite";
};

const CacheEntry* entry_for(const std::vector<CacheEntry>& entries, const ProjectionSpec& spec) {
  const auto it = std::find_if(entries.begin(), entries.end(),
                               [&](const CacheEntry& e) { return e.key.spec == spec; });
  return it == entries.end() ? nullptr : &*it;
}

TEST_F(OfflineWarm, StoresBothProjectionsUntunedAndSecondRunCompilesNothing) {
  const auto first =
      run_moejit("warm --model olmoe-1b-7b --tokens 1024 --forward-only " + cache_flag());
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_TRUE(
      contains(first.output, "no GPU: compiling default configs for sm_90a, stored untuned"))
      << first.output;

  const std::vector<CacheEntry> stored = entries();
  ASSERT_EQ(stored.size(), 2u);
  const ModelPreset olmoe = *find_preset("olmoe-1b-7b");
  for (Projection projection : {Projection::gate_up, Projection::down}) {
    const ProjectionSpec spec = projection_spec(olmoe, projection, 16);
    const CacheEntry* entry = entry_for(stored, spec);
    ASSERT_NE(entry, nullptr) << to_string(projection) << " not stored";
    EXPECT_FALSE(entry->tuned);
    EXPECT_LT(entry->time_ms, 0);
    EXPECT_TRUE(entry->key.device.is_offline());
    EXPECT_EQ(entry->key.device.arch, "sm_90a");
    EXPECT_EQ(entry->key.token_bucket, 1024);
    EXPECT_EQ(entry->config, default_config(spec, "sm_90a"));
    EXPECT_FALSE(entry->cubin.empty());
  }

  const auto second =
      run_moejit("warm --model olmoe-1b-7b --tokens 1024 --forward-only " + cache_flag());
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(occurrences(second.output, "already cached (untuned)"), 2) << second.output;
  EXPECT_TRUE(contains(second.output,
                       "2 kernels: 0 compiled, 0 waited for another process, 2 "
                       "already cached"))
      << second.output;
  const std::vector<CacheEntry> after = entries();
  ASSERT_EQ(after.size(), stored.size());
  for (std::size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].key, stored[i].key);
    EXPECT_EQ(after[i].created_unix, stored[i].created_unix);
    EXPECT_EQ(after[i].cubin, stored[i].cubin);
  }
}

TEST_F(OfflineWarm, ListAndShowDescribeTheStoredEntries) {
  ASSERT_EQ(
      run_moejit("warm --model olmoe-1b-7b --tokens 1024 --forward-only " + cache_flag()).exit_code,
      0);
  const std::vector<CacheEntry> stored = entries();
  ASSERT_EQ(stored.size(), 2u);

  const auto list = run_moejit("list " + cache_flag());
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_TRUE(contains(list.output, "(2 entries)")) << list.output;
  for (const CacheEntry& e : stored) {
    EXPECT_TRUE(contains(list.output, e.key.id().substr(0, 12))) << list.output;
    EXPECT_TRUE(contains(list.output, e.config.name())) << list.output;
  }
  EXPECT_TRUE(contains(list.output, "offline")) << list.output;

  const CacheEntry& entry = stored.front();
  const auto show = run_moejit("show " + entry.key.id().substr(0, 6) + " " + cache_flag());
  ASSERT_EQ(show.exit_code, 0) << show.output;
  EXPECT_TRUE(contains(show.output, entry.key.id())) << show.output;
  EXPECT_TRUE(contains(show.output, entry.kernel_name)) << show.output;
  EXPECT_TRUE(contains(show.output, std::to_string(entry.cubin.size()) + " bytes")) << show.output;
  EXPECT_TRUE(contains(show.output, "tuned:       no")) << show.output;
}

TEST_F(OfflineWarm, ExplicitShapeFlagsReachTheStoredSpec) {
  const auto result = run_moejit(
      "warm --experts 8 --top-k 2 --hidden 256 --intermediate 128 --layout in_out --bias "
      "--tokens 100 --rank 8 --weights fp16 --lora-dtype fp32 --arch sm_80 --forward-only " +
      cache_flag());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "default configs for sm_80")) << result.output;
  const ModelPreset shape{"shape", 8, 2, 256, 128, WeightLayout::in_out, true};
  const std::vector<CacheEntry> stored = entries();
  ASSERT_EQ(stored.size(), 2u);
  for (Projection projection : {Projection::gate_up, Projection::down}) {
    const ProjectionSpec spec = projection_spec(shape, projection, 8, DType::fp16, DType::fp32);
    const CacheEntry* entry = entry_for(stored, spec);
    ASSERT_NE(entry, nullptr) << spec.describe();
    EXPECT_EQ(entry->key.device.arch, "sm_80");
    EXPECT_EQ(entry->key.token_bucket, 128);
  }
}

}  // namespace
}  // namespace moejit

namespace moejit {
namespace {

TEST_F(OfflineWarm, HfConfigWarmsThePresetsShapes) {
  const std::string config = std::string(MOEJIT_HF_CONFIGS) + "/gpt-oss-20b.json";
  const auto result = run_moejit("warm --hf-config '" + config +
                                 "' --tokens 256 --arch sm_80 --forward-only " + cache_flag());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const ModelPreset preset = *find_preset("gpt-oss-20b");
  const std::vector<CacheEntry> stored = entries();
  ASSERT_EQ(stored.size(), 2u);
  for (Projection projection : {Projection::gate_up, Projection::down}) {
    const ProjectionSpec spec = projection_spec(preset, projection, 16);
    EXPECT_NE(entry_for(stored, spec), nullptr) << spec.describe();
  }
}

TEST_F(OfflineWarm, QuantizedWeightsStoreTheForwardAndEveryBackwardKernel) {
  const auto result = run_moejit(
      "warm --model olmoe-1b-7b --weights nf4-dq --blocksize 128 --tokens 1024 " + cache_flag());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const ModelPreset olmoe = *find_preset("olmoe-1b-7b");
  const std::vector<CacheEntry> stored = entries();
  std::size_t expected = 0;
  for (Projection projection : {Projection::gate_up, Projection::down}) {
    ProjectionSpec spec = projection_spec(olmoe, projection, 16);
    spec.weights = WeightFormat::nf4;
    spec.quant_blocksize = 128;
    spec.double_quant = true;
    const CacheEntry* forward = entry_for(stored, spec);
    ASSERT_NE(forward, nullptr) << spec.describe() << "\n" << result.output;
    EXPECT_TRUE(forward->config.rs) << forward->config.name();
    EXPECT_EQ(forward->config, default_config(spec, "sm_90a"));
    const std::vector<ProjectionSpec> backward = backward_ops(spec);
    for (const ProjectionSpec& op : backward)
      EXPECT_NE(entry_for(stored, op), nullptr) << op.describe() << "\n" << result.output;
    expected += 1 + backward.size();
  }
  EXPECT_EQ(stored.size(), expected);
  const auto list = run_moejit("list " + cache_flag());
  EXPECT_EQ(occurrences(list.output, "nf4-dq/128"), 4) << list.output;  // forward and dX of each
}

TEST_F(OfflineWarm, Int8WeightsTakeTheActivationDtypeOfAct) {
  const auto result = run_moejit(
      "warm --model qwen3-30b-a3b --weights int8 --act fp16 --tokens 512 --forward-only " +
      cache_flag());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::vector<CacheEntry> stored = entries();
  ASSERT_EQ(stored.size(), 2u);
  for (Projection projection : {Projection::gate_up, Projection::down}) {
    ProjectionSpec spec =
        projection_spec(*find_preset("qwen3-30b-a3b"), projection, 16, DType::fp16);
    spec.weights = WeightFormat::int8_rowwise;
    EXPECT_NE(entry_for(stored, spec), nullptr) << spec.describe();
  }
}

TEST_F(OfflineWarm, MalformedHfConfigIsAnErrorNamingTheField) {
  const auto config = dir_.path() / "config.json";
  std::ofstream(config) << R"({"num_experts": 8, "hidden_size": 256, "intermediate_size": 128})";
  const auto result = run_moejit("warm --hf-config '" + config.string() + "' " + cache_flag());
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, config.string() + ": num_experts_per_tok")) << result.output;
  EXPECT_FALSE(std::filesystem::exists(cache_)) << "nothing may be written for a bad config";
}

}  // namespace
}  // namespace moejit
