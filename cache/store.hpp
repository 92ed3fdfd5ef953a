#pragma once
// The SQLite cache of tuned kernels. Lookups tell hit, miss and error apart; every write is one
// transaction; several processes may read and write one file at once, and claim an entry while
// they build it so that the others wait for it instead of building it too. The store never makes
// a run fail for the cache's sake: a damaged file is moved aside and rebuilt, and where the file
// cannot be shared (read-only, on a network file system, written by a newer moejit) the store
// works on an in-memory database and says so once.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
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
  double time_ms = -1;  // measured median; < 0 when untuned
  bool tuned = false;   // false for default configs compiled offline or with tuning off
  std::int64_t created_unix = 0;
  std::string moejit_version;
};

// The merge rule: a tuned entry beats an untuned one, and of two tuned entries the faster one
// wins; anything else keeps what is there.
bool is_better(const CacheEntry& candidate, const CacheEntry& current);

enum class LookupStatus { hit, miss, error };

struct LookupResult {
  LookupStatus status = LookupStatus::miss;
  std::optional<CacheEntry> entry;  // set on hit
  std::string error;                // set on error (e.g. corrupt row, checksum mismatch)
};

struct DamagedRow {
  std::string id;
  std::string reason;
};

struct ScanResult {
  std::vector<CacheEntry> entries;  // ordered by shape
  std::vector<DamagedRow> damaged;
};

struct MergeCounts {
  int added = 0, replaced = 0, kept = 0;  // kept: the store's entry was at least as good
};

enum class ClaimStatus {
  present,         // an entry good enough is already stored: use it
  acquired,        // this store now builds the entry; put() or release_claim() ends the claim
  held_elsewhere,  // another live process is building it: wait and try again
};

struct ClaimAttempt {
  ClaimStatus status = ClaimStatus::acquired;
  std::optional<CacheEntry> entry;  // set when present
  std::string holder;               // set when held elsewhere: "pid 123 on host"
};

// Current schema version of the database (PRAGMA user_version); schema.hpp has the history.
inline constexpr int kSchemaVersion = 2;

// $MOEJIT_CACHE, else $XDG_CACHE_HOME/moejit/cache.sqlite, else ~/.cache/moejit/cache.sqlite.
std::filesystem::path default_cache_path();

struct StoreOptions {
  // Receives one line per fallback or recovery; empty: "moejit: warning: <line>" on stderr.
  std::function<void(const std::string&)> warn;
  // A new file only this process writes (an export or a merge in the making): no WAL, so that the
  // finished file stands alone, and no fallback: failures throw CacheError.
  bool standalone = false;
};

class CacheStore {
 public:
  // Opens (creating directories, file and schema, migrating older schemas) the database at
  // `path`; ":memory:" is a private in-memory database. Falls back as described above instead of
  // throwing, unless options.standalone.
  explicit CacheStore(const std::filesystem::path& path, StoreOptions options = {});
  // A checked in-memory copy of a file from elsewhere (import, merge): it must be a moejit cache
  // of this or an earlier schema that passes SQLite's integrity check. The file is only read.
  // Throws CacheError naming the file and every problem found.
  static CacheStore open_untrusted(const std::filesystem::path& path);
  ~CacheStore();
  CacheStore(CacheStore&&) noexcept;
  CacheStore& operator=(CacheStore&&) noexcept;

  const std::filesystem::path& path() const;
  // Empty when the store works on path() itself, else why it works on an in-memory database.
  const std::string& fallback() const;
  std::string journal_mode() const;
  int schema_version() const;

  // Never throws for the cache's sake: a locked or damaged database is an error result.
  LookupResult lookup(const CacheKey& key) const;
  // Inserts or replaces the entry of entry.key in one transaction, and ends this store's claim on
  // it. A tuned entry is never replaced by an untuned one. A database locked for longer than the
  // busy timeout loses the entry with a warning instead of throwing.
  void put(const CacheEntry& entry);
  // Writes each entry that is_better() than the stored one (or fills a missing or damaged one),
  // all in one transaction.
  MergeCounts merge(std::span<const CacheEntry> entries);
  // Deletes the entries with these ids; returns how many there were.
  std::size_t erase(const std::vector<std::string>& ids);
  // All entries (CUBINs included), ordered by shape; throws CacheError on a damaged row.
  std::vector<CacheEntry> list() const;
  // All entries that decode, and every row that does not.
  ScanResult scan() const;
  // The entry whose id() starts with `id_prefix`; throws InvalidArgument when ambiguous.
  std::optional<CacheEntry> find(const std::string& id_prefix) const;
  // SQLite's integrity check: empty when the file is sound.
  std::vector<std::string> integrity_problems() const;
  // Drops expired claims and rewrites the file without free pages (VACUUM).
  void compact();
  std::int64_t size_bytes() const;

  // Claims `key` for building unless an entry good enough (tuned, or any when !need_tuned) is
  // stored or another live process holds the claim. A claim lapses after `lease`, or at once when
  // its process is found dead on this host.
  ClaimAttempt try_claim(const CacheKey& key, bool need_tuned, std::chrono::seconds lease);
  // Ends this store's claim on `key` (e.g. after a failed build); errors are ignored.
  void release_claim(const CacheKey& key) noexcept;

  struct Impl;

 private:
  explicit CacheStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moejit
