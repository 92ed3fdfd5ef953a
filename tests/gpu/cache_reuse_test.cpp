// The SQLite cache serves a second process: forward_probe runs twice on one fresh cache file; the
// first compiles and misses, the second compiles nothing and hits.
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>

#include <array>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/gpu/device_problem.hpp"
#include "tests/support/temp_dir.hpp"

namespace moejit::test {
namespace {

struct ProbeRun {
  int exit_status = -1;
  std::string output;
};

// Runs the probe on `cache_path`, capturing its stdout (its stderr goes to the test's).
ProbeRun run_probe(const std::filesystem::path& cache_path) {
  const std::string command =
      std::string("'") + MOEJIT_FORWARD_PROBE + "' '" + cache_path.string() + "'";
  ProbeRun run;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return run;
  std::array<char, 4096> buffer;
  while (fgets(buffer.data(), buffer.size(), pipe)) run.output += buffer.data();
  const int status = pclose(pipe);
  run.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

// The probe prints its stats as its last line.
nlohmann::json stats_of(const ProbeRun& run) {
  const std::string trimmed = run.output.substr(0, run.output.find_last_not_of('\n') + 1);
  return nlohmann::json::parse(trimmed.substr(trimmed.find_last_of('\n') + 1));
}

TEST(CacheReuse, SecondProcessHitsWithoutCompiling) {
  MOEJIT_SKIP_WITHOUT_GPU();
  const TempDir dir;
  const std::filesystem::path cache = dir.path() / "cache.sqlite";

  const ProbeRun first = run_probe(cache);
  ASSERT_EQ(first.exit_status, 0) << first.output;
  const nlohmann::json a = stats_of(first);
  EXPECT_GE(a.at("compiles").get<int>(), 1) << a;
  // Two kernels: the GEMM and pack_b (the probe's B is in PEFT storage).
  EXPECT_EQ(a.at("cache_misses").get<int>(), 2) << a;
  EXPECT_EQ(a.at("cache_hits").get<int>(), 0) << a;

  const ProbeRun second = run_probe(cache);
  ASSERT_EQ(second.exit_status, 0) << second.output;
  const nlohmann::json b = stats_of(second);
  EXPECT_EQ(b.at("compiles").get<int>(), 0) << b;
  EXPECT_EQ(b.at("cache_hits").get<int>(), 2) << b;
  EXPECT_EQ(b.at("cache_misses").get<int>(), 0) << b;
}

}  // namespace
}  // namespace moejit::test
