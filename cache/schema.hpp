#pragma once
// The cache's schema: creation and step-by-step migration from every earlier version, and the
// checks that tell a moejit cache from a newer or a foreign file. Version 1: `entries`; version 2
// adds `claims` (who is building which entry) and moejit's application id in the file header.
#include <string>

#include "cache/sqlite.hpp"

namespace moejit::schema {

// "MoEJ": PRAGMA application_id of every moejit cache from version 2 on.
inline constexpr int kApplicationId = 0x4d6f454a;

enum class Kind {
  empty,    // a new file: no schema yet
  current,  // kSchemaVersion
  older,    // an earlier moejit schema, migrated by migrate()
  newer,    // written by a newer moejit: leave it alone
  foreign,  // not a moejit cache, or one with objects moejit never creates (e.g. a trigger)
};

struct Classification {
  Kind kind = Kind::empty;
  int version = 0;
  std::string why;  // for foreign: what gave it away
};

// Reads the application id, the schema version and the schema's objects. SQLite errors
// (sqlite::Busy, sqlite::Corrupt) propagate.
Classification classify(const sqlite::Database& db);

// Brings an empty, older or current database to kSchemaVersion in one IMMEDIATE transaction,
// running each step from the file's version on; another process may migrate at the same time.
// Throws CacheError for a newer version.
void migrate(const sqlite::Database& db);

}  // namespace moejit::schema
