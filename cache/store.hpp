#pragma once
// The SQLite cache of tuned kernels. Lookups tell hit, miss and error apart; every write is one
// transaction; several processes may read and write one file at once.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cache/key.hpp"
#include "compiler/ptxas_report.hpp"
#include "compiler/tile_config.hpp"

namespace moejit {

struct CacheEntry {
  CacheKey key;
  TileConfig config;
  std::vector<char> cubin;
  std::string kernel_name;  // lowered name in the CUBIN
  PtxasReport report;
  double time_ms = -1;      // measured median; < 0 when untuned
  bool tuned = false;       // false for default configs compiled offline or with tuning off
  std::int64_t created_unix = 0;
  std::string moejit_version;
};

enum class LookupStatus { hit, miss, error };

struct LookupResult {
  LookupStatus status = LookupStatus::miss;
  std::optional<CacheEntry> entry;  // set on hit
  std::string error;                // set on error (e.g. corrupt row, checksum mismatch)
};

// Current schema version of the database (PRAGMA user_version).
inline constexpr int kSchemaVersion = 1;

// $MOEJIT_CACHE, else $XDG_CACHE_HOME/moejit/cache.sqlite, else ~/.cache/moejit/cache.sqlite.
std::filesystem::path default_cache_path();

class CacheStore {
 public:
  // Opens (creating directories, file and schema as needed) the database at `path`.
  // Throws CacheError naming the path and SQLite's message.
  explicit CacheStore(const std::filesystem::path& path);
  ~CacheStore();
  CacheStore(CacheStore&&) noexcept;
  CacheStore& operator=(CacheStore&&) noexcept;

  const std::filesystem::path& path() const;
  int schema_version() const;

  LookupResult lookup(const CacheKey& key) const;
  // Inserts or replaces the entry of entry.key in one transaction. A tuned entry is never
  // replaced by an untuned one.
  void put(const CacheEntry& entry);
  // All entries (CUBINs included), ordered by shape.
  std::vector<CacheEntry> list() const;
  // The entry whose id() starts with `id_prefix`; throws InvalidArgument when ambiguous.
  std::optional<CacheEntry> find(const std::string& id_prefix) const;
  std::int64_t size_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moejit
