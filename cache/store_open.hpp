#pragma once
// Internal to CacheStore: how a cache file is opened. The shared cache degrades instead of failing:
// a file that is damaged or not a moejit cache is moved aside and replaced; one that cannot be
// written or shared is read into a private in-memory copy; one from a newer moejit is left alone.
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "cache/file_system.hpp"
#include "cache/sqlite.hpp"

namespace moejit {

using Warn = std::function<void(const std::string&)>;

struct OpenedDatabase {
  sqlite::Database db;
  std::string fallback;        // empty when db is the file itself
  std::optional<FileId> file;  // the file db works on, to recognise it after a rename
};

// The user's cache: WAL where possible, schema created or migrated, never throws for the file's
// sake (only for e.g. out of memory).
OpenedDatabase open_shared(const std::filesystem::path& path, const Warn& warn);
// A new file written by this process alone (rollback journal); throws CacheError.
OpenedDatabase open_standalone(const std::filesystem::path& path);
// An empty in-memory database standing in for `path`, for the reason given.
OpenedDatabase open_in_memory(const std::filesystem::path& path, std::string fallback);
// An in-memory copy of the file's last committed state. Nothing is written to the file, except
// that the rollback journal of a writer killed mid-transaction is rolled back first. Throws
// CacheError (sqlite::Corrupt for a damaged file) when it cannot be read.
sqlite::Database copy_into_memory(const std::filesystem::path& path);

}  // namespace moejit
