#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <tuple>

#include "cache/store.hpp"
#include "cache_test_support.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

using testing::RawDb;
using testing::sample_entry;
using testing::sample_key;
using testing::ScopedEnv;
using testing::TempDir;

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const CacheError& error) {
    return error.what();
  }
  return "(no CacheError thrown)";
}

TEST(CacheStore, RoundTripsAFullEntry) {
  TempDir dir;
  CacheStore store(dir / "cache.sqlite");
  const auto entry = sample_entry(sample_key(), true, 7);
  store.put(entry);
  const auto result = store.lookup(entry.key);
  ASSERT_EQ(result.status, LookupStatus::hit) << result.error;
  testing::expect_same_entry(*result.entry, entry);
  EXPECT_EQ(store.schema_version(), kSchemaVersion);
}

TEST(CacheStore, FillsCreationTimeAndVersion) {
  TempDir dir;
  CacheStore store(dir / "cache.sqlite");
  auto entry = sample_entry(sample_key(), false);
  entry.created_unix = 0;
  entry.moejit_version.clear();
  entry.cubin.clear();  // an empty CUBIN is a value, not NULL
  const auto now = [] {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const auto before = now();
  store.put(entry);
  const auto stored = store.lookup(entry.key);
  ASSERT_EQ(stored.status, LookupStatus::hit) << stored.error;
  EXPECT_GE(stored.entry->created_unix, before);
  EXPECT_LE(stored.entry->created_unix, now());
  EXPECT_EQ(stored.entry->moejit_version, MOEJIT_TEST_EXPECTED_VERSION);
  EXPECT_TRUE(stored.entry->cubin.empty());
}

TEST(CacheStore, ReopenKeepsDataAndSchemaVersion) {
  TempDir dir;
  const auto entry = sample_entry(sample_key(), true);
  CacheStore(dir / "nested/dirs/cache.sqlite").put(entry);
  const CacheStore reopened(dir / "nested/dirs/cache.sqlite");
  EXPECT_EQ(reopened.schema_version(), kSchemaVersion);
  const auto result = reopened.lookup(entry.key);
  ASSERT_EQ(result.status, LookupStatus::hit) << result.error;
  testing::expect_same_entry(*result.entry, entry);
  EXPECT_GT(reopened.size_bytes(), static_cast<std::int64_t>(entry.cubin.size()));
}

TEST(CacheStore, MissForAnAbsentKey) {
  TempDir dir;
  CacheStore store(dir / "cache.sqlite");
  EXPECT_EQ(store.lookup(sample_key()).status, LookupStatus::miss);
  store.put(sample_entry(sample_key(), true));
  auto other = sample_key();
  other.token_bucket *= 2;
  const auto result = store.lookup(other);
  EXPECT_EQ(result.status, LookupStatus::miss);
  EXPECT_FALSE(result.entry.has_value());
}

TEST(CacheStore, CorruptedCubinIsAnErrorNotAMiss) {
  TempDir dir;
  CacheStore store(dir / "cache.sqlite");
  const auto entry = sample_entry(sample_key(), true);
  store.put(entry);
  {
    RawDb raw(store.path());
    sqlite3_blob* blob = nullptr;
    ASSERT_EQ(sqlite3_blob_open(raw.db.get(), "main", "entries", "cubin", 1, 1, &blob), SQLITE_OK)
        << sqlite3_errmsg(raw.db.get());
    char byte = 0;
    ASSERT_EQ(sqlite3_blob_read(blob, &byte, 1, 100), SQLITE_OK);
    byte = static_cast<char>(byte ^ 0x01);
    ASSERT_EQ(sqlite3_blob_write(blob, &byte, 1, 100), SQLITE_OK);
    sqlite3_blob_close(blob);
  }
  const auto result = store.lookup(entry.key);
  EXPECT_EQ(result.status, LookupStatus::error);
  EXPECT_FALSE(result.entry.has_value());
  EXPECT_NE(result.error.find("checksum"), std::string::npos) << result.error;
  EXPECT_NE(result.error.find(entry.key.id()), std::string::npos) << result.error;
  EXPECT_NE(error_of([&] { (void)store.list(); }).find(entry.key.id()), std::string::npos);

  // A damaged entry does not hold its place: an untuned rebuild replaces it.
  const auto rebuilt = sample_entry(entry.key, false, 2);
  store.put(rebuilt);
  ASSERT_EQ(store.lookup(entry.key).status, LookupStatus::hit);
  EXPECT_EQ(store.lookup(entry.key).entry->cubin, rebuilt.cubin);
}

TEST(CacheStore, UnparsableJsonIsAnError) {
  TempDir dir;
  CacheStore store(dir / "cache.sqlite");
  const auto entry = sample_entry(sample_key(), true);
  store.put(entry);
  RawDb(store.path()).exec("UPDATE entries SET config_json = '{\"block_m\": 64'");
  const auto result = store.lookup(entry.key);
  EXPECT_EQ(result.status, LookupStatus::error);
  EXPECT_FALSE(result.error.empty());
  RawDb(store.path()).exec("UPDATE entries SET config_json = '{}', ptxas_json = '[]'");
  EXPECT_EQ(store.lookup(entry.key).status, LookupStatus::error);
}

TEST(CacheStore, NewerSchemaIsLeftAloneAndServedFromMemory) {
  TempDir dir;
  const auto path = dir / "future.sqlite";
  RawDb(path).exec("PRAGMA user_version = " + std::to_string(kSchemaVersion + 1));
  testing::Warnings warnings;
  CacheStore store(path, warnings.options());
  ASSERT_EQ(warnings.lines.size(), 1u) << warnings.joined();
  EXPECT_NE(warnings.lines[0].find("newer"), std::string::npos) << warnings.joined();
  EXPECT_NE(warnings.lines[0].find(path.string()), std::string::npos) << warnings.joined();
  EXPECT_NE(store.fallback().find("newer"), std::string::npos) << store.fallback();
  const auto entry = sample_entry(sample_key(), true);
  store.put(entry);
  EXPECT_EQ(store.lookup(entry.key).status, LookupStatus::hit);
  // The newer moejit's file is untouched.
  EXPECT_EQ(RawDb(path).integer("PRAGMA user_version"), kSchemaVersion + 1);
  EXPECT_EQ(RawDb(path).integer("SELECT count(*) FROM sqlite_master"), 0);
}

TEST(CacheStore, GarbageFileIsMovedAsideAndReplaced) {
  TempDir dir;
  const auto path = dir / "garbage.sqlite";
  std::string garbage;
  std::mt19937 random(42);
  for (int i = 0; i < 8192; ++i) garbage += static_cast<char>(random());
  testing::write_bytes(path, garbage);
  testing::Warnings warnings;
  CacheStore store(path, warnings.options());
  EXPECT_TRUE(store.fallback().empty()) << store.fallback();
  ASSERT_EQ(warnings.lines.size(), 1u) << warnings.joined();
  EXPECT_NE(warnings.lines[0].find("not a SQLite database"), std::string::npos)
      << warnings.joined();
  const auto aside = testing::moved_aside(path);
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_NE(warnings.lines[0].find(aside[0].string()), std::string::npos) << warnings.joined();
  EXPECT_EQ(testing::read_bytes(aside[0]), garbage);
  const auto entry = sample_entry(sample_key(), true);
  store.put(entry);
  EXPECT_EQ(CacheStore(path).lookup(entry.key).status, LookupStatus::hit);
}

TEST(CacheStore, UntunedNeverReplacesTuned) {
  TempDir dir;
  CacheStore store(dir / "cache.sqlite");
  const auto key = sample_key();
  store.put(sample_entry(key, false, 1));
  store.put(sample_entry(key, true, 2));  // tuned replaces untuned
  EXPECT_EQ(store.lookup(key).entry->cubin, sample_entry(key, true, 2).cubin);
  store.put(sample_entry(key, false, 3));  // untuned is ignored
  EXPECT_EQ(store.lookup(key).entry->cubin, sample_entry(key, true, 2).cubin);
  store.put(sample_entry(key, true, 4));  // a newer tuning wins
  testing::expect_same_entry(*store.lookup(key).entry, sample_entry(key, true, 4));
  EXPECT_EQ(store.list().size(), 1u);
}

// `count` entries of different shapes, put in an order that is not the listing order.
std::vector<CacheEntry> shuffled_entries(int count) {
  std::vector<CacheEntry> entries;
  for (int i = 0; i < count; ++i) {
    auto key = sample_key();
    key.spec.experts = 8 << (i % 3);
    key.spec.in_features = 512 * (1 + (i * 7) % 5);
    key.token_bucket = std::int64_t{1} << (i % 13);
    entries.push_back(sample_entry(key, i % 2 == 0, i + 1));
  }
  std::shuffle(entries.begin(), entries.end(), std::mt19937(3));
  return entries;
}

TEST(CacheStore, ListsEveryEntryOrderedByShape) {
  TempDir dir;
  CacheStore store(dir / "cache.sqlite");
  const auto entries = shuffled_entries(40);
  for (const auto& entry : entries) store.put(entry);
  const auto listed = store.list();
  ASSERT_EQ(listed.size(), entries.size());
  auto shape = [](const CacheEntry& e) {
    const auto& s = e.key.spec;
    return std::tuple(std::string(to_string(s.op)), s.experts, s.in_features, s.out_features,
                      e.key.token_bucket);
  };
  EXPECT_TRUE(std::is_sorted(listed.begin(), listed.end(),
                             [&](const auto& a, const auto& b) { return shape(a) < shape(b); }));
  std::set<std::string> ids;
  for (const auto& entry : listed) ids.insert(entry.key.id());
  for (const auto& entry : entries) EXPECT_TRUE(ids.count(entry.key.id())) << entry.key.text();
}

TEST(CacheStore, FindsByIdPrefix) {
  TempDir dir;
  CacheStore store(dir / "cache.sqlite");
  const auto entries = shuffled_entries(40);
  std::multiset<char> first_digits;
  for (const auto& entry : entries) {
    store.put(entry);
    first_digits.insert(entry.key.id().front());
  }
  const auto& wanted = entries.front();
  const auto found = store.find(wanted.key.id());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->key, wanted.key);

  // 40 ids over 16 leading digits: some digit leads at least two of them.
  const auto shared = std::find_if(first_digits.begin(), first_digits.end(),
                                   [&](char c) { return first_digits.count(c) > 1; });
  ASSERT_NE(shared, first_digits.end());
  try {
    (void)store.find(std::string(1, *shared));
    ADD_FAILURE() << "an ambiguous prefix was accepted";
  } catch (const InvalidArgument& error) {
    const auto count = std::to_string(first_digits.count(*shared));
    EXPECT_NE(std::string(error.what()).find(count + " entries"), std::string::npos)
        << error.what();
  }
  auto absent = wanted.key.id();
  absent.back() = absent.back() == '0' ? '1' : '0';
  EXPECT_FALSE(store.find(absent).has_value());
  EXPECT_THROW((void)store.find("not-hex"), InvalidArgument);
  EXPECT_THROW((void)store.find(""), InvalidArgument);
}

TEST(DefaultCachePath, HonoursTheEnvironment) {
  ScopedEnv home("HOME", "/home/someone");
  {
    ScopedEnv cache("MOEJIT_CACHE", "/data/kernels.sqlite");
    ScopedEnv xdg("XDG_CACHE_HOME", "/xdg");
    EXPECT_EQ(default_cache_path(), "/data/kernels.sqlite");
  }
  ScopedEnv cache("MOEJIT_CACHE", "");
  {
    ScopedEnv xdg("XDG_CACHE_HOME", "/xdg");
    EXPECT_EQ(default_cache_path(), "/xdg/moejit/cache.sqlite");
  }
  ScopedEnv xdg("XDG_CACHE_HOME", std::nullopt);
  EXPECT_EQ(default_cache_path(), "/home/someone/.cache/moejit/cache.sqlite");
}

}  // namespace
}  // namespace moejit
