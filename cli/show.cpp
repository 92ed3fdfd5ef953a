// `moejit show ID`: every field of one cache entry.
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "cli/cache_option.hpp"
#include "cli/commands.hpp"
#include "compiler/error.hpp"

namespace moejit::cli {
namespace {

std::string utc_time(std::int64_t unix_seconds) {
  return fmt::format("{:%Y-%m-%d %H:%M:%S} UTC",
                     fmt::gmtime(static_cast<std::time_t>(unix_seconds)));
}

// Every line of `text` indented by two spaces, without a trailing empty line.
std::string indented(std::string_view text) {
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  std::string out = "  ";
  for (char c : text) out += c == '\n' ? std::string("\n  ") : std::string(1, c);
  return out;
}

void print_entry(const CacheEntry& e) {
  const PtxasReport& r = e.report;
  fmt::print("id:          {}\n", e.key.id());
  fmt::print("key:\n{}\n", indented(e.key.text()));
  fmt::print("config:      {} {}\n", e.config.name(), nlohmann::json(e.config).dump());
  fmt::print("kernel:      {}\n", e.kernel_name);
  fmt::print(
      "ptxas:       {} registers, {} B spill stores, {} B spill loads, {} B static smem, "
      "{} B stack frame{}\n",
      r.registers, r.spill_stores, r.spill_loads, r.static_smem, r.stack_frame,
      r.found ? "" : " (no report found in the log)");
  fmt::print("cubin:       {} bytes, fnv1a64 {:016x}\n", e.cubin.size(),
             fnv1a64(e.cubin.data(), e.cubin.size()));
  fmt::print("time:        {}\n", e.time_ms < 0 ? "-" : fmt::format("{:.3f} ms", e.time_ms));
  fmt::print("tuned:       {}\n", e.tuned ? "yes" : "no");
  fmt::print("created:     {}\n", utc_time(e.created_unix));
  fmt::print("version:     moejit {}\n", e.moejit_version);
}

int run_show(const std::string& id, const std::string& cache) {
  const auto path = resolve_cache_path(cache);
  const auto store = open_existing(path);
  const auto entry = store ? store->find(id) : std::nullopt;
  if (!entry)
    throw InvalidArgument("ID", "'" + id + "'",
                          fmt::format("the id (or a prefix) of an entry of {}; `moejit list` "
                                      "shows them",
                                      path.string()));
  print_entry(*entry);
  return 0;
}

}  // namespace

Command add_show(CLI::App& app) {
  CLI::App* command = app.add_subcommand("show", "Show every field of one cached kernel");
  struct Flags {
    std::string id, cache;
  };
  auto flags = std::make_shared<Flags>();
  command->add_option("ID", flags->id, "entry id or a unique prefix of it (see `moejit list`)")
      ->required();
  add_cache_option(*command, flags->cache);
  return {command, [flags] { return run_show(flags->id, flags->cache); }};
}

}  // namespace moejit::cli
