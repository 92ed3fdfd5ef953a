#include "run_moejit.hpp"

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <stdexcept>
#include <system_error>

namespace moejit::testing {

RunResult run_moejit(const std::string& arguments) {
  const std::string command = std::string("'") + MOEJIT_BINARY + "' " + arguments + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::system_error(errno, std::generic_category(), "popen: " + command);
  RunResult result;
  std::array<char, 4096> buffer;
  for (std::size_t n; (n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0;)
    result.output.append(buffer.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

int spawn_moejit(const std::string& arguments, const std::filesystem::path& output) {
  const std::string command =
      std::string("exec '") + MOEJIT_BINARY + "' " + arguments + " > " + quoted(output) + " 2>&1";
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = 0;
  const int error =
      posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ);
  if (error != 0)
    throw std::system_error(error, std::generic_category(), "posix_spawn: " + command);
  return pid;
}

int wait_for(int pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid)
    throw std::system_error(errno, std::generic_category(), "waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

std::string quoted(const std::filesystem::path& path) {
  return "'" + path.string() + "'";
}

TempDir::TempDir() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "moejit_cli_test.XXXXXX").string();
  if (!mkdtemp(pattern.data()))
    throw std::system_error(errno, std::generic_category(), "mkdtemp: " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;  // a destructor must not throw; a leftover temp dir is harmless
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace moejit::testing
