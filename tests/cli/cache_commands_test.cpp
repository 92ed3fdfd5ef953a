// export, import, merge, verify, prune and list's filters and JSON, run as a user runs them, on
// caches that an offline warm filled (no GPU needed: NVRTC compiles for sm_90a).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "autotune/cuda_driver.hpp"
#include "run_moejit.hpp"

namespace moejit {
namespace {

using testing::quoted;
using testing::run_moejit;
using testing::TempDir;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

constexpr const char* kShape = "--experts 8 --top-k 2 --hidden 256 --intermediate 128";

class CacheCommands : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() > 0) GTEST_SKIP() << "a GPU is present: warm tunes instead";
  }
  // Warms the small shape at `tokens` into `cache` (two entries per token bucket).
  void warm(const std::filesystem::path& cache, int tokens) {
    const auto result = run_moejit(std::string("warm --forward-only ") + kShape + " --tokens " +
                                   std::to_string(tokens) + " --cache " + quoted(cache));
    ASSERT_EQ(result.exit_code, 0) << result.output;
  }
  nlohmann::json list_json(const std::filesystem::path& cache, const std::string& filters = "") {
    const auto result = run_moejit("list --json --cache " + quoted(cache) + " " + filters);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return nlohmann::json::parse(result.output);
  }
  TempDir dir_;
  std::filesystem::path a_ = dir_.path() / "a.sqlite", b_ = dir_.path() / "b.sqlite";
  std::filesystem::path shipped_ = dir_.path() / "shipped.sqlite";
};

TEST_F(CacheCommands, ExportThenImportGivesTheSameEntries) {
  warm(a_, 1024);
  const auto exported = run_moejit("export " + quoted(shipped_) + " --cache " + quoted(a_));
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_TRUE(contains(exported.output, "exported 2 entries")) << exported.output;

  const auto imported = run_moejit("import " + quoted(shipped_) + " --cache " + quoted(b_));
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  EXPECT_TRUE(contains(imported.output, "2 added")) << imported.output;
  EXPECT_TRUE(contains(imported.output, "2 binaries identical")) << imported.output;
  auto source = list_json(a_)["entries"], target = list_json(b_)["entries"];
  ASSERT_EQ(source.size(), 2u);
  ASSERT_EQ(target.size(), 2u);
  for (auto* entries : {&source, &target})
    for (auto& entry : *entries) entry.erase("cubin_fnv1a64");  // each machine's own build
  EXPECT_EQ(source, target);

  const auto c = dir_.path() / "c.sqlite";
  const auto trusted =
      run_moejit("import --trust-binaries " + quoted(shipped_) + " --cache " + quoted(c));
  ASSERT_EQ(trusted.exit_code, 0) << trusted.output;
  EXPECT_EQ(list_json(a_)["entries"], list_json(c)["entries"]);  // bytes included
}

TEST_F(CacheCommands, ListFiltersAndJson) {
  warm(a_, 1024);
  warm(a_, 4096);
  const auto all = list_json(a_);
  EXPECT_EQ(all["entries"].size(), 4u);
  EXPECT_EQ(all["cache"], a_.string());
  EXPECT_TRUE(all["damaged"].empty());
  for (const auto& entry : all["entries"]) {
    EXPECT_EQ(entry["tuned"], false);
    EXPECT_TRUE(entry["time_ms"].is_null());
    EXPECT_EQ(entry["stale"], false);
    EXPECT_EQ(entry["key"]["device"]["name"], "offline");
  }
  EXPECT_EQ(list_json(a_, "--in-features 256")["entries"].size(), 2u);
  EXPECT_EQ(list_json(a_, "--experts 9")["entries"].size(), 0u);
  EXPECT_EQ(list_json(a_, "--tuned")["entries"].size(), 0u);
  EXPECT_EQ(list_json(a_, "--untuned --arch sm_90a")["entries"].size(), 4u);
  const auto table = run_moejit("list --experts 8 --in-features 128 --cache " + quoted(a_));
  EXPECT_TRUE(contains(table.output, "(2 of 4 entries match)")) << table.output;
}

