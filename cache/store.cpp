#include "cache/store.hpp"

#include <fmt/format.h>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>

#include "cache/entry_row.hpp"
#include "cache/sqlite.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

constexpr const char* kCreateSchema = R"sql(
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

std::string getenv_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void create_parent_directories(const std::filesystem::path& path) {
  if (!path.has_parent_path()) return;
  std::error_code error;
  std::filesystem::create_directories(path.parent_path(), error);
  if (error)
    throw CacheError(fmt::format("SQLite cache '{}': cannot create directory '{}': {}",
                                 path.string(), path.parent_path().string(), error.message()));
}

bool is_hex_prefix(const std::string& text) {
  return !text.empty() && text.size() <= 16 &&
         text.find_first_not_of("0123456789abcdef") == std::string::npos;
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

struct CacheStore::Impl {
  explicit Impl(const std::filesystem::path& path) : db(path) {}

  sqlite::Database db;
  // One connection serves one thread at a time: SQLite transactions belong to the connection.
  mutable std::mutex mutex;
};

namespace {

void prepare_schema(const sqlite::Database& db) {
  const auto version =
      sqlite::retry_while_busy([&] { return db.query_integer("PRAGMA user_version"); });
  if (version > kSchemaVersion)
    throw CacheError(
        fmt::format("SQLite cache '{}': schema version {} is newer than this moejit supports ({}); "
                    "upgrade moejit or point MOEJIT_CACHE at another file",
                    db.path().string(), version, kSchemaVersion));
  // WAL lets readers run beside the writer; a file system that refuses it keeps the default
  // journal.
  const auto journal =
      sqlite::retry_while_busy([&] { return db.query_text("PRAGMA journal_mode=WAL"); });
  // In WAL mode NORMAL cannot corrupt the file; a power cut may only lose the latest entries,
  // which are rebuilt on demand, and each put() saves an fsync.
  if (journal == "wal") db.exec("PRAGMA synchronous=NORMAL");
  if (version == kSchemaVersion) return;
  sqlite::retry_while_busy([&] {
    sqlite::Transaction transaction(db);
    // Another process may have created the schema since the first read.
    const auto current = db.query_integer("PRAGMA user_version");
    if (current == 0) {
      db.exec(kCreateSchema);
      db.exec(fmt::format("PRAGMA user_version = {}", kSchemaVersion).c_str());
    } else if (current != kSchemaVersion) {
      throw CacheError(fmt::format("SQLite cache '{}': unsupported schema version {} (expected {})",
                                   db.path().string(), current, kSchemaVersion));
    }
    transaction.commit();
  });
}

}  // namespace

CacheStore::CacheStore(const std::filesystem::path& path) {
  create_parent_directories(path);
  impl_ = std::make_unique<Impl>(path);
  prepare_schema(impl_->db);
}

CacheStore::~CacheStore() = default;
CacheStore::CacheStore(CacheStore&&) noexcept = default;
CacheStore& CacheStore::operator=(CacheStore&&) noexcept = default;

const std::filesystem::path& CacheStore::path() const {
  return impl_->db.path();
}

int CacheStore::schema_version() const {
  const std::lock_guard lock(impl_->mutex);
  return static_cast<int>(
      sqlite::retry_while_busy([&] { return impl_->db.query_integer("PRAGMA user_version"); }));
}

LookupResult CacheStore::lookup(const CacheKey& key) const {
  const std::lock_guard lock(impl_->mutex);
  return sqlite::retry_while_busy([&] { return read_entry(impl_->db, key); });
}

void CacheStore::put(const CacheEntry& entry) {
  CacheEntry stored = entry;
  if (stored.created_unix == 0) stored.created_unix = now_unix();
  if (stored.moejit_version.empty()) stored.moejit_version = MOEJIT_VERSION;
  const std::lock_guard lock(impl_->mutex);
  sqlite::retry_while_busy([&] {
    sqlite::Transaction transaction(impl_->db);
    // Tuning is expensive: a sound tuned entry survives offline warm-ups of the same key, while a
    // damaged one is replaced by anything.
    const LookupResult current = read_entry(impl_->db, stored.key);
    const bool keep_current =
        current.status == LookupStatus::hit && current.entry->tuned && !stored.tuned;
    if (!keep_current) write_entry(impl_->db, stored);
    transaction.commit();
  });
}

std::vector<CacheEntry> CacheStore::list() const {
  const std::lock_guard lock(impl_->mutex);
  return sqlite::retry_while_busy([&] { return read_all_entries(impl_->db); });
}

std::optional<CacheEntry> CacheStore::find(const std::string& id_prefix) const {
  if (!is_hex_prefix(id_prefix))
    throw InvalidArgument("id prefix", "'" + id_prefix + "'", "1 to 16 lowercase hex digits");
  const std::lock_guard lock(impl_->mutex);
  const auto ids = sqlite::retry_while_busy([&] { return ids_with_prefix(impl_->db, id_prefix); });
  if (ids.empty()) return std::nullopt;
  if (ids.size() > 1)
    throw InvalidArgument("id prefix", "'" + id_prefix + "'",
                          fmt::format("a unique prefix ({} entries match)", ids.size()));
  return sqlite::retry_while_busy([&] { return read_entry_by_id(impl_->db, ids.front()); });
}

std::int64_t CacheStore::size_bytes() const {
  std::int64_t total = 0;
  for (const auto& file : {path(), std::filesystem::path(path().string() + "-wal")}) {
    std::error_code error;
    const auto size = std::filesystem::file_size(file, error);
    if (!error) total += static_cast<std::int64_t>(size);
  }
  return total;
}

}  // namespace moejit
