#pragma once
// Internal: the state behind CacheStore and the one way its operations reach SQLite: serialized
// (SQLite transactions belong to the connection), retried while busy, and, when the file turns
// out to be damaged, run once more on a replacement.
#include <mutex>
#include <utility>

#include "cache/claims.hpp"
#include "cache/sqlite.hpp"
#include "cache/store.hpp"
#include "cache/store_open.hpp"

namespace moejit {

struct CacheStore::Impl {
  Impl(std::filesystem::path path, StoreOptions options, OpenedDatabase opened);

  void warn(const std::string& line) const;
  // Moves the damaged file aside (unless another process already replaced it) and opens anew.
  void recover(const std::string& why) const;

  template <class Operation>
  auto run(Operation&& operation) const {
    const std::lock_guard lock(mutex);
    try {
      return sqlite::retry_while_busy([&] { return operation(opened.db); });
    } catch (const sqlite::Corrupt& corrupt) {
      if (options.standalone) throw;
      recover(corrupt.what());
      return sqlite::retry_while_busy([&] { return operation(opened.db); });
    }
  }

  std::filesystem::path path;
  StoreOptions options;
  // Replaced by recover(), which const lookups may need: the connection is not the content.
  mutable OpenedDatabase opened;
  ClaimOwner owner = ClaimOwner::of_this_process();
  mutable std::mutex mutex;
};

}  // namespace moejit
