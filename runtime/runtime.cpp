#include "runtime/runtime.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <future>
#include <iostream>
#include <mutex>
#include <unordered_map>

#include "autotune/launch.hpp"
#include "autotune/tuner.hpp"
#include "cache/build_once.hpp"
#include "cache/store.hpp"
#include "compiler/error.hpp"
#include "compiler/kernel_view.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "compiler/source.hpp"
#include "runtime/backward_overlap.hpp"
#include "runtime/validation.hpp"
#include "runtime/warm.hpp"
#include "templates/embedded.hpp"

namespace moejit {
namespace {

// What selects a loaded kernel inside this process (the device is fixed per Runtime).
struct MemoryKey {
  ProjectionSpec spec;
  std::int64_t bucket;
  bool operator==(const MemoryKey&) const = default;
};

struct MemoryKeyHash {
  std::size_t operator()(const MemoryKey& k) const {
    const ProjectionSpec& s = k.spec;
    std::size_t h = static_cast<std::size_t>(k.bucket);
    auto mix = [&h](std::size_t v) { h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
    for (std::size_t v :
         {std::size_t(s.op), std::size_t(s.experts), std::size_t(s.top_k),
          std::size_t(s.in_features), std::size_t(s.out_features), std::size_t(s.rank),
          std::size_t(s.act), std::size_t(s.lora), std::size_t(s.index), std::size_t(s.weights),
          std::size_t(s.layout), std::size_t(s.b_storage), std::size_t(s.grouped_in),
          std::size_t(s.grouped_out), std::size_t(s.has_bias), std::size_t(s.quant_blocksize),
          std::size_t(s.double_quant)})
      mix(v);
    return h;
  }
};

struct LoadedKernel {
  cuda::Module module;
  KernelHandle handle;
};

}  // namespace

struct Runtime::Impl {
  RuntimeOptions options;
  cuda::ContextGuard context;
  cuda::DeviceInfo device;
  DeviceIdentity identity;
  std::filesystem::path cache_path;
  CacheStore store;
  mutable std::mutex mutex;
  std::unordered_map<MemoryKey, LoadedKernel, MemoryKeyHash> loaded;
  // The forward's packed B (PEFT storage), one buffer per stream so that calls on a stream reuse it
  // in stream order; grown to the largest E*r*N seen (cuMemFree waits for work still using the old
  // one). A stream-ordered allocation per call cost the first call about 10 ms of pool set-up.
  std::unordered_map<CUstream, cuda::DeviceBuffer> packed_b;
  // Per caller stream, the stream dX runs on while dB runs on the caller's (Runtime::backward).
  struct BackwardLane {
    explicit BackwardLane(CUstream caller) : side(cuda::Stream::above(caller)) {}
    cuda::Stream side;  // a priority above the caller's: dX's blocks take their SMs before dB's
    cuda::Event forked{false}, inputs_ready{false}, joined{false};
  };
  std::unordered_map<CUstream, BackwardLane> lanes;
  // Candidates that prepare() compiled for several ops at once, taken by the op's tuning.
  std::unordered_map<MemoryKey, std::vector<CompiledCandidate>, MemoryKeyHash> precompiled;
  RuntimeStats stats;

  explicit Impl(RuntimeOptions opts)
      : options(std::move(opts)),
        context(options.device),
        device(cuda::query_device(context.device())),
        identity{device.name, device.arch(), device.sm_count, device.driver_version},
        cache_path(options.cache_path.empty() ? default_cache_path() : options.cache_path),
        store(cache_path) {
    if (options.gemm_config && options.tune)
      throw InvalidArgument("gemm_config", options.gemm_config->name(),
                            "no pinned config with tune = true (tuning picks the config)");
    if (options.gemm_config) options.gemm_config->validate();
    if (options.grad_b_sms < -1)
      throw InvalidArgument("grad_b_sms", std::to_string(options.grad_b_sms),
                            "-1 (chosen from the shape), 0 (dB after dX) or a number of SMs");
  }

  CacheKey key_for(const ProjectionSpec& spec, std::int64_t bucket, DeviceIdentity who) const {
    return CacheKey{
        std::move(who), nvrtc_version(), std::string(templates::bundle_hash()), kGeneratorVersion,
        spec,           bucket};
  }

