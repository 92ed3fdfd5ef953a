// CacheStore's claims: who builds an entry while other processes wait for it.
#include "cache/entry_row.hpp"
#include "cache/store_impl.hpp"

namespace moejit {
namespace {

// What the database says now: the entry if it is good enough, else whether a claim blocks `me`.
ClaimAttempt inspect(const sqlite::Database& db, const CacheKey& key, bool need_tuned,
                     const ClaimOwner& me) {
  LookupResult found = read_entry(db, key);
  if (found.status == LookupStatus::hit && (found.entry->tuned || !need_tuned))
    return {ClaimStatus::present, std::move(found.entry), {}};
  const auto claim = read_claim(db, key.id());
  if (claim && blocks(*claim, me, now_unix_ms()))
    return {ClaimStatus::held_elsewhere, std::nullopt, holder_of(*claim)};
  return {ClaimStatus::acquired, std::nullopt, {}};
}

}  // namespace

ClaimAttempt CacheStore::try_claim(const CacheKey& key, bool need_tuned,
                                   std::chrono::seconds lease) {
  const ClaimOwner& me = impl_->owner;
  return impl_->run([&](const sqlite::Database& db) {
    // Waiters poll: a plain read answers them without queueing for the write lock.
    if (ClaimAttempt seen = inspect(db, key, need_tuned, me); seen.status != ClaimStatus::acquired)
      return seen;
    sqlite::Transaction transaction(db);
    ClaimAttempt attempt = inspect(db, key, need_tuned, me);
    if (attempt.status == ClaimStatus::acquired)
      write_claim(db, key.id(), me, now_unix_ms() + std::chrono::milliseconds(lease).count());
    transaction.commit();
    return attempt;
  });
}

void CacheStore::release_claim(const CacheKey& key) noexcept {
  try {
    impl_->run([&](const sqlite::Database& db) {
      sqlite::Transaction transaction(db);
      delete_claim(db, key.id(), impl_->owner);
      transaction.commit();
    });
  } catch (const std::exception&) {
    // The claim lapses by itself: its lease expires, or its process is seen to be gone.
  }
}

}  // namespace moejit
