// Schema versions: a new file gets the current schema; a file of every earlier version is migrated
// with its entries intact; newer and foreign files are recognised.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cache/schema.hpp"
#include "cache/store.hpp"
#include "cache_test_support.hpp"

namespace moejit {
namespace {

using testing::RawDb;
using testing::sample_entry;
using testing::sample_key;
using testing::TempDir;

// Schema version 1 as moejit 0.1.0 wrote it (no claims table, no application id).
constexpr const char* kVersion1 = R"sql(
CREATE TABLE entries (
  id TEXT PRIMARY KEY NOT NULL, key_text TEXT NOT NULL, key_json TEXT NOT NULL,
  device_name TEXT NOT NULL, arch TEXT NOT NULL, op TEXT NOT NULL, experts INTEGER NOT NULL,
  top_k INTEGER NOT NULL, in_features INTEGER NOT NULL, out_features INTEGER NOT NULL,
  rank INTEGER NOT NULL, token_bucket INTEGER NOT NULL, act TEXT NOT NULL, weights TEXT NOT NULL,
  config_json TEXT NOT NULL, kernel_name TEXT NOT NULL, cubin BLOB NOT NULL,
  cubin_checksum TEXT NOT NULL, ptxas_json TEXT NOT NULL, time_ms REAL NOT NULL,
  tuned INTEGER NOT NULL, created_unix INTEGER NOT NULL, moejit_version TEXT NOT NULL);
CREATE INDEX entries_by_shape ON entries (op, experts, in_features, out_features, token_bucket);
CREATE INDEX entries_by_device ON entries (device_name, arch);
PRAGMA user_version = 1;
)sql";

// A version-1 file holding `entry`, written the way version 1 wrote rows.
void write_version1(const std::filesystem::path& path, const CacheEntry& entry) {
  RawDb raw(path);
  raw.exec(kVersion1);
  const auto checksum = fmt::format("{:016x}", fnv1a64(entry.cubin.data(), entry.cubin.size()));
  std::string hex;
  for (const char byte : entry.cubin)
    hex += fmt::format("{:02x}", static_cast<unsigned char>(byte));
  const auto& s = entry.key.spec;
  const nlohmann::json report = {
      {"registers", entry.report.registers},     {"spill_stores", entry.report.spill_stores},
      {"spill_loads", entry.report.spill_loads}, {"static_smem", entry.report.static_smem},
      {"stack_frame", entry.report.stack_frame}, {"found", entry.report.found}};
  raw.exec(fmt::format(
      "INSERT INTO entries VALUES ('{}', '{}', '{}', '{}', '{}', 'forward', {}, {}, {}, {}, {}, "
      "{}, 'bf16', 'nf4', '{}', '{}', x'{}', '{}', '{}', {}, {}, {}, '{}')",
      entry.key.id(), entry.key.text(), nlohmann::json(entry.key).dump(), entry.key.device.name,
      entry.key.device.arch, s.experts, s.top_k, s.in_features, s.out_features, s.rank,
      entry.key.token_bucket, nlohmann::json(entry.config).dump(), entry.kernel_name, hex, checksum,
      report.dump(), entry.time_ms, entry.tuned ? 1 : 0, entry.created_unix, entry.moejit_version));
}

TEST(CacheSchema, NewFileHasTheCurrentSchemaAndApplicationId) {
  TempDir dir;
  const auto path = dir / "cache.sqlite";
  { CacheStore store(path); }
  RawDb raw(path);
  EXPECT_EQ(raw.integer("PRAGMA user_version"), kSchemaVersion);
  EXPECT_EQ(raw.integer("PRAGMA application_id"), schema::kApplicationId);
  EXPECT_EQ(raw.integer("SELECT count(*) FROM sqlite_master WHERE name = 'claims'"), 1);
}

TEST(CacheSchema, Version1IsMigratedWithItsEntries) {
  TempDir dir;
  const auto path = dir / "v1.sqlite";
  const auto entry = sample_entry(sample_key(), true, 5);
  write_version1(path, entry);
  testing::Warnings warnings;
  CacheStore store(path, warnings.options());
  EXPECT_TRUE(warnings.lines.empty()) << warnings.joined();
  EXPECT_EQ(store.schema_version(), kSchemaVersion);
  const auto found = store.lookup(entry.key);
  ASSERT_EQ(found.status, LookupStatus::hit) << found.error;
  testing::expect_same_entry(*found.entry, entry);
  EXPECT_EQ(store.try_claim(sample_key(), true, std::chrono::seconds(60)).status,
            ClaimStatus::present);
  EXPECT_EQ(RawDb(path).integer("PRAGMA application_id"), schema::kApplicationId);
}

TEST(CacheSchema, ClassifiesEveryKindOfFile) {
  TempDir dir;
  const auto classify = [](const std::filesystem::path& path) {
    return schema::classify(sqlite::Database(path));
  };
  EXPECT_EQ(classify(dir / "empty.sqlite").kind, schema::Kind::empty);
  write_version1(dir / "v1.sqlite", sample_entry(sample_key(), true));
  EXPECT_EQ(classify(dir / "v1.sqlite").kind, schema::Kind::older);
  { CacheStore store(dir / "current.sqlite"); }
  EXPECT_EQ(classify(dir / "current.sqlite").kind, schema::Kind::current);
  RawDb(dir / "newer.sqlite").exec("PRAGMA user_version = 99");
  EXPECT_EQ(classify(dir / "newer.sqlite").kind, schema::Kind::newer);
  RawDb(dir / "other-app.sqlite").exec("PRAGMA application_id = 42");
  const auto other = classify(dir / "other-app.sqlite");
  EXPECT_EQ(other.kind, schema::Kind::foreign);
  EXPECT_NE(other.why.find("0x2a"), std::string::npos) << other.why;
  { CacheStore store(dir / "no-claims.sqlite"); }
  RawDb(dir / "no-claims.sqlite").exec("DROP TABLE claims");
  const auto missing = classify(dir / "no-claims.sqlite");
  EXPECT_EQ(missing.kind, schema::Kind::foreign);
  EXPECT_NE(missing.why.find("missing table 'claims'"), std::string::npos) << missing.why;
}

}  // namespace
}  // namespace moejit
