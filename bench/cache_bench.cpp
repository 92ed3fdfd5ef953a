// moejit_cache_bench: the cache lifecycle without a GPU. Times export, verify and import (trusted,
// and checked with a stand-in compiler) of a cache of N entries, a warm start (open the imported
// cache, look up a model's keys), real NVRTC rebuilds, and N processes warming the same keys at
// once through build_once (processes, keys, compiles, waits). Writes a Markdown report.
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "cache/build_once.hpp"
#include "cache/import.hpp"
#include "cache/rebuild.hpp"
#include "cache/transfer.hpp"
#include "cache/verify.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

double seconds_of(const std::function<void()>& work) {
  const auto start = std::chrono::steady_clock::now();
  work();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

ProjectionSpec spec_number(int index) {
  ProjectionSpec s;
  s.experts = 8 << (index % 5);
  s.top_k = 2;
  s.in_features = 256 * (1 + index % 16);
  s.out_features = 256 * (1 + index / 16 % 16);
  s.rank = 16;
  return s;
}

// An entry of this build whose CUBIN looks real to verify: ELF magic, the kernel name, and
// `cubin_bytes` bytes in all (random, so SQLite cannot compress pages).
CacheEntry synthetic_entry(int index, int cubin_bytes, std::mt19937& random) {
  CacheEntry e;
  e.key = current_key(DeviceIdentity::offline("sm_90a"), spec_number(index), 1 << (index % 14));
  e.kernel_name = fmt::format("_ZN6moejit6kernelILi{}EEvv", index);
  e.cubin.resize(cubin_bytes);
  for (char& byte : e.cubin) byte = static_cast<char>(random());
  const std::string head =
      "\x7f"
      "ELF" +
      e.kernel_name;
  std::copy(head.begin(), head.end(), e.cubin.begin());
  e.tuned = index % 2 == 0;
  e.time_ms = e.tuned ? 0.1 + index % 7 : -1;
  return e;
}

struct Row {
  std::string what, value;
};

std::vector<Row> time_transfer(const std::filesystem::path& dir, int entries, int cubin_bytes) {
  std::mt19937 random(1);
  std::vector<Row> rows;
  {
    CacheStore source(dir / "source.sqlite");
    std::vector<CacheEntry> all;
    for (int i = 0; i < entries; ++i) all.push_back(synthetic_entry(i, cubin_bytes, random));
    rows.push_back({"fill the source cache (one transaction)",
                    fmt::format("{:.2f} s", seconds_of([&] { source.merge(all); }))});
    rows.push_back({"export", fmt::format("{:.2f} s", seconds_of([&] {
                                            export_cache(source, dir / "shipped.sqlite", {}, true);
                                          }))});
  }
  rows.push_back(
      {"file size",
       fmt::format("{:.1f} MiB", std::filesystem::file_size(dir / "shipped.sqlite") / 1048576.0)});
  VerifyReport report;
  const double verify_seconds =
      seconds_of([&] { report = verify_cache_file(dir / "shipped.sqlite"); });
  rows.push_back({"verify", fmt::format("{:.2f} s ({} of {} sound)", verify_seconds, report.sound,
                                        report.entries)});
  const auto import_into = [&](const char* name, ImportOptions options) {
    CacheStore target(dir / name);
    return seconds_of([&] { import_cache(target, dir / "shipped.sqlite", options); });
  };
  rows.push_back(
      {"import --trust-binaries",
       fmt::format("{:.2f} s", import_into("trusted.sqlite", {.trust_binaries = true}))});
  const auto itself = [](const CacheEntry& e) {
    return CompiledKernel{e.cubin, e.kernel_name, e.report, ""};
  };
  rows.push_back({"import checked, compiler stand-in (everything but NVRTC)",
                  fmt::format("{:.2f} s", import_into("checked.sqlite", {.rebuild = itself}))});
  return rows;
}

// Opening the imported cache in a fresh store and finding one model's two keys, as a training
// process does at start.
Row time_warm_start(const std::filesystem::path& dir) {
  constexpr int kRepeats = 20;
  double total = 0;
  for (int r = 0; r < kRepeats; ++r)
    total += seconds_of([&] {
      const CacheStore store(dir / "trusted.sqlite");
      for (int index : {3, 4})
        if (store
                .lookup(current_key(DeviceIdentity::offline("sm_90a"), spec_number(index),
                                    1 << (index % 14)))
                .status != LookupStatus::hit)
          throw Error("warm start missed an imported entry");
    });
  return {"warm start: open the imported cache + look up 2 keys (mean of 20)",
          fmt::format("{:.2f} ms", total / kRepeats * 1000)};
}

std::vector<Row> time_nvrtc_rebuild(int kernels) {
  double compile = 0, compare = 0;
  for (int i = 0; i < kernels; ++i) {
    CacheEntry e;
    e.key = current_key(DeviceIdentity::offline("sm_90a"), spec_number(i), 1024);
    CompiledKernel kernel;
    compile += seconds_of([&] { kernel = rebuild_kernel(e); });
    auto other = kernel.cubin;
    other.back() ^= 1;  // unequal bytes: the comparison masks tags and compares in full
    compare += seconds_of([&] { (void)same_build(kernel.cubin, other); });
  }
  return {{fmt::format("NVRTC rebuild of one real kernel (mean of {}, one thread)", kernels),
           fmt::format("{:.2f} s", compile / kernels)},
          {"same_build() of two unequal CUBINs of that kernel (tag masking)",
           fmt::format("{:.1f} ms", compare / kernels * 1000)}};
}

// Child process of the concurrency run: warms every key with a real NVRTC compile; prints
// "<built> <waited> <cached>" on `out`.
[[noreturn]] void warm_child(const std::filesystem::path& cache, int keys, int child, int out) {
  int counts[4] = {};
  try {
    CacheStore store(cache);
    for (int k = 0; k < keys; ++k) {
      const int index = (k + child) % keys;  // different orders: real contention
      CacheEntry e;
      e.key = current_key(DeviceIdentity::offline("sm_90a"), spec_number(index), 1024);
      const auto result = build_once(store, e.key, {}, [&] {
        const CompiledKernel kernel = rebuild_kernel(e);
        e.cubin = kernel.cubin;
        e.kernel_name = kernel.lowered_name;
        e.report = kernel.report;
        return e;
      });
      ++counts[static_cast<int>(result.source)];
    }
  } catch (const std::exception& error) {
    fmt::print(stderr, "child {}: {}\n", child, error.what());
    std::_Exit(1);
  }
  const auto line = fmt::format("{} {} {}\n", counts[1] + counts[3], counts[2], counts[0]);
  (void)!::write(out, line.data(), line.size());
  std::_Exit(0);
}

std::vector<Row> time_processes(const std::filesystem::path& dir, int processes, int keys) {
  int pipe_ends[2];
  if (::pipe(pipe_ends) != 0) throw Error("pipe failed");
  std::vector<pid_t> children;
  int failed = 0, built = 0, waited = 0, cached = 0;
  const double wall = seconds_of([&] {
    for (int child = 0; child < processes; ++child)
      if (const pid_t pid = ::fork(); pid == 0)
        warm_child(dir / "shared.sqlite", keys, child, pipe_ends[1]);
      else
        children.push_back(pid);
    for (const pid_t pid : children) {
      int status = 0;
      ::waitpid(pid, &status, 0);
      failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
  });
  ::close(pipe_ends[1]);
  std::string text(4096, '\0');
  text.resize(std::max<ssize_t>(0, ::read(pipe_ends[0], text.data(), text.size())));
  std::istringstream lines(text);
  for (int b, w, c; lines >> b >> w >> c;) built += b, waited += w, cached += c;
  const CacheStore store(dir / "shared.sqlite");
  return {{"processes x keys", fmt::format("{} x {}", processes, keys)},
          {"NVRTC compiles (all processes)", std::to_string(built)},
          {"waited for another process / found cached", fmt::format("{} / {}", waited, cached)},
          {"failed processes", std::to_string(failed)},
          {"integrity check", store.integrity_problems().empty() ? "ok" : "FAILED"},
          {"wall time", fmt::format("{:.1f} s", wall)}};
}

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

std::string machine() {
  utsname name{};
  ::uname(&name);
  return fmt::format("{}, {} hardware threads, {} {} ({})", cpu_model(),
                     std::thread::hardware_concurrency(), name.sysname, name.release, name.machine);
}

void print_table(std::ostream& out, const std::string& title, const std::vector<Row>& rows) {
  out << "\n## " << title << "\n\n| measurement | value |\n|---|---|\n";
  for (const Row& row : rows) out << "| " << row.what << " | " << row.value << " |\n";
}

}  // namespace
}  // namespace moejit

