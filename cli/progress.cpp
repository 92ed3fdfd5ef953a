#include "cli/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace moejit::cli {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Progress::Progress(int total) : total_(total), terminal_(::isatty(STDOUT_FILENO) == 1) {}

Progress::~Progress() {
  stop_ticking();
}

void Progress::start(const std::string& what) {
  stop_ticking();
  const std::lock_guard lock(mutex_);
  current_ = fmt::format("[{}/{}] {}", ++index_, total_, what);
  started_ = std::chrono::steady_clock::now();
  if (!terminal_) {
    // Without a terminal every line is final: scripts and logs read "started" then "done".
    fmt::print("{}\n", current_);
    std::fflush(stdout);
    return;
  }
  fmt::print("{} ...", current_);
  std::fflush(stdout);
  ticking_ = true;
  ticker_ = std::thread([this] { tick(); });
}

void Progress::finish(const std::string& outcome) {
  stop_ticking();
  const std::lock_guard lock(mutex_);
  const double seconds = seconds_since(started_);
  if (terminal_)
    fmt::print("\r\033[K{}: {} ({:.1f} s)\n", current_, outcome, seconds);
  else
    fmt::print("[{}/{}] {} ({:.1f} s)\n", index_, total_, outcome, seconds);
  std::fflush(stdout);
}

void Progress::tick() {
  std::unique_lock lock(mutex_);
  while (!wake_.wait_for(lock, std::chrono::milliseconds(500), [this] { return !ticking_; })) {
    fmt::print("\r\033[K{} ... {:.0f} s", current_, seconds_since(started_));
    std::fflush(stdout);
  }
}

void Progress::stop_ticking() {
  {
    const std::lock_guard lock(mutex_);
    ticking_ = false;
  }
  wake_.notify_all();
  if (ticker_.joinable()) ticker_.join();
}

std::string prepare_outcome(const RuntimeStats& before, const RuntimeStats& after) {
  const auto compiled = after.compiles - before.compiles;
  if (after.tunes > before.tunes) {
    std::string text = fmt::format(
        "tuned ({} candidates compiled, {} pruned, {} timed, {} left untimed by the time floor",
        compiled, after.tune_pruned - before.tune_pruned, after.tune_timed - before.tune_timed,
        after.tune_cannot_win - before.tune_cannot_win);
    if (const auto mismatched = after.tune_mismatched - before.tune_mismatched; mismatched > 0)
      text += fmt::format("; {} dropped: result differed from the reference config's", mismatched);
    return text + ")";
  }
  if (compiled > 0) return "compiled default config (tuning off)";
  if (after.cache_hits > before.cache_hits) return "already cached";
  return "already loaded";
}

}  // namespace moejit::cli
