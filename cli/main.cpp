// moejit: inspect the machine, fill and read the kernel cache. Errors are caught here, once.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <vector>

#include "cli/commands.hpp"
#include "compiler/error.hpp"

namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

int run(int argc, char** argv) {
  CLI::App app{"moejit: JIT-compiled, autotuned MoE-LoRA kernels and their cache"};
  app.set_version_flag("--version", MOEJIT_VERSION);
  app.require_subcommand(1);
  // Usage errors read like every other moejit error.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return fmt::format("moejit: error: {}\nRun with --help for more information.\n", e.what());
  });
  namespace cli = moejit::cli;
  const std::vector<cli::Command> commands = {
      cli::add_doctor(app), cli::add_warm(app),   cli::add_list(app),
      cli::add_show(app),   cli::add_export(app), cli::add_import(app),
      cli::add_merge(app),  cli::add_verify(app), cli::add_prune(app)};
  try {
    app.parse(argc, argv);
    for (const auto& command : commands)
      if (command.app->parsed()) return command.run();
    return kExitUsage;  // unreachable: require_subcommand(1) guarantees one was parsed
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0.
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const moejit::Error& e) {
    fmt::print(stderr, "moejit: error: {}\n", e.what());
    return kExitError;
  } catch (const std::exception& e) {
    // Not a moejit error (e.g. out of memory): still one line and a failing exit code.
    fmt::print(stderr, "moejit: internal error: {}\n", e.what());
    return kExitError;
  }
}
