#pragma once
// Measuring one row: cold tune, forward time, forward + backward time, extra memory, and the warm
// first launch, written into the row's JSON object.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "bench/options.hpp"

namespace moejit::bench {

// Tunes (or loads from `cache`) every kernel of the row, times them on fresh random inputs and
// fills the row's fields. `cold`: `cache` was created for this row, so the tune time is reported.
// Rows whose weights options.tunes() does not list take the default configs from `cache` instead.
// Throws Error when a launch fails or an output holds non-finite or unwritten values.
void measure_row(const BenchOptions& options, const RowSpec& row,
                 const std::filesystem::path& cache, bool cold, nlohmann::json& out);

}  // namespace moejit::bench
