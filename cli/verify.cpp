// `moejit verify [FILE]`: check a cache file (default: the cache) without changing it; exit 1 when
// anything is wrong.
#include <fmt/format.h>

#include "cache/verify.hpp"
#include "cli/cache_option.hpp"
#include "cli/commands.hpp"

namespace moejit::cli {
namespace {

struct VerifyFlags {
  std::string file, cache;
};

int run_verify(const VerifyFlags& flags) {
  const auto path =
      flags.file.empty() ? resolve_cache_path(flags.cache) : std::filesystem::path(flags.file);
  const VerifyReport report = verify_cache_file(path);
  for (const auto& note : report.notes) fmt::print("note: {}\n", note);
  for (const auto& problem : report.problems) fmt::print("problem: {}\n", problem);
  fmt::print("{}: {} ({} of {} entries sound, schema version {})\n", path.string(),
             report.ok() ? "ok" : fmt::format("{} problems", report.problems.size()), report.sound,
             report.entries, report.schema_version);
  return report.ok() ? 0 : 1;
}

}  // namespace

Command add_verify(CLI::App& app) {
  CLI::App* command = app.add_subcommand(
      "verify", "Check a cache file: SQLite integrity, schema, every CUBIN's checksum and entry");
  auto flags = std::make_shared<VerifyFlags>();
  command->add_option("FILE", flags->file, "cache file to check (default: the cache)");
  add_cache_option(*command, flags->cache);
  return {command, [flags] { return run_verify(*flags); }};
}

}  // namespace moejit::cli
