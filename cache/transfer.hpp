#pragma once
// Cache files that ship: export part of a cache into a new self-contained file, and merge two
// files into a third. Outputs are built in a temporary file beside the target and renamed into
// place, so a crash never leaves half a file under the target's name.
#include <filesystem>
#include <string>
#include <vector>

#include "cache/filter.hpp"
#include "cache/store.hpp"

namespace moejit {

struct ExportReport {
  int exported = 0;
  int damaged_skipped = 0;  // rows of the source that do not decode
  std::int64_t bytes = 0;   // size of the written file
};

// Writes the entries of `store` that match `filter` into `out`. Throws InvalidArgument when `out`
// exists and !overwrite, CacheError when writing fails.
ExportReport export_cache(const CacheStore& store, const std::filesystem::path& out,
                          const EntryFilter& filter, bool overwrite);

struct MergeReport {
  int from_first = 0, from_second = 0;  // entries read from each input
  MergeCounts second_into_first;        // how the second input's entries fared
  std::vector<DamagedRow> damaged;      // rows of either input that do not decode, skipped
  int entries = 0;                      // in the output
};

// Writes every entry of `first` and `second` into `out`; for a key in both, the better entry
// (is_better: tuned over untuned, then the faster) wins, the first on a tie. Both inputs are
// opened as untrusted files. Throws InvalidArgument when `out` exists and !overwrite or is one of
// the inputs, CacheError for an unusable input.
MergeReport merge_caches(const std::filesystem::path& first, const std::filesystem::path& second,
                         const std::filesystem::path& out, bool overwrite);

}  // namespace moejit
