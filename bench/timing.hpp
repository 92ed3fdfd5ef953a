#pragma once
// Device-side timing of launches with CUDA events.
#include <cuda.h>

#include <functional>

namespace moejit::bench {

struct TimingOptions {
  int warmup = 5;  // untimed launches first: module load and clocks settle
  int reps = 30;   // timed launches; the median is reported
};

// Median milliseconds of `launch` (which enqueues work on `stream`). Each timed launch sits between
// its own pair of events and all are enqueued back to back, so host overhead between launches is
// hidden as long as the host enqueues faster than the device runs.
double median_ms(CUstream stream, const TimingOptions& options,
                 const std::function<void()>& launch);

}  // namespace moejit::bench
