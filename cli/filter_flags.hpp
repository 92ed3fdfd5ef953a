#pragma once
// The entry filters `list`, `export` and `prune` share.
#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "cache/filter.hpp"

namespace moejit::cli {

struct FilterFlags {
  std::string arch, device;
  bool tuned = false, untuned = false, stale = false, current = false;
  std::optional<int> experts, in_features, out_features, rank;
  std::optional<double> older_than_days;

  EntryFilter filter() const;
};

void add_filter_flags(CLI::App& command, FilterFlags& flags);

}  // namespace moejit::cli
