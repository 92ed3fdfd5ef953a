#pragma once
// The default mode: one JSON row per RowSpec (preset x projection x tokens x weights) on stdout,
// a human line per row on stderr.
#include "bench/options.hpp"

namespace moejit::bench {

// Returns the process exit code: 0 when every row was measured, 1 when any failed (a failed row is
// still printed, with null times and an "error" field).
int run_table(const BenchOptions& options);

}  // namespace moejit::bench
