// `moejit prune`: delete the entries matching the filters (by age, device, stale builds, ...).
#include <fmt/format.h>

#include "cli/cache_option.hpp"
#include "cli/commands.hpp"
#include "cli/filter_flags.hpp"

namespace moejit::cli {
namespace {

struct PruneFlags {
  std::string cache;
  FilterFlags filters;
  bool dry_run = false, compact = false;
};

int run_prune(const PruneFlags& flags) {
  const EntryFilter filter = flags.filters.filter();
  if (filter.selects_everything())
    throw CLI::RequiredError("a filter (e.g. --older-than DAYS, --device NAME or --stale)");
  const auto path = resolve_cache_path(flags.cache);
  auto store = open_existing(path);
  if (!store) {
    fmt::print("no cache at {}\n", path.string());
    return 0;
  }
  std::vector<std::string> ids;
  const std::int64_t now = unix_now();
  for (const CacheEntry& entry : store->scan().entries)
    if (filter.matches(entry, now)) {
      ids.push_back(entry.key.id());
      fmt::print("{} {} {} {} {}\n", flags.dry_run ? "would delete" : "delete",
                 entry.key.id().substr(0, 12), entry.key.spec.describe(), entry.key.device.name,
                 entry.key.device.arch);
    }
  if (flags.dry_run) {
    fmt::print("{} entries match (dry run: nothing deleted)\n", ids.size());
    return 0;
  }
  fmt::print("deleted {} entries from {}\n", store->erase(ids), path.string());
  if (flags.compact) store->compact();
  return 0;
}

}  // namespace

Command add_prune(CLI::App& app) {
  CLI::App* command =
      app.add_subcommand("prune", "Delete the cached kernels that match the filters");
  auto flags = std::make_shared<PruneFlags>();
  add_cache_option(*command, flags->cache);
  add_filter_flags(*command, flags->filters);
  command->add_flag("--dry-run", flags->dry_run, "list what would be deleted, delete nothing");
  command->add_flag("--compact", flags->compact, "shrink the file afterwards (VACUUM)");
  return {command, [flags] { return run_prune(*flags); }};
}

}  // namespace moejit::cli