  // Cache entry for the key: from the store, else tuned or compiled (and stored).
  // Tunes `spec` (or compiles its default config) for the key; called on a cache miss.
  CacheEntry build_entry(const ProjectionSpec& spec, std::int64_t bucket, const CacheKey& key,
                         bool tunable) {
    ++stats.cache_misses;
    CacheEntry entry;
    entry.key = key;
    if (tunable) {
      std::vector<CompiledCandidate> compiled;
      if (const auto it = precompiled.find(MemoryKey{spec, bucket}); it != precompiled.end()) {
        compiled = std::move(it->second);
        precompiled.erase(it);
      }
      const TuneResult tuned = tune(spec, bucket, device, key.text(), std::move(compiled));
      stats.compiles += tuned.compiled;
      ++stats.tunes;
      stats.tune_pruned += tuned.pruned;
      stats.tune_timed += tuned.timed;
      stats.tune_cannot_win += tuned.cannot_win;
      stats.tune_mismatched += tuned.mismatched;
      stats.tune_compile_seconds += tuned.compile_seconds;
      stats.tune_timing_seconds += tuned.timing_seconds;
      entry.config = tuned.best.config;
      entry.cubin = tuned.best.kernel.cubin;
      entry.kernel_name = tuned.best.kernel.lowered_name;
      entry.report = tuned.best.kernel.report;
      entry.time_ms = tuned.best.time_ms;
      entry.tuned = true;
      return entry;
    }
    // A pinned config wins; else an offline build for this arch serves until the entry is tuned
    // in place.
    const bool pinned = options.gemm_config && family_of(spec.op) == KernelFamily::gemm;
    const LookupResult offline =
        store.lookup(key_for(spec, bucket, DeviceIdentity::offline(identity.arch)));
    if (offline.status == LookupStatus::hit && !pinned) {
      CacheEntry reused = *offline.entry;
      reused.key = key;
      return reused;
    }
    const TileConfig config = pinned ? *options.gemm_config : default_config(spec, identity.arch);
    const auto compiled =
        compile_candidates(spec, {config}, identity.arch, device.smem_optin_bytes, key.text(), 1);
    if (pinned && compiled[0].pruned.find("shared memory") != std::string::npos)
      throw InvalidArgument("gemm_config", config.name(),
                            fmt::format("a config that fits this device ({})", compiled[0].pruned));
    ++stats.compiles;
    entry.config = config;
    entry.cubin = compiled[0].kernel.cubin;
    entry.kernel_name = compiled[0].kernel.lowered_name;
    entry.report = compiled[0].kernel.report;
    return entry;
  }

  // The cache entry for the key: stored, else built here or by another process sharing the cache
  // file (which this one then waits for), so each key is tuned once per cache.
  CacheEntry find_or_build(const ProjectionSpec& spec, std::int64_t bucket) {
    const CacheKey key = key_for(spec, bucket, identity);
    const bool tunable = options.tune && is_tuned_op(spec.op);
    BuildOnceOptions once;
    once.need_tuned = tunable;
    const BuildOnceResult result =
        build_once(store, key, once, [&] { return build_entry(spec, bucket, key, tunable); });
    if (result.source == BuildSource::cached) ++stats.cache_hits;
    if (result.source == BuildSource::waited) ++stats.cache_waits;
    return result.entry;
  }

