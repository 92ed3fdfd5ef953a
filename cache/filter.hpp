#pragma once
// Which entries a listing, an export or a prune is about. Every criterion that is set must hold.
#include <cstdint>
#include <optional>
#include <string>

#include "cache/store.hpp"

namespace moejit {

struct EntryFilter {
  std::optional<std::string> arch;    // "sm_90a"
  std::optional<std::string> device;  // device name as stored, "offline" for offline builds
  std::optional<bool> tuned;
  std::optional<int> experts, in_features, out_features, rank;
  std::optional<std::int64_t> older_than_seconds;  // created at least this long ago
  // Built with another NVRTC, template or generator version than this build (see rebuild.hpp).
  std::optional<bool> stale;

  bool matches(const CacheEntry& entry, std::int64_t now_unix) const;
  bool selects_everything() const;
};

std::int64_t unix_now();

}  // namespace moejit
