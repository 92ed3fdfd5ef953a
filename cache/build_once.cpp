#include "cache/build_once.hpp"

#include <thread>

#include "compiler/error.hpp"

namespace moejit {
namespace {

using Clock = std::chrono::steady_clock;

// Ends the claim however the build ends (put() has ended it already when the entry was stored;
// a failed build or a put() that could not write must not leave it blocking the others).
class ClaimGuard {
 public:
  ClaimGuard(CacheStore& store, const CacheKey& key) : store_(store), key_(key) {}
  ~ClaimGuard() { store_.release_claim(key_); }
  ClaimGuard(const ClaimGuard&) = delete;
  ClaimGuard& operator=(const ClaimGuard&) = delete;

 private:
  CacheStore& store_;
  const CacheKey& key_;
};

CacheEntry build_and_store(CacheStore& store, const std::function<CacheEntry()>& build) {
  CacheEntry entry = build();
  store.put(entry);
  return entry;
}

}  // namespace

std::string_view to_string(BuildSource source) {
  switch (source) {
    case BuildSource::cached:
      return "cached";
    case BuildSource::built:
      return "built";
    case BuildSource::waited:
      return "waited";
    case BuildSource::built_after_timeout:
      return "built_after_timeout";
  }
  return "?";
}

BuildOnceResult build_once(CacheStore& store, const CacheKey& key, const BuildOnceOptions& options,
                           const std::function<CacheEntry()>& build) {
  const auto start = Clock::now();
  const auto waited = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  BuildOnceResult result;
  for (auto pause = std::chrono::milliseconds(5);;
       pause = std::min(pause * 2, std::chrono::milliseconds(250))) {
    ClaimAttempt attempt;
    try {
      attempt = store.try_claim(key, options.need_tuned, options.lease);
    } catch (const CacheError&) {
      attempt = {};  // the cache cannot coordinate: build without a claim, as without a cache
    }
    if (attempt.status == ClaimStatus::present) {
      result.source = result.waited_for.empty() ? BuildSource::cached : BuildSource::waited;
      result.entry = std::move(*attempt.entry);
      result.waited_seconds = result.waited_for.empty() ? 0 : waited();
      return result;
    }
    if (attempt.status == ClaimStatus::acquired) {
      const ClaimGuard claim(store, key);
      result.entry = build_and_store(store, build);
      result.source = BuildSource::built;
      return result;
    }
    result.waited_for = attempt.holder;
    if (Clock::now() - start >= options.wait_timeout) {
      result.entry = build_and_store(store, build);
      result.source = BuildSource::built_after_timeout;
      result.waited_seconds = waited();
      return result;
    }
    std::this_thread::sleep_for(pause);
  }
}

}  // namespace moejit
