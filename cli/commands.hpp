#pragma once
// The subcommands of `moejit`. Each add_* registers its options on a new subcommand of `app` and
// returns the action that runs it once parsing has succeeded. Actions return the exit code and
// throw moejit::Error for failures (printed once by main) or CLI::ParseError for usage errors.
#include <CLI/CLI.hpp>
#include <functional>

namespace moejit::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

Command add_doctor(CLI::App& app);
Command add_warm(CLI::App& app);
Command add_list(CLI::App& app);
Command add_show(CLI::App& app);
Command add_export(CLI::App& app);
Command add_import(CLI::App& app);
Command add_merge(CLI::App& app);
Command add_verify(CLI::App& app);
Command add_prune(CLI::App& app);

}  // namespace moejit::cli
