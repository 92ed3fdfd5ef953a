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
