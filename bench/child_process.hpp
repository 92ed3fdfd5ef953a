#pragma once
// Running a program as a child process and reading what it prints, without a shell.
#include <string>
#include <vector>

namespace moejit::bench {

struct ChildOutput {
  int exit_code = -1;  // the exit status, or 128 + signal number when a signal ended it
  std::string stdout_text;
};

// Runs argv[0] with argv[1..] (posix_spawn, the current environment), capturing its stdout while
// its stderr goes to ours. Throws Error when the process cannot be started.
ChildOutput run_capturing_stdout(const std::vector<std::string>& argv);

}  // namespace moejit::bench
