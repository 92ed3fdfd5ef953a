// `moejit list`: one row per cached kernel.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "cli/cache_option.hpp"
#include "cli/commands.hpp"

namespace moejit::cli {
namespace {

constexpr std::size_t kColumns = 17;
using Row = std::array<std::string, kColumns>;

constexpr Row kHeader = {"id",   "op",     "E",      "k",       "K",    "N",
                         "r",    "tokens", "act",    "weights", "lora", "layout",
                         "arch", "device", "config", "time_ms", "tuned"};
// Numbers read best right-aligned.
constexpr std::array<bool, kColumns> kRightAligned = {false, false, true,  true,  true,  true,
                                                      true,  true,  false, false, false, false,
                                                      false, false, false, true,  false};

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
          std::string(to_string(s.weights)),
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

int run_list(const std::string& cache) {
  const auto path = resolve_cache_path(cache);
  const auto store = open_existing(path);
  if (!store) {
    fmt::print("no cache at {}\n", path.string());
    return 0;
  }
  const std::vector<CacheEntry> entries = store->list();
  fmt::print("cache: {} ({} entries)\n", path.string(), entries.size());
  if (entries.empty()) return 0;
  std::vector<Row> rows = {kHeader};
  for (const CacheEntry& entry : entries) rows.push_back(row_of(entry));
  print_table(rows);
  return 0;
}

}  // namespace

Command add_list(CLI::App& app) {
  CLI::App* command = app.add_subcommand("list", "List the cached kernels");
  auto cache = std::make_shared<std::string>();
  add_cache_option(*command, *cache);
  return {command, [cache] { return run_list(*cache); }};
}

}  // namespace moejit::cli
