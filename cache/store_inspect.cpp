// CacheStore's whole-file reads: scan, integrity, and opening a file from elsewhere.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cache/entry_row.hpp"
#include "cache/schema.hpp"
#include "cache/store_impl.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

// Larger files are refused before SQLite reads a byte of them.
constexpr std::uintmax_t kMaxUntrustedBytes = std::uintmax_t{4} << 30;

std::string not_a_cache(const std::filesystem::path& path, const std::string& why) {
  return fmt::format("'{}' is not a usable moejit cache: {}", path.string(), why);
}

void require_sqlite_file(const std::filesystem::path& path) {
  switch (probe_file(path)) {
    case FileState::absent:
      throw CacheError(not_a_cache(path, "no such file"));
    case FileState::not_regular:
      throw CacheError(not_a_cache(path, "not a regular file"));
    case FileState::empty:
      throw CacheError(not_a_cache(path, "the file is empty"));
    case FileState::not_sqlite:
      throw CacheError(not_a_cache(path, "not a SQLite database"));
    case FileState::sqlite:
      break;
  }
  if (const auto size = std::filesystem::file_size(path); size > kMaxUntrustedBytes)
    throw CacheError(not_a_cache(
        path, fmt::format("{} bytes, more than the {} allowed", size, kMaxUntrustedBytes)));
}

}  // namespace

ScanResult CacheStore::scan() const {
  return impl_->run([](const sqlite::Database& db) { return scan_entries(db); });
}

std::vector<std::string> CacheStore::integrity_problems() const {
  return impl_->run([](const sqlite::Database& db) { return db.integrity_problems(); });
}

CacheStore CacheStore::open_untrusted(const std::filesystem::path& path) {
  require_sqlite_file(path);
  sqlite::Database copy = [&] {
    try {
      return copy_into_memory(path);
    } catch (const CacheError& error) {
      throw CacheError(not_a_cache(path, error.what()));
    }
  }();
  if (const auto problems = copy.integrity_problems(); !problems.empty())
    throw CacheError(not_a_cache(
        path, fmt::format("SQLite's integrity check reports: {}", fmt::join(problems, "; "))));
  const schema::Classification found = schema::classify(copy);
  if (found.kind == schema::Kind::foreign) throw CacheError(not_a_cache(path, found.why));
  if (found.kind == schema::Kind::empty)
    throw CacheError(not_a_cache(path, "a SQLite database without moejit's tables"));
  if (found.kind == schema::Kind::newer)
    throw CacheError(not_a_cache(path, fmt::format("schema version {} is newer than this "
                                                   "moejit's {}",
                                                   found.version, kSchemaVersion)));
  schema::migrate(copy);
  OpenedDatabase opened{std::move(copy), "a checked in-memory copy of a file from elsewhere", {}};
  return CacheStore(
      std::make_unique<Impl>(path, StoreOptions{.standalone = true}, std::move(opened)));
}

}  // namespace moejit
