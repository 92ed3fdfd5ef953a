// `moejit list`: one row per cached kernel, or (--json) one object per kernel for scripts.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "cli/cache_option.hpp"
#include "cli/commands.hpp"
#include "cli/entry_json.hpp"
#include "cli/filter_flags.hpp"

namespace moejit::cli {
namespace {

constexpr std::size_t kColumns = 17;
using Row = std::array<std::string, kColumns>;

const Row kHeader = {"id",   "op",     "E",      "k",       "K",    "N",
                     "r",    "tokens", "act",    "weights", "lora", "layout",
                     "arch", "device", "config", "time_ms", "tuned"};
// Numbers read best right-aligned.
constexpr std::array<bool, kColumns> kRightAligned = {false, false, true,  true,  true,  true,
                                                      true,  true,  false, false, false, false,
                                                      false, false, false, true,  false};

// nf4's blocksize and double quantization are part of the key: "nf4/64", "nf4-dq/128".
std::string weights_of(const ProjectionSpec& s) {
  if (s.weights != WeightFormat::nf4) return std::string(to_string(s.weights));
  return fmt::format("nf4{}/{}", s.double_quant ? "-dq" : "", s.quant_blocksize);
}

Row row_of(const CacheEntry& e) {
  const ProjectionSpec& s = e.key.spec;
  return {e.key.id().substr(0, 12),
          std::string(to_string(s.op)),
          std::to_string(s.experts),
          std::to_string(s.top_k),
          std::to_string(s.in_features),
          std::to_string(s.out_features),
          std::to_string(s.rank),
          std::to_string(e.key.token_bucket),
          std::string(to_string(s.act)),
          weights_of(s),
          std::string(to_string(s.lora)),
          std::string(to_string(s.layout)),
          e.key.device.arch,
          e.key.device.name,
          e.config.name(),
          e.time_ms < 0 ? "-" : fmt::format("{:.3f}", e.time_ms),
          e.tuned ? "yes" : "no"};
}

void print_table(const std::vector<Row>& rows) {
  std::array<std::size_t, kColumns> width{};
  for (const Row& row : rows)
    for (std::size_t c = 0; c < kColumns; ++c) width[c] = std::max(width[c], row[c].size());
  for (const Row& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < kColumns; ++c) {
      if (c > 0) line += "  ";
      line += kRightAligned[c] ? fmt::format("{:>{}}", row[c], width[c])
                               : fmt::format("{:<{}}", row[c], width[c]);
    }
    line.erase(line.find_last_not_of(' ') + 1);
    fmt::print("{}\n", line);
  }
}

struct ListFlags {
  std::string cache;
  FilterFlags filters;
  bool json = false;
};

std::vector<CacheEntry> selected(const ScanResult& scanned, const EntryFilter& filter) {
  std::vector<CacheEntry> entries;
  const std::int64_t now = unix_now();
  for (const CacheEntry& entry : scanned.entries)
    if (filter.matches(entry, now)) entries.push_back(entry);
  return entries;
}

void print_json(const std::filesystem::path& path, const std::vector<CacheEntry>& entries,
                const std::vector<DamagedRow>& damaged) {
  nlohmann::json out = {{"cache", path.string()},
                        {"entries", nlohmann::json::array()},
                        {"damaged", nlohmann::json::array()}};
  for (const CacheEntry& entry : entries) out["entries"].push_back(entry_json(entry));
  for (const DamagedRow& row : damaged)
    out["damaged"].push_back({{"id", row.id}, {"reason", row.reason}});
  fmt::print("{}\n", out.dump(2));
}

int run_list(const ListFlags& flags) {
  const auto path = resolve_cache_path(flags.cache);
  const auto store = open_existing(path);
  const ScanResult scanned = store ? store->scan() : ScanResult{};
  const std::vector<CacheEntry> entries = selected(scanned, flags.filters.filter());
  if (flags.json) {
    print_json(path, entries, scanned.damaged);
    return 0;
  }
  if (!store) {
    fmt::print("no cache at {}\n", path.string());
    return 0;
  }
  fmt::print("cache: {} ({})\n", path.string(),
             flags.filters.filter().selects_everything()
                 ? fmt::format("{} entries", entries.size())
                 : fmt::format("{} of {} entries match", entries.size(), scanned.entries.size()));
  for (const DamagedRow& row : scanned.damaged)
    fmt::print(stderr, "moejit: damaged entry {} (`moejit verify` for details)\n", row.id);
  if (entries.empty()) return 0;
  std::vector<Row> rows = {kHeader};
  for (const CacheEntry& entry : entries) rows.push_back(row_of(entry));
  print_table(rows);
  return 0;
}

}  // namespace

Command add_list(CLI::App& app) {
  CLI::App* command = app.add_subcommand("list", "List the cached kernels");
  auto flags = std::make_shared<ListFlags>();
  add_cache_option(*command, flags->cache);
  add_filter_flags(*command, flags->filters);
  command->add_flag("--json", flags->json, "print JSON for scripts instead of a table");
  return {command, [flags] { return run_list(*flags); }};
}

}  // namespace moejit::cli
