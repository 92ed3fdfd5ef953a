#pragma once
// The progress display of a long warm: a "[i/n] what" line per shape as it starts, the outcome
// when it ends, and, on a terminal, the seconds spent so far ticking at the end of the line.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "runtime/runtime.hpp"

namespace moejit::cli {

class Progress {
 public:
  explicit Progress(int total);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Begins the next shape.
  void start(const std::string& what);
  // Ends the current shape with its outcome.
  void finish(const std::string& outcome);

 private:
  void tick();
  void stop_ticking();

  int total_, index_ = 0;
  bool terminal_;
  std::string current_;
  std::chrono::steady_clock::time_point started_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool ticking_ = false;
  std::thread ticker_;
};

// What Runtime::prepare did for one shape, from the runtime's counters before and after it: the
// outcome a warm prints, with the tuning counts (and, if any, the candidates whose results
// differed from the reference config's).
std::string prepare_outcome(const RuntimeStats& before, const RuntimeStats& after);

}  // namespace moejit::cli
