#include "runtime/warm.hpp"

#include <chrono>

#include "autotune/tuner.hpp"
#include "compiler/error.hpp"
#include "compiler/kernel_view.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "compiler/source.hpp"
#include "templates/embedded.hpp"

namespace moejit {

std::vector<ProjectionSpec> backward_ops(const ProjectionSpec& spec) {
  std::vector<ProjectionSpec> ops;
  for (OpKind op : {OpKind::pack_b, OpKind::backward_dx, OpKind::reduce_slots, OpKind::grad_a,
                    OpKind::grad_b}) {
    if (op == OpKind::reduce_slots && (spec.grouped_in || spec.top_k == 1)) continue;
    ops.push_back(op_spec(spec, op));
  }
  return ops;
}

WarmOutcome warm_offline(CacheStore& store, const ProjectionSpec& spec, std::int64_t tokens,
                         const std::string& arch, const std::optional<TileConfig>& pinned) {
  spec.validate();
  validate_arch(arch);
  if (tokens < 1) throw InvalidArgument("tokens", std::to_string(tokens), ">= 1");
  const auto start = std::chrono::steady_clock::now();
  WarmOutcome out;
  out.key = CacheKey{DeviceIdentity::offline(arch),
                     nvrtc_version(),
                     std::string(templates::bundle_hash()),
                     kGeneratorVersion,
                     spec,
                     token_bucket(tokens)};
  const LookupResult found = store.lookup(out.key);
  if (found.status == LookupStatus::hit) {
    out.already_cached = true;
    out.config = found.entry->config;
    out.tuned = found.entry->tuned;
  } else {
    const TileConfig config = pinned ? *pinned : default_config(spec, arch);
    const auto compiled = compile_candidates(spec, {config}, arch, 0, out.key.text(), 1);
    CacheEntry entry;
    entry.key = out.key;
    entry.config = config;
    entry.cubin = compiled[0].kernel.cubin;
    entry.kernel_name = compiled[0].kernel.lowered_name;
    entry.report = compiled[0].kernel.report;
    store.put(entry);
    out.config = config;
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace moejit