  // Compiles the candidates of every op in `ops` that this call would tune (not loaded, no tuned
  // entry stored) at once, on all cores: tuned one by one, each op waited for its slowest
  // compile (the rs and TMA kernels take 1-2.5 s each), and the cold tune of a projection
  // summed four such waits.
  void precompile(const std::vector<ProjectionSpec>& ops, std::int64_t tokens) {
    if (!options.tune) return;
    std::vector<std::pair<MemoryKey, std::string>> todo;  // and the cache key text, for errors
    for (const ProjectionSpec& op : ops) {
      if (!is_tuned_op(op.op)) continue;
      const MemoryKey mk{op, token_bucket(tokens)};
      if (loaded.contains(mk) || precompiled.contains(mk)) continue;
      const CacheKey key = key_for(op, mk.bucket, identity);
      const LookupResult found = store.lookup(key);
      if (found.status == LookupStatus::hit && found.entry->tuned) continue;
      todo.emplace_back(mk, key.text());
    }
    if (todo.size() < 2) return;  // nothing to overlap
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::future<std::vector<CompiledCandidate>>> jobs;
    for (const auto& [mk, key] : todo)
      jobs.push_back(std::async(std::launch::async, [&, mk = mk, key = key] {
        return compile_candidates(mk.spec, candidate_configs(mk.spec, identity.arch), identity.arch,
                                  device.smem_optin_bytes, key);
      }));
    std::vector<std::vector<CompiledCandidate>> results;
    for (auto& job : jobs) results.push_back(job.get());  // rethrows a compile error
    for (std::size_t i = 0; i < todo.size(); ++i)
      precompiled.emplace(todo[i].first, std::move(results[i]));
    stats.tune_compile_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  const LoadedKernel& get(const ProjectionSpec& spec, std::int64_t tokens) {
    // The helper ops do not depend on the token count: one entry serves every bucket.
    const MemoryKey mk{spec, is_tuned_op(spec.op) ? token_bucket(tokens) : 1};
    if (auto it = loaded.find(mk); it != loaded.end()) {
      ++stats.memory_hits;
      return it->second;
    }
    const CacheEntry entry = find_or_build(spec, mk.bucket);
    LoadedKernel k;
    k.module = cuda::Module(entry.cubin);
    k.handle = load_kernel(k.module, entry.kernel_name, spec, entry.config, device.sm_count);
    return loaded.emplace(mk, std::move(k)).first->second;
  }
};

Runtime::Runtime(RuntimeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Runtime::~Runtime() = default;

namespace {

std::size_t align256(std::size_t bytes) {
  return (bytes + 255) / 256 * 256;
}

// The backward workspace, carved in this order (each part 256-byte aligned).
struct WorkspaceLayout {
  std::size_t dy_b = 0, b_packed = 0, xa = 0, slots = 0, total = 0;
};

WorkspaceLayout workspace_layout(const ProjectionSpec& spec, std::int64_t tokens) {
  const std::size_t rows = static_cast<std::size_t>(std::max<std::int64_t>(tokens, 0)) * spec.top_k;
  const std::size_t r = spec.rank, act = size_of(spec.act);
  WorkspaceLayout w;
  w.dy_b = 0;
  w.b_packed = w.dy_b + align256(rows * r * 4);
  // B_e^T packed in the lora dtype (pack_b keeps the factor's precision).
  w.xa = w.b_packed + align256(static_cast<std::size_t>(spec.experts) * r * spec.out_features *
                               size_of(spec.lora));
  w.slots = w.xa + align256(rows * r * 4);
  const bool per_slot = !spec.grouped_in && spec.top_k > 1;
  w.total = w.slots + (per_slot ? align256(rows * spec.in_features * act) : 0);
  return w;
}

}  // namespace

std::size_t backward_workspace_bytes(const ProjectionSpec& spec, std::int64_t tokens) {
  return workspace_layout(spec, tokens).total;
}

namespace {

template <class Args>
void set_quant(ForwardParams& p, const Args& args) {
  p.absmax = args.w_absmax;
  p.code = args.w_code;
  p.absmax2 = args.w_absmax2;
  p.code2 = args.w_code2;
  p.offset = args.w_offset;
}

}  // namespace

void Runtime::forward(const ProjectionSpec& spec, const ForwardArgs& args, CUstream stream) {
  validate_forward_args(spec, args);
  if (spec.op != OpKind::forward)
    throw InvalidArgument("spec.op", std::string(to_string(spec.op)), "forward");
  if (impl_->options.validate)
    validate_routing(spec, args.tokens,
                     {args.expert_offsets, args.sorted_scattered_idxs, args.sorted_expert_idxs},
                     stream);
  const std::int64_t rows = args.tokens * spec.top_k;
  if (rows == 0) return;
  ForwardParams p{};
  p.x = args.x;
  p.w = args.w;
  p.lora_a = args.lora_a;
  p.lora_b = args.lora_b;
  p.bias = args.bias;
  p.expert_offsets = args.expert_offsets;
  p.scattered_idxs = args.sorted_scattered_idxs;
  p.y = args.y;
  p.xa_out = args.save_xa;
  set_quant(p, args);
  p.rows = rows;
  p.scale = args.scale;
  std::lock_guard lock(impl_->mutex);
  // PEFT's B is packed into B_e^T rows first (compiler/kernel_view.hpp, forward_reads_packed_b).
  if (forward_reads_packed_b(spec)) {
    const std::size_t bytes =
        static_cast<std::size_t>(spec.experts) * spec.rank * spec.out_features * size_of(spec.lora);
    cuda::DeviceBuffer& packed_b = impl_->packed_b[stream];
    if (packed_b.bytes() < bytes) packed_b = cuda::DeviceBuffer(bytes);
    const AuxParams pack{args.lora_b, packed_b.ptr(), 0};
    const ProjectionSpec pack_spec = op_spec(spec, OpKind::pack_b);
    launch_kernel(impl_->get(pack_spec, args.tokens).handle, pack_spec, &pack, rows, stream);
    ++impl_->stats.launches;
    p.lora_b = packed_b.ptr();
  }
  const LoadedKernel& k = impl_->get(spec, args.tokens);
  launch_forward(k.handle, spec, p, stream);
  ++impl_->stats.launches;
}

void Runtime::backward(const ProjectionSpec& spec, const BackwardArgs& args, CUstream stream) {
  validate_backward_args(spec, args);
  if (impl_->options.validate)
    validate_routing(spec, args.tokens,
                     {args.expert_offsets, args.sorted_scattered_idxs, args.sorted_expert_idxs},
                     stream);
  const cuda::Api& api = cuda::api();
  const std::int64_t rows = args.tokens * spec.top_k;
  const std::size_t r = spec.rank;
  const std::size_t da_bytes = spec.experts * r * spec.in_features * size_of(spec.lora);
  const std::size_t db_bytes = spec.experts * r * spec.out_features * size_of(spec.lora);
  if (rows == 0) {  // no rows: every expert's gradients are zero, dX is empty
    cuda::check(api.cuMemsetD8Async(reinterpret_cast<CUdeviceptr>(args.da), 0, da_bytes, stream),
                "cuMemsetD8Async(da)");
    cuda::check(api.cuMemsetD8Async(reinterpret_cast<CUdeviceptr>(args.db), 0, db_bytes, stream),
                "cuMemsetD8Async(db)");
    return;
  }
  const WorkspaceLayout ws = workspace_layout(spec, args.tokens);
  char* workspace = static_cast<char*>(args.workspace);
  float* dy_b = reinterpret_cast<float*>(workspace + ws.dy_b);
  void* b_packed = workspace + ws.b_packed;
  const float* xa = args.xa ? args.xa : reinterpret_cast<float*>(workspace + ws.xa);
  const bool per_slot = !spec.grouped_in && spec.top_k > 1;

  std::lock_guard lock(impl_->mutex);
  // Every kernel is loaded (compiled or tuned on a miss) before anything is queued, so that no
  // compile or cache error can strike once the streams fork.
  std::unordered_map<OpKind, const KernelHandle*> kernels;
  for (const OpKind op : {OpKind::pack_b, OpKind::forward, OpKind::backward_dx,
                          OpKind::reduce_slots, OpKind::grad_a, OpKind::grad_b})
    if ((op != OpKind::forward || !args.xa) && (op != OpKind::reduce_slots || per_slot))
      kernels[op] = &impl_->get(op_spec(spec, op), args.tokens).handle;
  auto run = [&](OpKind op, const void* params, CUstream on, const KernelHandle* handle = nullptr,
                 cuda::Event* before_main = nullptr) {
    launch_kernel(handle ? *handle : *kernels.at(op), op_spec(spec, op), params, rows, on,
                  before_main);
    ++impl_->stats.launches;
  };
  // dB needs only dy and x * A^T: it runs on the caller's stream beside dX, which runs on the
  // lane's side stream with its persistent grid kept off `reserved` SMs (grad_b_reserved_sms).
  const KernelHandle& dx_kernel = *kernels.at(OpKind::backward_dx);
  // The register-operand kernel's prologue writes dy * B (dA's u) before its main grid starts,
  // so dA can run beside dX as well.
  const bool grad_a_beside = dx_kernel.config.rs;
  const int reserved =
      grad_b_reserved_sms(spec, args.tokens, dx_kernel, grad_a_beside, impl_->options.grad_b_sms);
  Impl::BackwardLane* lane = nullptr;
  CUstream dx_stream = stream;
  // The caller's later work waits for the side stream's.
  auto join = [&] {
    lane->joined.record(dx_stream);
    lane->joined.wait_in(stream);
  };
  if (reserved > 0) {
    lane = &impl_->lanes.try_emplace(stream, stream).first->second;
    lane->forked.record(stream);
    lane->forked.wait_in(lane->side.get());
    dx_stream = lane->side.get();
  }
  const LoraGradParams grad_b{xa,      args.dy, args.expert_offsets, args.sorted_scattered_idxs,
                              args.db, rows,    args.scale};
  const LoraGradParams grad_a{dy_b,    args.x, args.expert_offsets, args.sorted_scattered_idxs,
                              args.da, rows,   args.scale};
  try {
    const AuxParams pack{args.lora_b, b_packed, 0};
    run(OpKind::pack_b, &pack, dx_stream);
    if (!args.xa) {  // recompute x * A^T with the forward kernel in its x*A^T-only mode
      ForwardParams p{};
      p.x = args.x;
      p.w = args.w;
      p.lora_a = args.lora_a;
      // B as the forward's kernel reads it (the x*A^T-only mode leaves the TMA kernel's B unread).
      p.lora_b = forward_reads_packed_b(spec) ? b_packed : args.lora_b;
      p.expert_offsets = args.expert_offsets;
      p.scattered_idxs = args.sorted_scattered_idxs;
      p.xa_out = reinterpret_cast<float*>(workspace + ws.xa);
      set_quant(p, args);
      p.rows = rows;
      p.scale = args.scale;
      run(OpKind::forward, &p, dx_stream);
    }
    ForwardParams dx{};
    dx.x = args.dy;
    dx.w = args.w;
    dx.lora_a = b_packed;
    dx.lora_b = args.lora_a;
    dx.expert_offsets = args.expert_offsets;
    dx.scattered_idxs = args.sorted_scattered_idxs;
    dx.y = per_slot ? workspace + ws.slots : args.dx;
    dx.xa_out = dy_b;
    set_quant(dx, args);
    dx.rows = rows;
    dx.scale = args.scale;
    KernelHandle dx_on_fewer_sms = dx_kernel;
    dx_on_fewer_sms.resident_ctas -= reserved;
    // dB (and dA after a prologue) waits for inputs_ready, recorded right before dX's persistent
    // grid is launched (after the register-operand kernel's prologue, which wrote dA's u): both
    // can start at once, and dX's higher-priority blocks take their SMs first.
    run(OpKind::backward_dx, &dx, dx_stream, &dx_on_fewer_sms,
        lane ? &lane->inputs_ready : nullptr);
    if (lane) {
      lane->inputs_ready.wait_in(stream);
      run(OpKind::grad_b, &grad_b, stream);
      if (grad_a_beside) run(OpKind::grad_a, &grad_a, stream);
      ++impl_->stats.grad_b_beside_dx;
    }
    if (per_slot) {
      const AuxParams reduce{workspace + ws.slots, args.dx, args.tokens};
      run(OpKind::reduce_slots, &reduce, dx_stream);
    }
    if (!lane || !grad_a_beside) run(OpKind::grad_a, &grad_a, dx_stream);
  } catch (...) {
    // The caller's later work still waits for whatever reached the side stream.
    if (lane) {
      try {
        join();
      } catch (...) {  // the first error is the one to report
      }
    }
    throw;
  }
  if (lane)
    join();
  else
    run(OpKind::grad_b, &grad_b, stream);
}

TileConfig Runtime::prepare(const ProjectionSpec& spec, std::int64_t tokens, bool with_backward) {
  spec.validate();
  if (tokens < 1) throw InvalidArgument("tokens", std::to_string(tokens), ">= 1");
  std::lock_guard lock(impl_->mutex);
  std::vector<ProjectionSpec> ops{spec};
  if (with_backward && spec.op == OpKind::forward)
    for (const ProjectionSpec& op : backward_ops(spec)) ops.push_back(op);
  impl_->precompile(ops, tokens);
  const TileConfig config = impl_->get(spec, tokens).handle.config;
  if (forward_reads_packed_b(spec)) impl_->get(op_spec(spec, OpKind::pack_b), tokens);
  for (std::size_t i = 1; i < ops.size(); ++i) impl_->get(ops[i], tokens);
  impl_->precompiled.clear();  // what another process tuned meanwhile was not needed
  return config;
}

RuntimeStats Runtime::stats() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->stats;
}
const cuda::DeviceInfo& Runtime::device() const {
  return impl_->device;
}
const std::filesystem::path& Runtime::cache_path() const {
  return impl_->cache_path;
}

}  // namespace moejit
