#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <latch>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cache/store.hpp"
#include "cache_test_support.hpp"

namespace moejit {
namespace {

using testing::sample_entry;
using testing::sample_key;
using testing::TempDir;

// Entry `index` of writer `writer`: keys never collide between writers.
CacheEntry writer_entry(int writer, int index) {
  auto key = sample_key();
  key.spec.experts = 1 + writer;
  key.spec.out_features = 8 * (1 + index);
  return sample_entry(key, index % 2 == 0, index + 1);
}

void expect_all_written(const std::filesystem::path& path, int writers, int per_writer) {
  const CacheStore store(path);
  EXPECT_EQ(store.list().size(), static_cast<std::size_t>(writers * per_writer));
  for (int writer = 0; writer < writers; ++writer)
    for (int index = 0; index < per_writer; ++index) {
      const auto expected = writer_entry(writer, index);
      const auto result = store.lookup(expected.key);
      ASSERT_EQ(result.status, LookupStatus::hit) << writer << "/" << index << " " << result.error;
      EXPECT_EQ(result.entry->cubin, expected.cubin);
    }
}

TEST(CacheConcurrency, TwoConnectionsInTwoThreads) {
  TempDir dir;
  const auto path = dir / "cache.sqlite";
  constexpr int kWriters = 2, kPerWriter = 200;
  std::latch start(kWriters);
  std::vector<std::string> errors(kWriters);
  std::vector<std::thread> threads;
  for (int writer = 0; writer < kWriters; ++writer)
    threads.emplace_back([&, writer] {
      std::optional<CacheStore> store;
      try {
        store.emplace(path);  // both create the schema at once on a fresh file
      } catch (const std::exception& error) {
        errors[writer] = error.what();
      }
      start.arrive_and_wait();  // also on failure, so that the other writer is not left waiting
      if (!store) return;
      try {
        for (int index = 0; index < kPerWriter; ++index) {
          store->put(writer_entry(writer, index));
          (void)store->lookup(writer_entry(1 - writer, index).key);  // reads beside the writes
        }
      } catch (const std::exception& error) {
        errors[writer] = error.what();
      }
    });
  for (auto& thread : threads) thread.join();
  for (const auto& error : errors) EXPECT_EQ(error, "");
  expect_all_written(path, kWriters, kPerWriter);
}

// Runs in a forked child that has never opened SQLite; reports through its exit status.
[[noreturn]] void write_as_child(const std::filesystem::path& path, int writer, int per_writer) {
  try {
    CacheStore store(path);
    for (int index = 0; index < per_writer; ++index) store.put(writer_entry(writer, index));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "writer %d: %s\n", writer, error.what());
    std::_Exit(1);
  }
  std::_Exit(0);
}

TEST(CacheConcurrency, SeveralProcesses) {
  TempDir dir;
  const auto path = dir / "cache.sqlite";
  constexpr int kWriters = 3, kPerWriter = 100;
  // No SQLite handle is open in this process while it forks: the children start clean.
  std::vector<pid_t> children;
  for (int writer = 0; writer < kWriters; ++writer) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) write_as_child(path, writer, kPerWriter);
    children.push_back(pid);
  }
  for (const pid_t child : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << child << " failed";
  }
  expect_all_written(path, kWriters, kPerWriter);
}

}  // namespace
}  // namespace moejit
