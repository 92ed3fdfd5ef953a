#include "cache/store_open.hpp"

#include <fmt/format.h>

#include <system_error>

#include "cache/schema.hpp"
#include "cache/store.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

// Thrown inside open_shared for a SQLite file that is not a moejit cache: handled like damage.
class Foreign : public CacheError {
 public:
  using CacheError::CacheError;
};

// Thrown inside open_shared for a cache of a newer moejit, which this one must not touch.
class Newer : public CacheError {
 public:
  using CacheError::CacheError;
};

std::string memory_name(const std::filesystem::path& path) {
  return fmt::format("in-memory stand-in for '{}'", path.string());
}

// WAL lets readers run beside the writer; a file system that refuses it keeps the rollback
// journal. In WAL mode NORMAL cannot corrupt the file; a power cut may only lose the latest
// entries, which are rebuilt on demand, and each put() saves an fsync.
void use_wal(const sqlite::Database& db) {
  const auto journal =
      sqlite::retry_while_busy([&] { return db.query_text("PRAGMA journal_mode=WAL"); });
  if (journal == "wal") db.exec("PRAGMA synchronous=NORMAL");
}

// Classifies and migrates; throws Foreign or Newer for files it must not migrate.
void prepare(const sqlite::Database& db, const std::filesystem::path& path) {
  const auto found = sqlite::retry_while_busy([&] { return schema::classify(db); });
  if (found.kind == schema::Kind::foreign)
    throw Foreign(fmt::format("'{}' is not a moejit cache ({})", path.string(), found.why));
  if (found.kind == schema::Kind::newer)
    throw Newer(fmt::format("'{}' has schema version {}, newer than this moejit's {}",
                            path.string(), found.version, kSchemaVersion));
  if (found.kind != schema::Kind::current) schema::migrate(db);
}

OpenedDatabase in_memory_instead(const std::filesystem::path& path, const std::string& why,
                                 const Warn& warn) {
  warn(fmt::format("cache '{}': {}; using an empty in-memory cache for this process", path.string(),
                   why));
  return open_in_memory(path, why);
}

OpenedDatabase private_copy(const std::filesystem::path& path, const std::string& why,
                            const Warn& warn) {
  try {
    sqlite::Database copy = copy_into_memory(path);
    prepare(copy, path);
    warn(
        fmt::format("cache '{}': {}; using an in-memory copy for this process (entries built "
                    "now are not saved)",
                    path.string(), why));
    return {std::move(copy), why, std::nullopt};
  } catch (const CacheError& error) {
    return in_memory_instead(path, fmt::format("{} ({})", why, error.what()), warn);
  }
}

OpenedDatabase open_file(const std::filesystem::path& path, const Warn& warn) {
  const FileState state = probe_file(path);
  if (state == FileState::not_regular)
    return in_memory_instead(path, "it is not a regular file", warn);
  if (state == FileState::not_sqlite)
    throw Foreign(fmt::format("'{}' is not a SQLite database", path.string()));
  sqlite::Database db(path);
  if (db.read_only()) return private_copy(path, "the file is read-only", warn);
  prepare(db, path);
  use_wal(db);
  return {std::move(db), {}, file_id(path)};
}

// Moves the file aside and returns true, or warns and returns false when it cannot be moved.
bool moved_aside(const std::filesystem::path& path, const std::string& why, const Warn& warn) {
  try {
    const auto aside = move_aside(path);
    warn(fmt::format("{}: moved it to '{}' and started a new cache", why, aside.string()));
    return true;
  } catch (const CacheError& error) {
    warn(fmt::format("{}; {}", why, error.what()));
    return false;
  }
}

}  // namespace

OpenedDatabase open_in_memory(const std::filesystem::path& path, std::string fallback) {
  sqlite::Database db(":memory:", sqlite::Access::read_write, memory_name(path));
  schema::migrate(db);
  return {std::move(db), std::move(fallback), std::nullopt};
}

sqlite::Database copy_into_memory(const std::filesystem::path& path) {
  const auto copy_from = [&](sqlite::Access access) {
    const sqlite::Database source(path, access);
    sqlite::Database copy(":memory:", sqlite::Access::read_write,
                          fmt::format("in-memory copy of '{}'", path.string()));
    sqlite::retry_while_busy([&] { sqlite::copy_database(source, copy); });
    return copy;
  };
  const auto copy_once = [&] {
    try {
      return copy_from(sqlite::Access::read_only);
    } catch (const sqlite::NoWalIndex& no_index) {
      // A WAL-mode file in a directory this process cannot write. Without a -wal file the main
      // file holds every committed page and nothing can be writing it, so reading it as
      // immutable is exact; with one, its pages cannot be read without the index.
      std::error_code error;
      if (std::filesystem::file_size(path.string() + "-wal", error) > 0 && !error)
        throw CacheError(
            fmt::format("{}; its -wal file holds committed pages that cannot be read "
                        "without write access to the directory",
                        no_index.what()));
      return copy_from(sqlite::Access::immutable);
    }
  };
  try {
    return copy_once();
  } catch (const sqlite::HotJournal& hot) {
    // A process killed mid-write left its rollback journal. Rolling it back restores the last
    // committed state, which is what every process that opens the file for writing does first;
    // SQLite's locks keep that safe beside live processes.
    const sqlite::Database writer(path);
    if (writer.read_only())
      throw CacheError(
          fmt::format("{}; the file is read-only, so the journal of the stopped "
                      "writer cannot be rolled back",
                      hot.what()));
    sqlite::retry_while_busy([&] { (void)writer.query_integer("PRAGMA schema_version"); });
  }
  return copy_once();
}

OpenedDatabase open_standalone(const std::filesystem::path& path) {
  sqlite::Database db(path);
  schema::migrate(db);
  return {std::move(db), {}, file_id(path)};
}

OpenedDatabase open_shared(const std::filesystem::path& path, const Warn& warn) {
  if (path == ":memory:") return open_in_memory(path, {});
  std::error_code error;
  const auto directory = path.has_parent_path() ? path.parent_path() : ".";
  std::filesystem::create_directories(directory, error);
  if (error)
    return in_memory_instead(
        path, fmt::format("cannot create directory '{}': {}", directory.string(), error.message()),
        warn);
  if (const auto network = network_file_system(directory))
    return private_copy(path,
                        fmt::format("it is on a {} file system, where SQLite cannot share it "
                                    "safely (set MOEJIT_CACHE to a local file)",
                                    *network),
                        warn);
  for (int attempt = 0;; ++attempt) {
    std::string damage;
    try {
      return open_file(path, warn);
    } catch (const Newer& newer) {
      return in_memory_instead(path, newer.what(), warn);
    } catch (const sqlite::Busy&) {
      return private_copy(path, "the database stayed locked", warn);
    } catch (const Foreign& foreign) {
      damage = foreign.what();
    } catch (const sqlite::Corrupt& corrupt) {
      damage = fmt::format("cache '{}' is damaged ({})", path.string(), corrupt.what());
    } catch (const CacheError& other) {
      return private_copy(path, other.what(), warn);
    }
    if (attempt > 0 || !moved_aside(path, damage, warn))
      return in_memory_instead(path, damage, warn);
  }
}

}  // namespace moejit
