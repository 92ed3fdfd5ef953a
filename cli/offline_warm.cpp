#include "cli/offline_warm.hpp"

#include <fmt/format.h>

#include "autotune/tuner.hpp"
#include "cache/rebuild.hpp"

namespace moejit::cli {

BuildOnceResult warm_offline_once(CacheStore& store, const WarmTarget& target,
                                  const std::string& arch, std::chrono::milliseconds wait) {
  const CacheKey key =
      current_key(DeviceIdentity::offline(arch), target.spec, token_bucket(target.tokens));
  return build_once(store, key, {.need_tuned = false, .wait_timeout = wait}, [&] {
    const TileConfig config = default_config(target.spec, arch);
    const auto compiled = compile_candidates(target.spec, {config}, arch, 0, key.text(), 1);
    CacheEntry entry;
    entry.key = key;
    entry.config = config;
    entry.cubin = compiled[0].kernel.cubin;
    entry.kernel_name = compiled[0].kernel.lowered_name;
    entry.report = compiled[0].kernel.report;
    return entry;
  });
}

std::string describe(const BuildOnceResult& result) {
  const std::string quality = result.entry.tuned ? "tuned" : "untuned";
  switch (result.source) {
    case BuildSource::cached:
      return fmt::format("already cached ({})", quality);
    case BuildSource::built:
      return fmt::format("compiled, {}", quality);
    case BuildSource::waited:
      return fmt::format("waited {:.1f} s for {}, reused its build ({})", result.waited_seconds,
                         result.waited_for, quality);
    case BuildSource::built_after_timeout:
      return fmt::format("waited {:.1f} s for {}, then compiled it here too, {}",
                         result.waited_seconds, result.waited_for, quality);
  }
  return {};
}

}  // namespace moejit::cli
