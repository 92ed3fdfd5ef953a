#pragma once
// Builds (compiles or tunes) a cache entry at most once among all processes sharing a cache: the
// first process claims the key and builds it; the others wait and reuse its entry. A waiter gives
// up after a timeout and builds the entry itself, so a stuck or very slow builder delays the
// others but never blocks them for good.
#include <chrono>
#include <functional>
#include <string>

#include "cache/store.hpp"

namespace moejit {

struct BuildOnceOptions {
  bool need_tuned = false;  // an untuned entry does not satisfy a caller that tunes
  // How long to wait for another process's build before building here too.
  std::chrono::milliseconds wait_timeout{std::chrono::minutes(10)};
  // How long a claim stops others when its holder cannot be checked (another host).
  std::chrono::seconds lease{std::chrono::minutes(15)};
};

enum class BuildSource {
  cached,               // an entry good enough was stored already
  built,                // built and stored by this call
  waited,               // another process built it while this one waited
  built_after_timeout,  // waited wait_timeout, then built it here as well
};
std::string_view to_string(BuildSource source);

struct BuildOnceResult {
  CacheEntry entry;
  BuildSource source = BuildSource::cached;
  double waited_seconds = 0;
  std::string waited_for;  // the holder when this call waited: "pid 123 on node7"
};

// Returns the stored entry for `key`, or the one `build` returns (which is stored with put()).
// Exceptions of `build` propagate after the claim is released. Cache failures (a locked or
// unusable database) fall back to building without a claim.
BuildOnceResult build_once(CacheStore& store, const CacheKey& key, const BuildOnceOptions& options,
                           const std::function<CacheEntry()>& build);

}  // namespace moejit
