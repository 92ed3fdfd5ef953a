// CacheStore's writes: put, merge, erase, compact.
#include <fmt/format.h>

#include <chrono>

#include "cache/entry_row.hpp"
#include "cache/store_impl.hpp"

namespace moejit {
namespace {

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

CacheEntry with_defaults(const CacheEntry& entry) {
  CacheEntry stored = entry;
  if (stored.created_unix == 0) stored.created_unix = now_unix();
  if (stored.moejit_version.empty()) stored.moejit_version = MOEJIT_VERSION;
  return stored;
}

}  // namespace

void CacheStore::put(const CacheEntry& entry) {
  const CacheEntry stored = with_defaults(entry);
  try {
    impl_->run([&](const sqlite::Database& db) {
      sqlite::Transaction transaction(db);
      // Tuning is expensive: a sound tuned entry survives offline warm-ups of the same key, while
      // a damaged one is replaced by anything.
      const LookupResult current = read_entry(db, stored.key);
      const bool keep_current =
          current.status == LookupStatus::hit && current.entry->tuned && !stored.tuned;
      if (!keep_current) write_entry(db, stored);
      delete_claim(db, stored.key.id(), impl_->owner);
      transaction.commit();
    });
  } catch (const CacheError& error) {
    if (impl_->options.standalone) throw;
    // The kernel in hand still serves this process; only the next one rebuilds it.
    impl_->warn(fmt::format("cache entry {} not saved: {}", stored.key.id(), error.what()));
  }
}

MergeCounts CacheStore::merge(std::span<const CacheEntry> entries) {
  return impl_->run([&](const sqlite::Database& db) {
    MergeCounts counts;
    sqlite::Transaction transaction(db);
    for (const CacheEntry& entry : entries) {
      const LookupResult current = read_entry(db, entry.key);
      if (current.status == LookupStatus::hit && !is_better(entry, *current.entry)) {
        ++counts.kept;
        continue;
      }
      write_entry(db, with_defaults(entry));
      ++(current.status == LookupStatus::miss ? counts.added : counts.replaced);
    }
    transaction.commit();
    return counts;
  });
}

std::size_t CacheStore::erase(const std::vector<std::string>& ids) {
  return impl_->run([&](const sqlite::Database& db) {
    std::size_t erased = 0;
    sqlite::Transaction transaction(db);
    for (const std::string& id : ids) {
      sqlite::Statement statement(db, "DELETE FROM entries WHERE id = :id");
      statement.bind(":id", id);
      statement.step();
      erased += static_cast<std::size_t>(db.changes());
    }
    transaction.commit();
    return erased;
  });
}

void CacheStore::compact() {
  impl_->run([](const sqlite::Database& db) {
    // Claims of builders that died with no one retrying their key are the only rows that linger.
    sqlite::Statement expired(db, "DELETE FROM claims WHERE expires_unix_ms < :now");
    expired.bind(":now", now_unix_ms());
    expired.step();
    db.exec("VACUUM");
  });
}

}  // namespace moejit
