#pragma once
// Device-side timing of Runtime::forward with CUDA events.
#include <cuda.h>

#include "compiler/problem.hpp"
#include "runtime/runtime.hpp"

namespace moejit::bench {

struct TimingOptions {
  int warmup = 5;  // untimed launches first: module load and clocks settle
  int reps = 30;   // timed launches; the median is reported
};

// Median milliseconds of one forward launch on `stream`. Each timed launch sits between its own
// pair of events and all are enqueued back to back, so host overhead between launches is hidden.
double median_forward_ms(Runtime& runtime, const ProjectionSpec& spec, const ForwardArgs& args,
                         CUstream stream, const TimingOptions& options);

}  // namespace moejit::bench