TEST_F(CacheCommands, MergeKeepsEveryKey) {
  warm(a_, 1024);
  warm(b_, 4096);
  warm(b_, 1024);
  const auto out = dir_.path() / "out.sqlite";
  const auto merged = run_moejit("merge " + quoted(a_) + " " + quoted(b_) + " -o " + quoted(out));
  ASSERT_EQ(merged.exit_code, 0) << merged.output;
  EXPECT_TRUE(contains(merged.output, "2 new, 0 better")) << merged.output;
  EXPECT_TRUE(contains(merged.output, "wrote 4 entries")) << merged.output;
  EXPECT_EQ(list_json(out)["entries"].size(), 4u);
  const auto again = run_moejit("merge " + quoted(a_) + " " + quoted(b_) + " -o " + quoted(out));
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_TRUE(contains(again.output, "--force")) << again.output;
}

TEST_F(CacheCommands, VerifyReportsFaultsWithExitCodeOne) {
  warm(a_, 1024);
  const auto sound = run_moejit("verify " + quoted(a_));
  EXPECT_EQ(sound.exit_code, 0) << sound.output;
  EXPECT_TRUE(contains(sound.output, ": ok (2 of 2 entries sound, schema version")) << sound.output;
  std::filesystem::resize_file(a_, std::filesystem::file_size(a_) / 2);
  const auto truncated = run_moejit("verify " + quoted(a_));
  EXPECT_EQ(truncated.exit_code, 1) << truncated.output;
  EXPECT_TRUE(contains(truncated.output, "problem: ")) << truncated.output;
  const auto absent = run_moejit("verify " + quoted(dir_.path() / "absent.sqlite"));
  EXPECT_EQ(absent.exit_code, 1) << absent.output;
  EXPECT_TRUE(contains(absent.output, "no such file")) << absent.output;
}

TEST_F(CacheCommands, ImportOfGarbageIsAnErrorAndChangesNothing) {
  warm(a_, 1024);
  std::ofstream(shipped_) << "definitely not a database, but long enough to have a header";
  const auto result = run_moejit("import " + quoted(shipped_) + " --cache " + quoted(a_));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, shipped_.string())) << result.output;
  EXPECT_TRUE(contains(result.output, "not a SQLite database")) << result.output;
  EXPECT_EQ(list_json(a_)["entries"].size(), 2u);
}

TEST_F(CacheCommands, PruneByDeviceArchAndStaleness) {
  warm(a_, 1024);
  warm(a_, 4096);
  EXPECT_EQ(run_moejit("prune --cache " + quoted(a_)).exit_code, 2);  // needs a filter
  const auto stale = run_moejit("prune --stale --cache " + quoted(a_));
  EXPECT_TRUE(contains(stale.output, "deleted 0 entries")) << stale.output;
  const auto dry =
      run_moejit("prune --device offline --in-features 128 --dry-run --cache " + quoted(a_));
  EXPECT_TRUE(contains(dry.output, "2 entries match (dry run")) << dry.output;
  EXPECT_EQ(list_json(a_)["entries"].size(), 4u);
  const auto old = run_moejit("prune --older-than 1 --cache " + quoted(a_));
  EXPECT_TRUE(contains(old.output, "deleted 0 entries")) << old.output;
  const auto pruned =
      run_moejit("prune --arch sm_90a --in-features 256 --compact --cache " + quoted(a_));
  EXPECT_EQ(pruned.exit_code, 0) << pruned.output;
  EXPECT_TRUE(contains(pruned.output, "deleted 2 entries")) << pruned.output;
  EXPECT_EQ(list_json(a_)["entries"].size(), 2u);
}

TEST_F(CacheCommands, UnwritableCacheLocationWarnsAndStillWarms) {
  std::ofstream(dir_.path() / "file") << "a file where a directory should be";
  const auto cache = dir_.path() / "file" / "cache.sqlite";
  const auto result = run_moejit(std::string("warm --forward-only ") + kShape +
                                 " --tokens 64 --cache " + quoted(cache));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "moejit: warning: cache '" + cache.string()))
      << result.output;
  EXPECT_TRUE(contains(result.output, "in-memory")) << result.output;
  EXPECT_TRUE(contains(result.output, "2 compiled")) << result.output;
}

}  // namespace
}  // namespace moejit
