// On a GPU: a cache filled on a machine without one ships (export), is imported here with its
// binaries compiled again and compared, is tuned in place by `warm --from-cache`, and is then used
// by a training process's Runtime without compiling or tuning anything.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "autotune/cuda_driver.hpp"
#include "cli/offline_warm.hpp"
#include "run_moejit.hpp"
#include "runtime/runtime.hpp"

namespace moejit {
namespace {

using testing::quoted;
using testing::run_moejit;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

constexpr std::int64_t kTokens = 1024;

std::vector<cli::WarmTarget> olmoe_targets() {
  std::vector<cli::WarmTarget> targets;
  for (Projection projection : {Projection::gate_up, Projection::down})
    targets.push_back(
        {projection, projection_spec(*find_preset("olmoe-1b-7b"), projection, 16), kTokens});
  return targets;
}

TEST(GpuImport, OfflineBuildIsTunedInPlaceAndThenUsed) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: this test tunes on one";
  const testing::TempDir dir;
  const auto offline = dir.path() / "offline.sqlite", shipped = dir.path() / "shipped.sqlite",
             local = dir.path() / "local.sqlite";
  const cuda::DeviceInfo device = cuda::query_device(0);
  {  // What `moejit warm --arch <this GPU's arch>` stores on a machine without a GPU.
    CacheStore store(offline);
    for (const auto& target : olmoe_targets())
      cli::warm_offline_once(store, target, device.arch(), std::chrono::minutes(1));
  }
  const auto exported = run_moejit("export " + quoted(shipped) + " --cache " + quoted(offline));
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  const auto imported = run_moejit("import " + quoted(shipped) + " --cache " + quoted(local));
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  EXPECT_TRUE(contains(imported.output, "2 added")) << imported.output;

  const auto tuned = run_moejit("warm --from-cache --cache " + quoted(local));
  ASSERT_EQ(tuned.exit_code, 0) << tuned.output;
  EXPECT_TRUE(contains(tuned.output, "2 offline builds for " + device.arch())) << tuned.output;
  const auto listed = run_moejit("list --json --tuned --cache " + quoted(local));
  const auto entries = nlohmann::json::parse(listed.output)["entries"];
  ASSERT_EQ(entries.size(), 2u) << listed.output;
  for (const auto& entry : entries) {
    EXPECT_EQ(entry["key"]["device"]["name"], device.name);
    EXPECT_GT(entry["time_ms"].get<double>(), 0);
  }

  Runtime runtime(RuntimeOptions{local, true});
  for (const auto& target : olmoe_targets()) (void)runtime.prepare(target.spec, kTokens);
  const RuntimeStats stats = runtime.stats();
  EXPECT_EQ(stats.cache_hits, 4);  // each projection's GEMM and pack_b (PEFT's B storage)
  EXPECT_EQ(stats.tunes, 0);
  EXPECT_EQ(stats.compiles, 0);
}

}  // namespace
}  // namespace moejit
