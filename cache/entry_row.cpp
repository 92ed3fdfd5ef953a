#include "cache/entry_row.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <optional>

#include "cache/json_fields.hpp"

namespace moejit {
namespace {

constexpr const char* kSelectColumns =
    "SELECT id, key_text, key_json, config_json, kernel_name, cubin, cubin_checksum, ptxas_json, "
    "time_ms, tuned, created_unix, moejit_version FROM entries ";

constexpr const char* kInsert = R"sql(
INSERT OR REPLACE INTO entries (id, key_text, key_json, device_name, arch, op, experts, top_k,
  in_features, out_features, rank, token_bucket, act, weights, config_json, kernel_name, cubin,
  cubin_checksum, ptxas_json, time_ms, tuned, created_unix, moejit_version)
VALUES (:id, :key_text, :key_json, :device_name, :arch, :op, :experts, :top_k, :in_features,
  :out_features, :rank, :token_bucket, :act, :weights, :config_json, :kernel_name, :cubin,
  :cubin_checksum, :ptxas_json, :time_ms, :tuned, :created_unix, :moejit_version)
)sql";

std::string checksum(const std::vector<char>& bytes) {
  return fmt::format("{:016x}", fnv1a64(bytes.data(), bytes.size()));
}

nlohmann::json report_json(const PtxasReport& r) {
  return {{"registers", r.registers},     {"spill_stores", r.spill_stores},
          {"spill_loads", r.spill_loads}, {"static_smem", r.static_smem},
          {"stack_frame", r.stack_frame}, {"found", r.found}};
}

PtxasReport parse_report(const nlohmann::json& j) {
  const JsonFields f(j, "ptxas_json");
  auto integer = [&](const char* name) { return static_cast<int>(f.integer(name)); };
  return PtxasReport{.registers = integer("registers"),
                     .spill_stores = integer("spill_stores"),
                     .spill_loads = integer("spill_loads"),
                     .static_smem = integer("static_smem"),
                     .stack_frame = integer("stack_frame"),
                     .found = f.boolean("found")};
}

// Decodes the current row and checks it against itself; throws (moejit or JSON errors) when the
// row is damaged.
CacheEntry decode(const sqlite::Statement& row) {
  CacheEntry entry;
  entry.key = nlohmann::json::parse(row.text("key_json")).get<CacheKey>();
  if (entry.key.text() != row.text("key_text"))
    throw CacheError("key_json and key_text describe different keys");
  if (entry.key.id() != row.text("id")) throw CacheError("the id is not the hash of key_text");
  entry.config = nlohmann::json::parse(row.text("config_json")).get<TileConfig>();
  entry.report = parse_report(nlohmann::json::parse(row.text("ptxas_json")));
  entry.cubin = row.blob("cubin");
  if (const auto actual = checksum(entry.cubin); actual != row.text("cubin_checksum"))
    throw CacheError(fmt::format("CUBIN checksum {} does not match the stored {}", actual,
                                 row.text("cubin_checksum")));
  entry.kernel_name = row.text("kernel_name");
  entry.time_ms = row.real("time_ms");
  entry.tuned = row.integer("tuned") != 0;
  entry.created_unix = row.integer("created_unix");
  entry.moejit_version = row.text("moejit_version");
  return entry;
}

std::string damaged(const sqlite::Database& db, const std::string& id, const char* why) {
  return fmt::format("cache entry {} in '{}' is damaged: {}", id, db.path().string(), why);
}

// The decoded row, or (in `why`) the reason it cannot be used.
std::optional<CacheEntry> decode_or_explain(const sqlite::Database& db,
                                            const sqlite::Statement& row, std::string& why) {
  try {
    return decode(row);
  } catch (const std::exception& error) {
    why = damaged(db, row.text("id"), error.what());
    return std::nullopt;
  }
}

}  // namespace

LookupResult read_entry(const sqlite::Database& db, const CacheKey& key) {
  sqlite::Statement row(db, std::string(kSelectColumns) + "WHERE id = :id");
  const std::string id = key.id();
  row.bind(":id", id);
  if (!row.step()) return LookupResult{.status = LookupStatus::miss};
  if (row.text("key_text") != key.text())
    return LookupResult{.status = LookupStatus::error,
                        .error = damaged(db, id, "it holds another key with the same id hash")};
  LookupResult result;
  result.entry = decode_or_explain(db, row, result.error);
  result.status = result.entry ? LookupStatus::hit : LookupStatus::error;
  return result;
}

CacheEntry read_entry_by_id(const sqlite::Database& db, const std::string& id) {
  sqlite::Statement row(db, std::string(kSelectColumns) + "WHERE id = :id");
  row.bind(":id", id);
  if (!row.step())
    throw CacheError(fmt::format("cache entry {} vanished from '{}'", id, db.path().string()));
  std::string why;
  auto entry = decode_or_explain(db, row, why);
  if (!entry) throw CacheError(why);
  return std::move(*entry);
}

ScanResult scan_entries(const sqlite::Database& db) {
  sqlite::Statement row(db,
                        std::string(kSelectColumns) +
                            "ORDER BY op, experts, in_features, out_features, token_bucket, id");
  ScanResult result;
  while (row.step()) {
    std::string why;
    if (auto entry = decode_or_explain(db, row, why))
      result.entries.push_back(std::move(*entry));
    else
      result.damaged.push_back({row.text("id"), why});
  }
  return result;
}

std::vector<CacheEntry> read_all_entries(const sqlite::Database& db) {
  ScanResult scanned = scan_entries(db);
  if (!scanned.damaged.empty()) throw CacheError(scanned.damaged.front().reason);
  return std::move(scanned.entries);
}

std::vector<std::string> ids_with_prefix(const sqlite::Database& db, const std::string& prefix) {
  sqlite::Statement row(
      db, "SELECT id FROM entries WHERE substr(id, 1, length(:prefix)) = :prefix ORDER BY id");
  row.bind(":prefix", prefix);
  std::vector<std::string> ids;
  while (row.step()) ids.push_back(row.text("id"));
  return ids;
}

void write_entry(const sqlite::Database& db, const CacheEntry& entry) {
  const CacheKey& key = entry.key;
  sqlite::Statement insert(db, kInsert);
  insert.bind(":id", key.id());
  insert.bind(":key_text", key.text());
  insert.bind(":key_json", nlohmann::json(key).dump());
  insert.bind(":device_name", key.device.name);
  insert.bind(":arch", key.device.arch);
  insert.bind(":op", to_string(key.spec.op));
  insert.bind(":experts", std::int64_t{key.spec.experts});
  insert.bind(":top_k", std::int64_t{key.spec.top_k});
  insert.bind(":in_features", std::int64_t{key.spec.in_features});
  insert.bind(":out_features", std::int64_t{key.spec.out_features});
  insert.bind(":rank", std::int64_t{key.spec.rank});
  insert.bind(":token_bucket", key.token_bucket);
  insert.bind(":act", to_string(key.spec.act));
  insert.bind(":weights", to_string(key.spec.weights));
  insert.bind(":config_json", nlohmann::json(entry.config).dump());
  insert.bind(":kernel_name", entry.kernel_name);
  insert.bind_blob(":cubin", entry.cubin);
  insert.bind(":cubin_checksum", checksum(entry.cubin));
  insert.bind(":ptxas_json", report_json(entry.report).dump());
  insert.bind(":time_ms", entry.time_ms);
  insert.bind(":tuned", std::int64_t{entry.tuned});
  insert.bind(":created_unix", entry.created_unix);
  insert.bind(":moejit_version", entry.moejit_version);
  insert.step();
}

}  // namespace moejit
