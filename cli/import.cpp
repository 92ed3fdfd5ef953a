// `moejit import FILE`: merge a cache file from elsewhere into the cache, compiling every binary
// again here and comparing, unless --trust-binaries.
#include <fmt/format.h>

#include "cache/import.hpp"
#include "cli/cache_option.hpp"
#include "cli/commands.hpp"

namespace moejit::cli {
namespace {

struct ImportFlags {
  std::string file, cache;
  bool trust_binaries = false;
};

int run_import(const ImportFlags& flags) {
  CacheStore store(resolve_cache_path(flags.cache));
  if (!flags.trust_binaries)
    fmt::print("compiling the binaries of {} here to compare them (--trust-binaries skips this)\n",
               flags.file);
  const ImportReport report =
      import_cache(store, flags.file, {.trust_binaries = flags.trust_binaries});
  for (const auto& note : report.notes) fmt::print("note: {}\n", note);
  for (const auto& line : report.dropped) fmt::print("dropped: {}\n", line);
  fmt::print("read {} entries from {}", report.read, flags.file);
  if (!flags.trust_binaries)
    fmt::print(
        ": {} binaries identical to the local build, {} different (the local builds are "
        "stored)",
        report.identical_binaries, report.rebuilt_binaries);
  fmt::print(
      "\nimported into {}: {} added, {} replaced, {} kept (the cache's entry was as good), "
      "{} dropped\n",
      store.path().string(), report.stored.added, report.stored.replaced, report.stored.kept,
      report.dropped.size());
  return 0;
}

}  // namespace

Command add_import(CLI::App& app) {
  CLI::App* command =
      app.add_subcommand("import",
                         "Merge a cache file from elsewhere into the cache (a tuned entry beats an "
                         "untuned one, the faster tuned entry wins)");
  auto flags = std::make_shared<ImportFlags>();
  command->add_option("FILE", flags->file, "cache file to import (e.g. from `moejit export`)")
      ->required();
  command->add_flag("--trust-binaries", flags->trust_binaries,
                    "keep the file's CUBINs as they are instead of compiling them here; also "
                    "keeps entries of other moejit builds");
  add_cache_option(*command, flags->cache);
  return {command, [flags] { return run_import(*flags); }};
}

}  // namespace moejit::cli
