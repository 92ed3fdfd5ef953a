#pragma once
// Encoding of one CacheEntry as a row of the `entries` table, and the queries CacheStore runs.
// Callers hold the connection (and, for writes, a transaction); Busy propagates for retry.
#include <string>
#include <vector>

#include "cache/sqlite.hpp"
#include "cache/store.hpp"

namespace moejit {

// hit, miss, or error when the row of key.id() is damaged (checksum, JSON) or holds another key.
LookupResult read_entry(const sqlite::Database& db, const CacheKey& key);
// Throws CacheError naming the entry when a row is damaged.
CacheEntry read_entry_by_id(const sqlite::Database& db, const std::string& id);
// Ordered by op, experts, in_features, out_features, token_bucket; throws on a damaged row.
std::vector<CacheEntry> read_all_entries(const sqlite::Database& db);
// Every row that decodes, and the id and reason of every row that does not.
ScanResult scan_entries(const sqlite::Database& db);
std::vector<std::string> ids_with_prefix(const sqlite::Database& db, const std::string& prefix);
// Inserts or replaces the row of entry.key.id() exactly as given.
void write_entry(const sqlite::Database& db, const CacheEntry& entry);

}  // namespace moejit
