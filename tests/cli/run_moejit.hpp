#pragma once
// Running the `moejit` binary from tests, and a temporary directory per test.
#include <filesystem>
#include <string>

namespace moejit::testing {

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr, interleaved
};

// Runs `moejit <arguments>` through the shell; `arguments` must already be shell-safe.
RunResult run_moejit(const std::string& arguments);

// Starts `moejit <arguments>` with stdout and stderr going to `output`; returns the pid of moejit
// itself (the shell execs it), so that a test can signal it.
int spawn_moejit(const std::string& arguments, const std::filesystem::path& output);
// Waits for a spawned moejit; returns its exit code, or -signal when a signal ended it.
int wait_for(int pid);

// `path` in single quotes for the shell.
std::string quoted(const std::filesystem::path& path);

// A fresh directory under the system temp directory, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace moejit::testing
