#include "cache/filter.hpp"

#include <chrono>

#include "cache/rebuild.hpp"

namespace moejit {
namespace {

template <class Value>
bool holds(const std::optional<Value>& wanted, const Value& actual) {
  return !wanted || *wanted == actual;
}

}  // namespace

bool EntryFilter::matches(const CacheEntry& e, std::int64_t now_unix) const {
  const ProjectionSpec& s = e.key.spec;
  return holds(arch, e.key.device.arch) && holds(device, e.key.device.name) &&
         holds(tuned, e.tuned) && holds(experts, s.experts) && holds(in_features, s.in_features) &&
         holds(out_features, s.out_features) && holds(rank, s.rank) &&
         (!older_than_seconds || e.created_unix <= now_unix - *older_than_seconds) &&
         (!stale || *stale == !build_difference(e.key).empty());
}

bool EntryFilter::selects_everything() const {
  return !arch && !device && !tuned && !experts && !in_features && !out_features && !rank &&
         !older_than_seconds && !stale;
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace moejit
