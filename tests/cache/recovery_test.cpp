// A cache file that is damaged, foreign, unwritable or unreachable never stops the caller: the
// store moves a damaged file aside and starts anew, or works in memory, and says so once.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "cache/file_system.hpp"
#include "cache/store.hpp"
#include "cache_test_support.hpp"

namespace moejit {
namespace {

using testing::RawDb;
using testing::sample_entry;
using testing::sample_key;
using testing::TempDir;
using testing::Warnings;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A cache at `path` holding `count` entries; returns them.
std::vector<CacheEntry> filled_cache(const std::filesystem::path& path, int count) {
  std::vector<CacheEntry> entries;
  CacheStore store(path);
  for (int i = 0; i < count; ++i) {
    auto key = sample_key();
    key.token_bucket = std::int64_t{1} << i;
    entries.push_back(sample_entry(key, true, i + 1));
    store.put(entries.back());
  }
  return entries;
}

// The store works on the file and can write and read back.
void expect_usable_file(CacheStore& store) {
  EXPECT_TRUE(store.fallback().empty()) << store.fallback();
  const auto entry = sample_entry(sample_key(), false, 99);
  store.put(entry);
  EXPECT_EQ(CacheStore(store.path()).lookup(entry.key).status, LookupStatus::hit);
}

TEST(CacheRecovery, TruncatedFileIsMovedAsideAndRebuilt) {
  TempDir dir;
  const auto path = dir / "cache.sqlite";
  filled_cache(path, 20);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  Warnings warnings;
  CacheStore store(path, warnings.options());
  ASSERT_EQ(warnings.lines.size(), 1u) << warnings.joined();
  EXPECT_TRUE(contains(warnings.lines[0], "malformed")) << warnings.joined();
  ASSERT_EQ(testing::moved_aside(path).size(), 1u);
  EXPECT_TRUE(contains(warnings.lines[0], testing::moved_aside(path)[0].string()));
  EXPECT_TRUE(store.list().empty());
  expect_usable_file(store);
}

TEST(CacheRecovery, DamageFoundWhileOpenIsRecoveredOnce) {
  TempDir dir;
  const auto path = dir / "cache.sqlite";
  const auto entries = filled_cache(path, 20);
  Warnings warnings;
  CacheStore store(path, warnings.options());
  ASSERT_TRUE(warnings.lines.empty()) << warnings.joined();
  // Another program truncates the file under the open store.
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  const auto result = store.lookup(entries.back().key);
  EXPECT_NE(result.status, LookupStatus::hit);
  EXPECT_EQ(testing::moved_aside(path).size(), 1u) << warnings.joined();
  EXPECT_TRUE(contains(warnings.joined(), "damaged")) << warnings.joined();
  expect_usable_file(store);
}

TEST(CacheRecovery, ForeignSqliteDatabaseIsMovedAside) {
  TempDir dir;
  const auto path = dir / "cache.sqlite";
  RawDb(path).exec("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('mine')");
  Warnings warnings;
  CacheStore store(path, warnings.options());
  EXPECT_TRUE(contains(warnings.joined(), "not a moejit cache")) << warnings.joined();
  const auto aside = testing::moved_aside(path);
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_EQ(RawDb(aside[0]).integer("SELECT count(*) FROM notes"), 1);
  expect_usable_file(store);
}

TEST(CacheRecovery, CacheWithAnUnknownTriggerIsForeign) {
  TempDir dir;
  const auto path = dir / "cache.sqlite";
  filled_cache(path, 1);
  RawDb(path).exec("CREATE TRIGGER spy AFTER INSERT ON entries BEGIN DELETE FROM claims; END");
  Warnings warnings;
  CacheStore store(path, warnings.options());
  EXPECT_TRUE(contains(warnings.joined(), "unexpected trigger 'spy'")) << warnings.joined();
  EXPECT_EQ(testing::moved_aside(path).size(), 1u);
  EXPECT_TRUE(store.list().empty());
}

TEST(CacheRecovery, DirectoryThatCannotBeCreatedFallsBackToMemory) {
  TempDir dir;
  testing::write_bytes(dir / "file", "a file, not a directory");
  const auto path = dir / "file" / "cache.sqlite";
  Warnings warnings;
  CacheStore store(path, warnings.options());
  ASSERT_EQ(warnings.lines.size(), 1u) << warnings.joined();
  EXPECT_TRUE(contains(warnings.lines[0], path.string())) << warnings.joined();
  EXPECT_TRUE(contains(warnings.lines[0], "cannot create directory")) << warnings.joined();
  EXPECT_TRUE(contains(warnings.lines[0], "in-memory")) << warnings.joined();
  EXPECT_FALSE(store.fallback().empty());
  const auto entry = sample_entry(sample_key(), true);
  store.put(entry);
  EXPECT_EQ(store.lookup(entry.key).status, LookupStatus::hit);
  EXPECT_EQ(store.path(), path);
}

TEST(CacheRecovery, PathUnderProcFallsBackToMemory) {
  Warnings warnings;
  CacheStore store("/proc/self/moejit/cache.sqlite", warnings.options());
  EXPECT_EQ(warnings.lines.size(), 1u) << warnings.joined();
  EXPECT_FALSE(store.fallback().empty());
  store.put(sample_entry(sample_key(), true));
  EXPECT_EQ(store.list().size(), 1u);
}

TEST(CacheRecovery, DirectoryInPlaceOfTheFileFallsBackToMemory) {
  TempDir dir;
  std::filesystem::create_directories(dir / "cache.sqlite");
  Warnings warnings;
  CacheStore store(dir / "cache.sqlite", warnings.options());
  EXPECT_TRUE(contains(warnings.joined(), "not a regular file")) << warnings.joined();
  EXPECT_TRUE(std::filesystem::is_directory(dir / "cache.sqlite"));
  EXPECT_TRUE(testing::moved_aside(dir / "cache.sqlite").empty());
}

// chmod does not stop root, which these tests often run as.
bool permissions_apply() {
  return ::geteuid() != 0;
}

TEST(CacheRecovery, ReadOnlyDirectoryServesAnInMemoryCopy) {
  if (!permissions_apply()) GTEST_SKIP() << "running as root: chmod 0555 does not stop root";
  TempDir dir;
  const auto path = dir / "ro" / "cache.sqlite";
  const auto entries = filled_cache(path, 3);
  ::chmod((dir / "ro").c_str(), 0555);
  ::chmod(path.c_str(), 0444);
  Warnings warnings;
  CacheStore store(path, warnings.options());
  EXPECT_EQ(warnings.lines.size(), 1u) << warnings.joined();
  EXPECT_TRUE(contains(warnings.joined(), "in-memory copy")) << warnings.joined();
  const auto found = store.lookup(entries[0].key);
  EXPECT_EQ(found.status, LookupStatus::hit) << found.error;
  store.put(sample_entry(sample_key(), false, 50));  // kept in memory, no error
  ::chmod((dir / "ro").c_str(), 0755);
}

TEST(CacheRecovery, NetworkFileSystemsAreRecognised) {
  EXPECT_EQ(network_file_system_name(0x6969), "nfs");
  EXPECT_EQ(network_file_system_name(0xff534d42), "cifs");
  EXPECT_EQ(network_file_system_name(0x0bd00bd0), "lustre");
  EXPECT_EQ(network_file_system_name(0xef53), std::nullopt);      // ext4
  EXPECT_EQ(network_file_system_name(0x01021994), std::nullopt);  // tmpfs
  EXPECT_EQ(network_file_system("/proc"), std::nullopt);
}

TEST(CacheRecovery, MemoryCacheStartsEmptyAndWorks) {
  Warnings warnings;
  CacheStore store(":memory:", warnings.options());
  EXPECT_TRUE(warnings.lines.empty()) << warnings.joined();
  EXPECT_EQ(store.schema_version(), kSchemaVersion);
  store.put(sample_entry(sample_key(), true));
  EXPECT_EQ(store.lookup(sample_key()).status, LookupStatus::hit);
}

}  // namespace
}  // namespace moejit
