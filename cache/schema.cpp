#include "cache/schema.hpp"

#include <fmt/format.h>

#include <iterator>
#include <set>
#include <utility>

#include "cache/store.hpp"

namespace moejit::schema {
namespace {

// Version 1's schema, exactly as version 1 created it: migrations replay history.
constexpr const char* kCreateEntries = R"sql(
CREATE TABLE entries (
  id TEXT PRIMARY KEY NOT NULL,
  key_text TEXT NOT NULL,
  key_json TEXT NOT NULL,
  device_name TEXT NOT NULL,
  arch TEXT NOT NULL,
  op TEXT NOT NULL,
  experts INTEGER NOT NULL,
  top_k INTEGER NOT NULL,
  in_features INTEGER NOT NULL,
  out_features INTEGER NOT NULL,
  rank INTEGER NOT NULL,
  token_bucket INTEGER NOT NULL,
  act TEXT NOT NULL,
  weights TEXT NOT NULL,
  config_json TEXT NOT NULL,
  kernel_name TEXT NOT NULL,
  cubin BLOB NOT NULL,
  cubin_checksum TEXT NOT NULL,
  ptxas_json TEXT NOT NULL,
  time_ms REAL NOT NULL,
  tuned INTEGER NOT NULL,
  created_unix INTEGER NOT NULL,
  moejit_version TEXT NOT NULL
);
CREATE INDEX entries_by_shape ON entries (op, experts, in_features, out_features, token_bucket);
CREATE INDEX entries_by_device ON entries (device_name, arch);
)sql";

// Version 2: one row per entry being built, so that other processes wait instead of building it
// again; `host` names the machine and pid namespace in which `pid` can be checked for life.
constexpr const char* kCreateClaims = R"sql(
CREATE TABLE claims (
  id TEXT PRIMARY KEY NOT NULL,
  owner TEXT NOT NULL,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  expires_unix_ms INTEGER NOT NULL
);
PRAGMA application_id = 1299137866;
)sql";

struct Migration {
  int from;  // the step takes a database of this version to from + 1
  const char* sql;
};

constexpr Migration kMigrations[] = {{0, kCreateEntries}, {1, kCreateClaims}};
static_assert(std::size(kMigrations) == kSchemaVersion, "one migration step per version");
static_assert(kApplicationId == 1299137866, "kCreateClaims spells the application id out");

using Object = std::pair<std::string, std::string>;  // type, name

struct VersionedObject {
  int since;
  Object object;
};

const VersionedObject kObjects[] = {{1, {"table", "entries"}},
                                    {1, {"index", "entries_by_shape"}},
                                    {1, {"index", "entries_by_device"}},
                                    {2, {"table", "claims"}}};

std::set<Object> expected_objects(int version) {
  std::set<Object> objects;
  for (const auto& [since, object] : kObjects)
    if (since <= version) objects.insert(object);
  return objects;
}

// Everything but SQLite's own objects (e.g. the autoindex of a primary key).
std::set<Object> actual_objects(const sqlite::Database& db) {
  sqlite::Statement row(
      db, "SELECT type, name FROM sqlite_master WHERE substr(name, 1, 7) != 'sqlite_'");
  std::set<Object> objects;
  while (row.step()) objects.emplace(row.text(0), row.text(1));
  return objects;
}

std::string difference(const std::set<Object>& actual, const std::set<Object>& expected) {
  for (const auto& [type, name] : actual)
    if (!expected.count({type, name})) return fmt::format("unexpected {} '{}'", type, name);
  for (const auto& [type, name] : expected)
    if (!actual.count({type, name})) return fmt::format("missing {} '{}'", type, name);
  return {};
}

Classification foreign(int version, std::string why) {
  return {Kind::foreign, version, std::move(why)};
}

}  // namespace

Classification classify(const sqlite::Database& db) {
  // One snapshot: another process may be creating the schema between two separate reads.
  sqlite::Transaction snapshot(db, sqlite::Transaction::Kind::read);
  const auto application_id = db.query_integer("PRAGMA application_id");
  const auto version = static_cast<int>(db.query_integer("PRAGMA user_version"));
  const auto objects = actual_objects(db);
  snapshot.commit();
  if (application_id != 0 && application_id != kApplicationId)
    return foreign(version, fmt::format("application id {:#x} is not moejit's", application_id));
  if (version > kSchemaVersion) return {Kind::newer, version, {}};
  if (version < 0) return foreign(version, fmt::format("schema version {}", version));
  if (version == 0)
    return objects.empty() ? Classification{Kind::empty, 0, {}}
                           : foreign(0, "it holds tables but no moejit schema version");
  if (version >= 2 && application_id != kApplicationId)
    return foreign(version, "moejit's application id is missing");
  if (auto why = difference(objects, expected_objects(version)); !why.empty())
    return foreign(version, fmt::format("schema version {}: {}", version, why));
  return {version == kSchemaVersion ? Kind::current : Kind::older, version, {}};
}

void migrate(const sqlite::Database& db) {
  sqlite::retry_while_busy([&] {
    sqlite::Transaction transaction(db);
    // Read inside the write transaction: another process may have migrated since classify().
    const auto version = db.query_integer("PRAGMA user_version");
    if (version > kSchemaVersion)
      throw CacheError(fmt::format("SQLite cache '{}': schema version {} is newer than {}",
                                   db.path().string(), version, kSchemaVersion));
    for (const Migration& step : kMigrations)
      if (step.from >= version) db.exec(step.sql);
    if (version != kSchemaVersion)
      db.exec(fmt::format("PRAGMA user_version = {}", kSchemaVersion).c_str());
    transaction.commit();
  });
}

}  // namespace moejit::schema
