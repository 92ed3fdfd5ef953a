// `moejit warm` from many processes at once and killed at random points: each shape is compiled
// once, no error reaches the user, and the cache stays sound.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

#include "autotune/cuda_driver.hpp"
#include "cache/store.hpp"
#include "run_moejit.hpp"

namespace moejit {
namespace {

using testing::quoted;
using testing::TempDir;

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct WarmSummary {
  int kernels = 0, compiled = 0, waited = 0, cached = 0;
};

// The summary line: "warm: 2 kernels: 1 compiled, 1 waited for another process, 0 already cached".
std::optional<WarmSummary> summary_of(const std::string& output) {
  static const std::regex kLine(
      R"(warm: (\d+) kernels: (\d+) compiled, (\d+) waited for another process, (\d+) already cached)");
  std::smatch m;
  if (!std::regex_search(output, m, kLine)) return std::nullopt;
  return WarmSummary{std::stoi(m[1]), std::stoi(m[2]), std::stoi(m[3]), std::stoi(m[4])};
}

class WarmProcesses : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() > 0) GTEST_SKIP() << "a GPU is present: warm tunes instead";
  }
  TempDir dir_;
  std::filesystem::path cache_ = dir_.path() / "cache.sqlite";
};

TEST_F(WarmProcesses, EightAtOnceCompileEachShapeOnce) {
  constexpr int kProcesses = 8;
  std::vector<int> pids;
  for (int i = 0; i < kProcesses; ++i)
    pids.push_back(testing::spawn_moejit(
        "warm --forward-only --model olmoe-1b-7b --tokens 2048 --cache " + quoted(cache_),
        dir_.path() / ("out" + std::to_string(i))));
  WarmSummary total;
  for (int i = 0; i < kProcesses; ++i) {
    const int exit_code = testing::wait_for(pids[i]);
    const auto output = read_text(dir_.path() / ("out" + std::to_string(i)));
    EXPECT_EQ(exit_code, 0) << output;
    EXPECT_EQ(output.find("locked"), std::string::npos) << output;
    EXPECT_EQ(output.find("warning"), std::string::npos) << output;
    const auto summary = summary_of(output);
    ASSERT_TRUE(summary.has_value()) << output;
    EXPECT_EQ(summary->kernels, 2) << output;
    total.compiled += summary->compiled;
    total.waited += summary->waited;
    total.cached += summary->cached;
  }
  EXPECT_EQ(total.compiled, 2);
  EXPECT_EQ(total.compiled + total.waited + total.cached, 2 * kProcesses);
  const CacheStore store(cache_);
  EXPECT_TRUE(store.integrity_problems().empty());
  EXPECT_EQ(store.list().size(), 2u);
  RecordProperty("compiled", total.compiled);
  RecordProperty("waited", total.waited);
  RecordProperty("cached", total.cached);
}

TEST_F(WarmProcesses, KilledAtRandomPointsTwentyTimesLeavesASoundCache) {
  std::mt19937 random(7);
  for (int round = 0; round < 20; ++round) {
    // A new token bucket each round: every run has compiling and writing to do.
    const int pid = testing::spawn_moejit(
        "warm --forward-only --experts 8 --top-k 2 --hidden 256 --intermediate 128 --tokens " +
            std::to_string(1 << round) + " --cache " + quoted(cache_),
        dir_.path() / "out");
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution(0, 1200)(random)));
    ::kill(pid, SIGKILL);
    testing::wait_for(pid);
    const auto verify = testing::run_moejit("verify " + quoted(cache_));
    if (!std::filesystem::exists(cache_)) continue;  // killed before it created the file
    EXPECT_EQ(verify.exit_code, 0) << "round " << round << ": " << verify.output;
    const CacheStore store(cache_, {.warn = [&](const std::string& line) {
                             ADD_FAILURE() << "round " << round << ": " << line;
                           }});
    EXPECT_TRUE(store.fallback().empty());
  }
  const auto finish = testing::run_moejit(
      "warm --forward-only --experts 8 --top-k 2 --hidden 256 --intermediate 128 --tokens 1 "
      "--cache " +
      quoted(cache_));
  EXPECT_EQ(finish.exit_code, 0) << finish.output;
  EXPECT_EQ(testing::run_moejit("verify " + quoted(cache_)).exit_code, 0);
}

}  // namespace
}  // namespace moejit