int main(int argc, char** argv) {
  CLI::App app{"moejit_cache_bench: cache export/import/verify and concurrency figures, no GPU"};
  int entries = 1000, cubin_kib = 64, processes = 8, keys = 6, rebuilds = 3;
  std::string out, dir = std::filesystem::temp_directory_path() / "moejit-cache-bench";
  app.add_option("--entries", entries, "entries in the shipped cache")->capture_default_str();
  app.add_option("--cubin-kib", cubin_kib, "size of each stand-in CUBIN")->capture_default_str();
  app.add_option("--processes", processes, "concurrent warming processes")->capture_default_str();
  app.add_option("--keys", keys, "keys they all warm (real NVRTC compiles)")->capture_default_str();
  app.add_option("--rebuilds", rebuilds, "real kernels timed for the rebuild")
      ->capture_default_str();
  app.add_option("--out", out, "Markdown report to write (default: stdout)");
  app.add_option("--dir", dir, "scratch directory (emptied)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  using namespace moejit;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ostringstream report;
  report << fmt::format(
      "# Cache lifecycle without a GPU ({:%Y-%m-%d})\n\nMachine: {}. moejit_cache_bench "
      "--entries {} --cubin-kib {} --processes {} --keys {}.\n",
      fmt::localtime(std::time(nullptr)), machine(), entries, cubin_kib, processes, keys);
  print_table(
      report,
      fmt::format("Export, verify, import of {} entries ({} KiB CUBINs)", entries, cubin_kib),
      time_transfer(dir, entries, cubin_kib * 1024));
  print_table(report, "Warm start and rebuild", [&] {
    auto rows = time_nvrtc_rebuild(rebuilds);
    rows.insert(rows.begin(), time_warm_start(dir));
    return rows;
  }());
  print_table(report, "Processes warming one cache at once (build_once, real NVRTC compiles)",
              time_processes(dir, processes, keys));
  std::filesystem::remove_all(dir);
  if (out.empty())
    std::cout << report.str();
  else
    std::ofstream(out) << report.str();
  return 0;
}
