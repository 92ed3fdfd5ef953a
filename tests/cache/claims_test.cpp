// Claims and build_once: one builder per key, the others wait and reuse its entry; a claim of a
// dead process or an expired lease stops nobody.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "cache/build_once.hpp"
#include "cache/store.hpp"
#include "cache_test_support.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

using std::chrono::seconds;
using testing::sample_entry;
using testing::sample_key;
using testing::TempDir;

TEST(CacheClaims, OneHolderAtATimeUntilPutOrRelease) {
  TempDir dir;
  CacheStore first(dir / "cache.sqlite"), second(dir / "cache.sqlite");
  const auto key = sample_key();
  EXPECT_EQ(first.try_claim(key, true, seconds(60)).status, ClaimStatus::acquired);
  EXPECT_EQ(first.try_claim(key, true, seconds(60)).status, ClaimStatus::acquired);  // renews
  const auto held = second.try_claim(key, true, seconds(60));
  EXPECT_EQ(held.status, ClaimStatus::held_elsewhere);
  EXPECT_NE(held.holder.find("pid " + std::to_string(::getpid())), std::string::npos)
      << held.holder;
  first.release_claim(key);
  EXPECT_EQ(second.try_claim(key, true, seconds(60)).status, ClaimStatus::acquired);
  EXPECT_EQ(first.try_claim(key, true, seconds(60)).status, ClaimStatus::held_elsewhere);
  second.put(sample_entry(key, true));  // ends the claim and satisfies everyone
  const auto present = first.try_claim(key, true, seconds(60));
  EXPECT_EQ(present.status, ClaimStatus::present);
  ASSERT_TRUE(present.entry.has_value());
  EXPECT_EQ(present.entry->cubin, sample_entry(key, true).cubin);
}

TEST(CacheClaims, UntunedEntrySatisfiesOnlyCallersThatDoNotTune) {
  TempDir dir;
  CacheStore store(dir / "cache.sqlite");
  store.put(sample_entry(sample_key(), false));
  EXPECT_EQ(store.try_claim(sample_key(), false, seconds(60)).status, ClaimStatus::present);
  EXPECT_EQ(store.try_claim(sample_key(), true, seconds(60)).status, ClaimStatus::acquired);
}

TEST(CacheClaims, ExpiredLeaseStopsNobody) {
  TempDir dir;
  CacheStore first(dir / "cache.sqlite"), second(dir / "cache.sqlite");
  ASSERT_EQ(first.try_claim(sample_key(), true, seconds(1)).status, ClaimStatus::acquired);
  EXPECT_EQ(second.try_claim(sample_key(), true, seconds(60)).status, ClaimStatus::held_elsewhere);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(second.try_claim(sample_key(), true, seconds(60)).status, ClaimStatus::acquired);
}

TEST(CacheClaims, ClaimOfAKilledProcessStopsNobody) {
  TempDir dir;
  const auto path = dir / "cache.sqlite";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    CacheStore store(path);
    const bool claimed =
        store.try_claim(sample_key(), true, seconds(600)).status == ClaimStatus::acquired;
    (void)!::write(ready[1], claimed ? "y" : "n", 1);
    ::pause();  // builds "forever", until killed
    std::_Exit(0);
  }
  char answer = 0;
  ASSERT_EQ(::read(ready[0], &answer, 1), 1);
  ASSERT_EQ(answer, 'y');
  CacheStore store(path);
  EXPECT_EQ(store.try_claim(sample_key(), true, seconds(60)).status, ClaimStatus::held_elsewhere);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(store.try_claim(sample_key(), true, seconds(60)).status, ClaimStatus::acquired);
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST(BuildOnce, FailedBuildReleasesTheClaim) {
  TempDir dir;
  CacheStore first(dir / "cache.sqlite"), second(dir / "cache.sqlite");
  const auto failing = [&]() -> CacheEntry { throw CompileError("no"); };
  EXPECT_THROW(build_once(first, sample_key(), {}, failing), CompileError);
  EXPECT_EQ(second.try_claim(sample_key(), false, seconds(60)).status, ClaimStatus::acquired);
}

TEST(BuildOnce, WaiterGivesUpAfterTheTimeoutAndBuildsItself) {
  TempDir dir;
  CacheStore holder(dir / "cache.sqlite"), waiter(dir / "cache.sqlite");
  ASSERT_EQ(holder.try_claim(sample_key(), false, seconds(600)).status, ClaimStatus::acquired);
  int builds = 0;
  const auto result =
      build_once(waiter, sample_key(), {.wait_timeout = std::chrono::milliseconds(300)}, [&] {
        ++builds;
        return sample_entry(sample_key(), false);
      });
  EXPECT_EQ(result.source, BuildSource::built_after_timeout);
  EXPECT_EQ(builds, 1);
  EXPECT_GE(result.waited_seconds, 0.3);
  EXPECT_NE(result.waited_for.find("pid"), std::string::npos) << result.waited_for;
}

TEST(BuildOnce, SecondCallerWaitsForTheFirstBuild) {
  TempDir dir;
  CacheStore first(dir / "cache.sqlite"), second(dir / "cache.sqlite");
  std::atomic<int> builds{0};
  std::atomic<bool> building{false};
  BuildOnceResult a, b;
  std::thread builder([&] {
    a = build_once(first, sample_key(), {}, [&] {
      building = true;
      ++builds;
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      return sample_entry(sample_key(), false, 3);
    });
  });
  while (!building) std::this_thread::yield();
  b = build_once(second, sample_key(), {}, [&] {
    ++builds;
    return sample_entry(sample_key(), false, 4);
  });
  builder.join();
  EXPECT_EQ(builds, 1);
  EXPECT_EQ(a.source, BuildSource::built);
  EXPECT_EQ(b.source, BuildSource::waited);
  EXPECT_EQ(b.entry.cubin, sample_entry(sample_key(), false, 3).cubin);
  EXPECT_GT(b.waited_seconds, 0.0);
}

}  // namespace
}  // namespace moejit
