// `moejit doctor`, `list`, `show` and the error paths, run as a user runs them.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "run_moejit.hpp"
#include "runtime/presets.hpp"
#include "templates/embedded.hpp"

namespace moejit {
namespace {

using testing::run_moejit;
using testing::TempDir;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Doctor, ReportsToolchainAndCache) {
  TempDir dir;
  const auto cache = dir.path() / "cache.sqlite";
  const auto result = run_moejit("doctor --cache '" + cache.string() + "'");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "NVRTC:      " + nvrtc_version())) << result.output;
  EXPECT_TRUE(contains(result.output, std::string(templates::bundle_hash()))) << result.output;
  EXPECT_TRUE(contains(result.output, cache.string())) << result.output;
  EXPECT_FALSE(std::filesystem::exists(cache)) << "doctor must not create the cache";
}

TEST(Doctor, SaysPlainlyWhenThereIsNoGpu) {
  TempDir dir;
  const auto result = run_moejit("doctor --cache '" + (dir.path() / "c.sqlite").string() + "'");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  if (cuda::device_count() > 0) {
    EXPECT_TRUE(contains(result.output, "GPU 0:")) << result.output;
    EXPECT_FALSE(contains(result.output, "no GPU")) << result.output;
  } else {
    std::string why_not;
    ASSERT_EQ(cuda::try_api(&why_not), nullptr);
    EXPECT_TRUE(contains(result.output, "no GPU: " + why_not)) << result.output;
  }
}

TEST(List, MissingCacheIsReportedNotCreated) {
  TempDir dir;
  const auto cache = dir.path() / "absent.sqlite";
  const auto result = run_moejit("list --cache '" + cache.string() + "'");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "no cache at " + cache.string())) << result.output;
  EXPECT_FALSE(std::filesystem::exists(cache));
}

TEST(Show, UnknownIdIsAnErrorNamingTheId) {
  TempDir dir;
  const auto result =
      run_moejit("show 0123abcd --cache '" + (dir.path() / "c.sqlite").string() + "'");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, "moejit: error: ")) << result.output;
  EXPECT_TRUE(contains(result.output, "0123abcd")) << result.output;
}

TEST(Warm, UnknownPresetNamesModelAndThePresets) {
  TempDir dir;
  const auto result =
      run_moejit("warm --model llama-moe --cache '" + (dir.path() / "c.sqlite").string() + "'");
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "--model")) << result.output;
  EXPECT_TRUE(contains(result.output, "llama-moe")) << result.output;
  for (const ModelPreset& preset : model_presets())
    EXPECT_TRUE(contains(result.output, std::string(preset.name))) << result.output;
}

TEST(Warm, RankZeroIsRejectedBeforeAnyWork) {
  TempDir dir;
  const auto cache = dir.path() / "c.sqlite";
  const auto result =
      run_moejit("warm --model olmoe-1b-7b --rank 0 --cache '" + cache.string() + "'");
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "moejit: error: ")) << result.output;
  EXPECT_TRUE(contains(result.output, "'rank' = 0")) << result.output;
  EXPECT_FALSE(std::filesystem::exists(cache)) << "nothing may be written for a bad request";
}

// The error tests name a temp cache so that a regression cannot write to the user's cache.
std::string temp_cache_flag(const TempDir& dir) {
  return " --cache '" + (dir.path() / "c.sqlite").string() + "'";
}

// Each bad weight flag is an error naming the flag and its value; nothing is written.
TEST(Warm, BadWeightFlagsAreErrorsNamingThem) {
  struct Case {
    std::string flags;
    int exit_code;  // 2: rejected by the flag's own check, 1: by the request as a whole
    std::string named;
  };
  const std::vector<Case> cases{
      {"--weights fp8", 2, "'--weights' = 'fp8'"},
      {"--weights nf4 --blocksize 48", 2, "--blocksize"},
      {"--weights int8 --blocksize 64", 1, "'--blocksize' = 64"},
      {"--weights bf16 --act fp16", 1, "'--act' = 'fp16'"},
      {"--weights nf4 --act fp32", 1, "'--act' = 'fp32'"},
  };
  for (const Case& c : cases) {
    TempDir dir;
    const auto result = run_moejit("warm --model olmoe-1b-7b " + c.flags + temp_cache_flag(dir));
    EXPECT_EQ(result.exit_code, c.exit_code) << c.flags << ": " << result.output;
    EXPECT_TRUE(contains(result.output, c.named)) << c.flags << ": " << result.output;
    EXPECT_FALSE(std::filesystem::exists(dir.path() / "c.sqlite")) << c.flags;
  }
}

TEST(Warm, ModelAndExplicitShapeAreExclusive) {
  TempDir dir;
  const auto result = run_moejit("warm --model olmoe-1b-7b --experts 8" + temp_cache_flag(dir));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_TRUE(contains(result.output, "--experts")) << result.output;
}

TEST(Warm, FromCacheTakesNoSpecFlags) {
  for (const char* flag : {"--weights nf4", "--rank 8", "--forward-only", "--blocksize 64"}) {
    TempDir dir;
    const auto result = run_moejit(std::string("warm --from-cache ") + flag + temp_cache_flag(dir));
    EXPECT_EQ(result.exit_code, 2) << flag << ": " << result.output;
    EXPECT_TRUE(contains(result.output, "--from-cache")) << flag << ": " << result.output;
  }
}

TEST(Warm, NeedsAModelOrAShape) {
  TempDir dir;
  const auto result = run_moejit("warm" + temp_cache_flag(dir));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_TRUE(contains(result.output, "--model")) << result.output;
}

TEST(Usage, ErrorsExitWithTwoAndHelpWithZero) {
  EXPECT_EQ(run_moejit("").exit_code, 2);
  EXPECT_EQ(run_moejit("frobnicate").exit_code, 2);
  TempDir dir;
  EXPECT_EQ(run_moejit("warm --tokens 0 --model olmoe-1b-7b" + temp_cache_flag(dir)).exit_code, 2);
  const auto help = run_moejit("--help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* command : {"doctor", "warm", "list", "show"})
    EXPECT_TRUE(contains(help.output, command)) << help.output;
}

}  // namespace
}  // namespace moejit
