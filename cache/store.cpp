#include "cache/store.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>

#include "cache/entry_row.hpp"
#include "cache/store_impl.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

std::string getenv_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

bool is_hex_prefix(const std::string& text) {
  return !text.empty() && text.size() <= 16 &&
         text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

void emit_warning(const StoreOptions& options, const std::string& line) {
  if (options.warn)
    options.warn(line);
  else
    std::fprintf(stderr, "moejit: warning: %s\n", line.c_str());
}

}  // namespace

std::filesystem::path default_cache_path() {
  if (const auto explicit_path = getenv_or_empty("MOEJIT_CACHE"); !explicit_path.empty())
    return explicit_path;
  // The XDG base-directory spec says relative values are invalid and must be ignored.
  if (const auto xdg = getenv_or_empty("XDG_CACHE_HOME"); !xdg.empty() && xdg.front() == '/')
    return std::filesystem::path(xdg) / "moejit" / "cache.sqlite";
  if (const auto home = getenv_or_empty("HOME"); !home.empty())
    return std::filesystem::path(home) / ".cache" / "moejit" / "cache.sqlite";
  throw CacheError(
      "cannot locate the moejit cache: MOEJIT_CACHE, XDG_CACHE_HOME and HOME are unset");
}

bool is_better(const CacheEntry& candidate, const CacheEntry& current) {
  if (candidate.tuned != current.tuned) return candidate.tuned;
  return candidate.tuned && candidate.time_ms < current.time_ms;
}

CacheStore::Impl::Impl(std::filesystem::path p, StoreOptions o, OpenedDatabase db)
    : path(std::move(p)), options(std::move(o)), opened(std::move(db)) {}

void CacheStore::Impl::warn(const std::string& line) const {
  emit_warning(options, line);
}

void CacheStore::Impl::recover(const std::string& why) const {
  const Warn to_warn = [this](const std::string& line) { warn(line); };
  const auto start_empty = [&](const std::string& reason) {
    to_warn(fmt::format("cache '{}': {}; continuing with an empty in-memory cache", path.string(),
                        reason));
    opened = open_in_memory(path, reason);
  };
  if (!opened.file) return start_empty(fmt::format("the in-memory database is damaged ({})", why));
  // Another process may have replaced the file already: then only this connection is stale.
  if (file_id(path) == opened.file) {
    try {
      const auto aside = move_aside(path);
      to_warn(fmt::format("cache '{}' is damaged ({}): moved it to '{}' and started a new cache",
                          path.string(), why, aside.string()));
    } catch (const CacheError& error) {
      return start_empty(error.what());
    }
  }
  opened = open_shared(path, to_warn);
}

CacheStore::CacheStore(const std::filesystem::path& path, StoreOptions options) {
  auto opened =
      options.standalone
          ? open_standalone(path)
          : open_shared(path, [&options](const std::string& line) { emit_warning(options, line); });
  impl_ = std::make_unique<Impl>(path, std::move(options), std::move(opened));
}

CacheStore::CacheStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CacheStore::~CacheStore() = default;
CacheStore::CacheStore(CacheStore&&) noexcept = default;
CacheStore& CacheStore::operator=(CacheStore&&) noexcept = default;

const std::filesystem::path& CacheStore::path() const {
  return impl_->path;
}
const std::string& CacheStore::fallback() const {
  return impl_->opened.fallback;
}

std::string CacheStore::journal_mode() const {
  return impl_->run(
      [](const sqlite::Database& db) { return db.query_text("PRAGMA journal_mode"); });
}

int CacheStore::schema_version() const {
  return static_cast<int>(impl_->run(
      [](const sqlite::Database& db) { return db.query_integer("PRAGMA user_version"); }));
}

LookupResult CacheStore::lookup(const CacheKey& key) const {
  try {
    return impl_->run([&](const sqlite::Database& db) { return read_entry(db, key); });
  } catch (const CacheError& error) {
    return LookupResult{.status = LookupStatus::error, .error = error.what()};
  }
}

std::vector<CacheEntry> CacheStore::list() const {
  return impl_->run([](const sqlite::Database& db) { return read_all_entries(db); });
}

std::optional<CacheEntry> CacheStore::find(const std::string& id_prefix) const {
  if (!is_hex_prefix(id_prefix))
    throw InvalidArgument("id prefix", "'" + id_prefix + "'", "1 to 16 lowercase hex digits");
  const auto ids =
      impl_->run([&](const sqlite::Database& db) { return ids_with_prefix(db, id_prefix); });
  if (ids.empty()) return std::nullopt;
  if (ids.size() > 1)
    throw InvalidArgument("id prefix", "'" + id_prefix + "'",
                          fmt::format("a unique prefix ({} entries match)", ids.size()));
  return impl_->run([&](const sqlite::Database& db) { return read_entry_by_id(db, ids.front()); });
}

std::int64_t CacheStore::size_bytes() const {
  if (!fallback().empty() || path() == ":memory:") return 0;
  std::int64_t total = 0;
  for (const auto& file : {path(), std::filesystem::path(path().string() + "-wal")}) {
    std::error_code error;
    const auto size = std::filesystem::file_size(file, error);
    if (!error) total += static_cast<std::int64_t>(size);
  }
  return total;
}

}  // namespace moejit
