// `moejit merge A B -o OUT`: both caches in a new file; for a key in both, the better entry.
#include <fmt/format.h>

#include "cache/transfer.hpp"
#include "cli/commands.hpp"

namespace moejit::cli {
namespace {

struct MergeFlags {
  std::string first, second, out;
  bool force = false;
};

int run_merge(const MergeFlags& flags) {
  const MergeReport report = merge_caches(flags.first, flags.second, flags.out, flags.force);
  for (const DamagedRow& row : report.damaged)
    fmt::print("skipped damaged entry {}: {}\n", row.id, row.reason);
  const MergeCounts& b = report.second_into_first;
  fmt::print("{}: {} entries; {}: {} entries ({} new, {} better than {}'s, {} not better)\n",
             flags.first, report.from_first, flags.second, report.from_second, b.added, b.replaced,
             flags.first, b.kept);
  fmt::print("wrote {} entries to {}\n", report.entries, flags.out);
  return 0;
}

}  // namespace

Command add_merge(CLI::App& app) {
  CLI::App* command = app.add_subcommand(
      "merge",
      "Merge two cache files into a new one: for the same key a tuned entry beats an "
      "untuned one and the faster tuned entry wins (A on a tie)");
  auto flags = std::make_shared<MergeFlags>();
  command->add_option("A", flags->first, "first cache file")->required();
  command->add_option("B", flags->second, "second cache file")->required();
  command->add_option("-o,--output", flags->out, "file to write")->required();
  command->add_flag("--force", flags->force, "replace the output file if it exists");
  return {command, [flags] { return run_merge(*flags); }};
}

}  // namespace moejit::cli
