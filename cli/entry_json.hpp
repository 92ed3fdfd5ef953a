#pragma once
// The JSON form of a cache entry for scripts (`list --json`): every field but the CUBIN itself,
// which is given by size and checksum.
#include <nlohmann/json.hpp>

#include "cache/store.hpp"

namespace moejit::cli {

nlohmann::json entry_json(const CacheEntry& entry);

}  // namespace moejit::cli
