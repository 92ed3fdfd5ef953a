// `moejit warm`: fill the cache for both projections of one MoE layer (or, with --from-cache, for
// every shape the cache holds an offline build of), tuned on the GPU when there is one, or
// compiled with the default config for a named target when there is none.
#include <fmt/format.h>

#include <map>

#include "autotune/cuda_driver.hpp"
#include "cli/cache_option.hpp"
#include "cli/commands.hpp"
#include "cli/offline_warm.hpp"
#include "cli/progress.hpp"
#include "cli/warm_request.hpp"
#include "runtime/runtime.hpp"
#include "runtime/warm.hpp"

namespace moejit::cli {
namespace {

std::string shape_of(const WarmTarget& t) {
  const ProjectionSpec& s = t.spec;
  std::string text =
      fmt::format("{:<7} E={} k={} K={} N={} r={} T<={}", to_string(t.projection), s.experts,
                  s.top_k, s.in_features, s.out_features, s.rank, token_bucket(t.tokens));
  // The LoRA-gradient and helper kernels do not read the base weights.
  if (s.op == OpKind::forward || s.op == OpKind::backward_dx)
    text += fmt::format(" {}", to_string(s.weights));
  if (s.op != OpKind::forward) text += fmt::format(" {}", to_string(s.op));
  return text;
}

// Offline, each kernel is its own target: the forward's, then (unless --forward-only) those its
// backward runs.
std::vector<WarmTarget> with_backward_kernels(const std::vector<WarmTarget>& targets) {
  std::vector<WarmTarget> out;
  for (const WarmTarget& target : targets) {
    out.push_back(target);
    for (const ProjectionSpec& op : backward_ops(target.spec))
      out.push_back({target.projection, op, target.tokens});
  }
  return out;
}

void warm_without_gpu(const std::vector<WarmTarget>& projections, const WarmFlags& flags,
                      const std::string& why_not) {
  const std::vector<WarmTarget> targets =
      flags.forward_only ? projections : with_backward_kernels(projections);
  const std::string arch = flags.arch.empty() ? kDefaultOfflineArch : flags.arch;
  fmt::print("no GPU: compiling default configs for {}, stored untuned\n  ({})\n", arch, why_not);
  CacheStore store(resolve_cache_path(flags.cache));
  Progress progress(static_cast<int>(targets.size()));
  std::map<BuildSource, int> counts;
  const auto wait = std::chrono::milliseconds(static_cast<std::int64_t>(flags.wait_seconds * 1000));
  for (const WarmTarget& target : targets) {
    progress.start(shape_of(target));
    const BuildOnceResult result = warm_offline_once(store, target, arch, wait);
    ++counts[result.source];
    progress.finish(fmt::format("{} {}, id {}", result.entry.config.name(), describe(result),
                                result.entry.key.id().substr(0, 12)));
  }
  fmt::print("warm: {} kernels: {} compiled, {} waited for another process, {} already cached\n",
             targets.size(), counts[BuildSource::built] + counts[BuildSource::built_after_timeout],
             counts[BuildSource::waited], counts[BuildSource::cached]);
  fmt::print("cache: {}\n", store.path().string());
}

void warm_on_gpu(const std::vector<WarmTarget>& targets, const WarmFlags& flags) {
  Runtime runtime(RuntimeOptions{resolve_cache_path(flags.cache), !flags.no_tune});
  const cuda::DeviceInfo& device = runtime.device();
  fmt::print("GPU {}: {} ({}), {}\n", device.ordinal, device.name, device.arch(),
             flags.no_tune ? "tuning off" : "autotuning");
  if (!flags.arch.empty() && flags.arch != device.arch())
    fmt::print("note: --arch {} ignored: kernels are built for this GPU's target {}\n", flags.arch,
               device.arch());
  Progress progress(static_cast<int>(targets.size()));
  for (const WarmTarget& target : targets) {
    progress.start(shape_of(target));
    const RuntimeStats before = runtime.stats();
    // --from-cache tunes the builds it found, each op its own target.
    const TileConfig config =
        runtime.prepare(target.spec, target.tokens, !flags.forward_only && !flags.from_cache);
    progress.finish(config.name() + " " + prepare_outcome(before, runtime.stats()));
  }
  fmt::print("cache: {}\n", runtime.cache_path().string());
}

// --from-cache: the shapes of the offline builds for this GPU's arch.
std::vector<WarmTarget> cached_targets(const WarmFlags& flags, const std::string& arch) {
  const auto path = resolve_cache_path(flags.cache);
  const auto store = open_existing(path);
  auto targets =
      store ? offline_build_targets(store->scan().entries, arch) : std::vector<WarmTarget>{};
  fmt::print("{} offline builds for {} in {}\n", targets.size(), arch, path.string());
  return targets;
}

int run_warm(const WarmFlags& flags) {
  std::string why_not;
  bool gpu = cuda::try_api(&why_not) != nullptr;
  if (gpu && cuda::device_count() == 0) {
    gpu = false;
    why_not = "the driver reports no GPU";
  }
  if (flags.from_cache) {
    if (!gpu) {
      fmt::print("no GPU: nothing to tune; offline builds stay as they are\n  ({})\n", why_not);
      return 0;
    }
    warm_on_gpu(cached_targets(flags, cuda::query_device(0).arch()), flags);
    return 0;
  }
  // Every flag is checked before the first compile.
  const std::vector<WarmTarget> targets = warm_targets(flags);
  if (gpu)
    warm_on_gpu(targets, flags);
  else
    warm_without_gpu(targets, flags, why_not);
  return 0;
}

}  // namespace

Command add_warm(CLI::App& app) {
  CLI::App* command =
      app.add_subcommand("warm", "Compile (and with a GPU, autotune) both projections of a layer");
  auto flags = std::make_shared<WarmFlags>();
  add_warm_flags(*command, *flags);
  add_cache_option(*command, flags->cache);
  return {command, [flags] { return run_warm(*flags); }};
}

}  // namespace moejit::cli
