// Many processes on one cache file: eight warm the same keys at once and each key is built exactly
// once; a writer killed with SIGKILL at random points leaves a sound, usable database.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "cache/build_once.hpp"
#include "cache/store.hpp"
#include "cache_test_support.hpp"

namespace moejit {
namespace {

using testing::sample_entry;
using testing::sample_key;
using testing::TempDir;

CacheKey key_number(int index) {
  auto key = sample_key();
  key.spec.out_features = 64 * (index + 1);
  return key;
}

// Appends one line with a single write(), which O_APPEND keeps whole between processes.
void append_line(const std::filesystem::path& log, const std::string& line) {
  const int fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  const std::string text = line + "\n";
  (void)!::write(fd, text.data(), text.size());
  ::close(fd);
}

// A child process warming every key in its own order; logs "built <id>" per build and, at the
// end, "<source> <id>" per key. Exit status 1 on any exception.
[[noreturn]] void warm_as_child(const std::filesystem::path& path, const std::filesystem::path& log,
                                int child, int keys) {
  try {
    CacheStore store(path);
    std::vector<int> order(keys);
    for (int i = 0; i < keys; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(child));
    for (const int index : order) {
      const auto key = key_number(index);
      const auto result = build_once(store, key, {}, [&] {
        append_line(log, "compile " + key.id());
        std::this_thread::sleep_for(std::chrono::milliseconds(40));  // a compile's worth of time
        return sample_entry(key, false, index + 1);
      });
      append_line(log, std::string(to_string(result.source)) + " " + key.id());
    }
  } catch (const std::exception& error) {
    append_line(log, std::string("error ") + error.what());
    std::_Exit(1);
  }
  std::_Exit(0);
}

std::map<std::string, int> count_words(const std::filesystem::path& log) {
  std::map<std::string, int> counts;
  std::istringstream lines(testing::read_bytes(log));
  for (std::string word, rest; lines >> word && std::getline(lines, rest);) ++counts[word];
  return counts;
}

TEST(CacheProcesses, EightProcessesBuildEachKeyOnce) {
  TempDir dir;
  const auto path = dir / "cache.sqlite", log = dir / "log.txt";
  constexpr int kProcesses = 8, kKeys = 12;
  std::vector<pid_t> children;
  for (int child = 0; child < kProcesses; ++child) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) warm_as_child(path, log, child, kKeys);
    children.push_back(pid);
  }
  for (const pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testing::read_bytes(log);
  }
  const auto counts = count_words(log);
  EXPECT_EQ(counts.count("error"), 0u) << testing::read_bytes(log);
  EXPECT_EQ(counts.at("compile"), kKeys) << testing::read_bytes(log);
  const int waited = counts.count("waited") ? counts.at("waited") : 0;
  const int cached = counts.count("cached") ? counts.at("cached") : 0;
  EXPECT_EQ(waited + cached + kKeys, kProcesses * kKeys) << testing::read_bytes(log);
  EXPECT_GT(waited, 0) << testing::read_bytes(log);
  CacheStore store(path);
  EXPECT_TRUE(store.integrity_problems().empty());
  EXPECT_EQ(store.list().size(), static_cast<std::size_t>(kKeys));
}

// Writes entries and claims in a loop until killed.
[[noreturn]] void write_until_killed(const std::filesystem::path& path, int round) {
  CacheStore store(path);
  for (int i = 0;; ++i) {
    const auto key = key_number(round * 1000 + i);
    (void)store.try_claim(key, false, std::chrono::seconds(600));
    store.put(sample_entry(key, i % 2 == 0, i + 1));
  }
}

TEST(CacheProcesses, WriterKilledAtRandomPointsLeavesASoundDatabase) {
  TempDir dir;
  const auto path = dir / "cache.sqlite";
  std::mt19937 random(20240601);
  std::size_t entries_before = 0;
  for (int round = 0; round < 20; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) write_until_killed(path, round);
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution(1, 120)(random)));
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);

    testing::Warnings warnings;
    CacheStore store(path, warnings.options());
    EXPECT_TRUE(warnings.lines.empty()) << "round " << round << ": " << warnings.joined();
    EXPECT_TRUE(store.integrity_problems().empty()) << "round " << round;
    const ScanResult scanned = store.scan();
    EXPECT_TRUE(scanned.damaged.empty()) << "round " << round << ": " << scanned.damaged[0].reason;
    EXPECT_GE(scanned.entries.size(), entries_before) << "round " << round;
    entries_before = scanned.entries.size();
    // The killed writer's claim does not hold anyone up.
    auto next = key_number(round);
    next.spec.rank = 32;  // a key the writer never touches
    EXPECT_EQ(store.try_claim(next, false, std::chrono::seconds(60)).status, ClaimStatus::acquired);
    store.put(sample_entry(next, true));
    EXPECT_EQ(store.lookup(next).status, LookupStatus::hit) << "round " << round;
  }
}

}  // namespace
}  // namespace moejit
