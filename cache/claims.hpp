#pragma once
// Internal to CacheStore: rows of the `claims` table, which say that a process is building an
// entry so that other processes wait for it instead of building it too. A claim is live until it
// expires, is deleted by its owner, or its owner's process is found dead on the same host.
#include <cstdint>
#include <optional>
#include <string>

#include "cache/sqlite.hpp"

namespace moejit {

struct ClaimOwner {
  std::string host;  // hostname, boot and pid namespace: where `pid` means this process
  std::int64_t pid = 0;
  std::string token;  // distinguishes stores (and threads) of one process

  // This process, with a fresh random token.
  static ClaimOwner of_this_process();
  std::string text() const;
};

struct ClaimRow {
  std::string owner, host;
  std::int64_t pid = 0;
  std::int64_t expires_unix_ms = 0;
};

std::int64_t now_unix_ms();

std::optional<ClaimRow> read_claim(const sqlite::Database& db, const std::string& id);
// True when `row` still stops `me` from building: someone else's claim, unexpired, and not of a
// process that is gone from this host.
bool blocks(const ClaimRow& row, const ClaimOwner& me, std::int64_t now_ms);
// "pid 123 on node7" for messages.
std::string holder_of(const ClaimRow& row);
void write_claim(const sqlite::Database& db, const std::string& id, const ClaimOwner& me,
                 std::int64_t expires_unix_ms);
// Deletes the claim on `id` if `me` holds it.
void delete_claim(const sqlite::Database& db, const std::string& id, const ClaimOwner& me);

}  // namespace moejit
