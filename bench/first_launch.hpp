#pragma once
// The warm first launch: from the start of a process to the completion of its first forward call,
// with a cache that already holds the kernel. Measured in a fresh process so nothing is loaded yet.
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "bench/options.hpp"

namespace moejit::bench {

// In the measured process: sets up inputs (filled on the device, not generated), runs one forward
// of `row` with options.cache and returns {warm_first_launch_ms, first_forward_ms, context_ms,
// inputs_ms, cache_hits, compiles, ...}.
nlohmann::json measure_first_launch(const BenchOptions& options, const RowSpec& row,
                                    std::chrono::steady_clock::time_point main_start);

// In the parent: runs options.self_exe --first-launch for `row` against `cache` and returns its
// JSON. Throws Error when the child fails or prints no JSON object.
nlohmann::json first_launch_in_child(const BenchOptions& options, const RowSpec& row,
                                     const std::filesystem::path& cache);

}  // namespace moejit::bench
