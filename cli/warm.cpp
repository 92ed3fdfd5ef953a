// `moejit warm`: fill the cache for both projections of one MoE layer, tuned on the GPU when there
// is one, or compiled with the default config for a named target when there is none.
#include <fmt/format.h>

#include <chrono>

#include "autotune/cuda_driver.hpp"
#include "cli/cache_option.hpp"
#include "cli/commands.hpp"
#include "cli/warm_request.hpp"
#include "runtime/runtime.hpp"
#include "runtime/warm.hpp"

namespace moejit::cli {
namespace {

std::string shape_of(const ProjectionSpec& s) {
  return fmt::format("E={} k={} K={} N={} r={}", s.experts, s.top_k, s.in_features, s.out_features,
                     s.rank);
}

void print_outcome(const WarmTarget& target, const TileConfig& config, std::string_view what,
                   double seconds) {
  fmt::print("{:<8} {:<30} {:<20} {:>6.2f} s  {}\n", to_string(target.projection),
             shape_of(target.spec), config.name(), seconds, what);
}

void warm_without_gpu(const std::vector<WarmTarget>& targets, const WarmFlags& flags,
                      const std::string& why_not) {
  const std::string arch = flags.arch.empty() ? kDefaultOfflineArch : flags.arch;
  fmt::print("no GPU: compiling default configs for {}, stored untuned\n  ({})\n", arch, why_not);
  CacheStore store(resolve_cache_path(flags.cache));
  for (const WarmTarget& target : targets) {
    const WarmOutcome outcome = warm_offline(store, target.spec, flags.tokens, arch);
    const std::string what =
        outcome.already_cached
            ? fmt::format("already cached ({})", outcome.tuned ? "tuned" : "untuned")
            : "compiled, untuned";
    print_outcome(target, outcome.config, what + ", id " + outcome.key.id().substr(0, 12),
                  outcome.seconds);
  }
  fmt::print("cache: {}\n", store.path().string());
}

// What prepare() did, read from the runtime's counters around the call.
std::string_view what_prepare_did(const RuntimeStats& before, const RuntimeStats& after) {
  if (after.tunes > before.tunes) return "tuned";
  if (after.compiles > before.compiles) return "compiled default config (tuning off)";
  if (after.cache_hits > before.cache_hits) return "already cached";
  return "already loaded";
}

void warm_on_gpu(const std::vector<WarmTarget>& targets, const WarmFlags& flags) {
  Runtime runtime(RuntimeOptions{resolve_cache_path(flags.cache), !flags.no_tune});
  const cuda::DeviceInfo& device = runtime.device();
  fmt::print("GPU {}: {} ({}), {}\n", device.ordinal, device.name, device.arch(),
             flags.no_tune ? "tuning off" : "autotuning");
  if (!flags.arch.empty() && flags.arch != device.arch())
    fmt::print("note: --arch {} ignored: kernels are built for this GPU's target {}\n", flags.arch,
               device.arch());
  for (const WarmTarget& target : targets) {
    const RuntimeStats before = runtime.stats();
    const auto start = std::chrono::steady_clock::now();
    const TileConfig config = runtime.prepare(target.spec, flags.tokens);
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    print_outcome(target, config, what_prepare_did(before, runtime.stats()), elapsed.count());
  }
  fmt::print("cache: {}\n", runtime.cache_path().string());
}

}  // namespace

Command add_warm(CLI::App& app) {
  CLI::App* command =
      app.add_subcommand("warm", "Compile (and with a GPU, autotune) both projections of a layer");
  auto flags = std::make_shared<WarmFlags>();
  add_warm_flags(*command, *flags);
  add_cache_option(*command, flags->cache);
  return {command, [flags] {
            // Every flag is checked before the first compile.
            const std::vector<WarmTarget> targets = warm_targets(*flags);
            std::string why_not;
            if (cuda::try_api(&why_not) == nullptr)
              warm_without_gpu(targets, *flags, why_not);
            else
              warm_on_gpu(targets, *flags);
            return 0;
          }};
}

}  // namespace moejit::cli
