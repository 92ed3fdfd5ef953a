// `moejit export FILE [filters]`: the matching entries in a new self-contained SQLite file.
#include <fmt/format.h>

#include "cache/transfer.hpp"
#include "cli/cache_option.hpp"
#include "cli/commands.hpp"
#include "cli/filter_flags.hpp"
#include "compiler/error.hpp"

namespace moejit::cli {
namespace {

struct ExportFlags {
  std::string file, cache;
  FilterFlags filters;
  bool force = false;
};

int run_export(const ExportFlags& flags) {
  const auto path = resolve_cache_path(flags.cache);
  const auto store = open_existing(path);
  if (!store) throw InvalidArgument("--cache", "'" + path.string() + "'", "an existing cache");
  const ExportReport report = export_cache(*store, flags.file, flags.filters.filter(), flags.force);
  fmt::print("exported {} entries to {} ({:.1f} KiB)\n", report.exported, flags.file,
             static_cast<double>(report.bytes) / 1024);
  if (report.damaged_skipped > 0)
    fmt::print("skipped {} damaged entries (`moejit verify` for details)\n",
               report.damaged_skipped);
  return 0;
}

}  // namespace

Command add_export(CLI::App& app) {
  CLI::App* command = app.add_subcommand("export",
                                         "Write the cached kernels (or those matching the filters) "
                                         "into a self-contained SQLite file");
  auto flags = std::make_shared<ExportFlags>();
  command->add_option("FILE", flags->file, "file to write")->required();
  command->add_flag("--force", flags->force, "replace FILE if it exists");
  add_cache_option(*command, flags->cache);
  add_filter_flags(*command, flags->filters);
  return {command, [flags] { return run_export(*flags); }};
}

}  // namespace moejit::cli
