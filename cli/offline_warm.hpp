#pragma once
// `moejit warm` without a GPU: the default config of each shape compiled for a named target and
// stored untuned under the offline identity, for a GPU machine to tune later. Processes warming
// one cache at once compile each shape once: the others wait for it (cache/build_once.hpp).
#include <chrono>
#include <string>

#include "cache/build_once.hpp"
#include "cli/warm_request.hpp"

namespace moejit::cli {

BuildOnceResult warm_offline_once(CacheStore& store, const WarmTarget& target,
                                  const std::string& arch, std::chrono::milliseconds wait);

// "compiled, untuned", "already cached (tuned)", "waited 1.2 s for pid 7 on node3, reused its
// build", ...
std::string describe(const BuildOnceResult& result);

}  // namespace moejit::cli
