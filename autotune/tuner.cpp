#include "autotune/tuner.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "autotune/launch.hpp"
#include "autotune/result_check.hpp"
#include "autotune/time_floor.hpp"
#include "autotune/tuning_problem.hpp"
#include "compiler/error.hpp"
#include "compiler/kernel_view.hpp"
#include "compiler/source.hpp"
#include "templates/moejit/params.h"

namespace moejit {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Accumulator registers per thread of the main tile plus the x*A^T tile: beyond ~160 fp32 values
// per thread the kernel spills on every target, so such configs are not worth compiling.
int accumulator_registers(const ProjectionSpec& spec, const TileConfig& c) {
  const int mf = c.block_m / c.warps_m / 16, nf = c.block_n / c.warps_n / 8;
  const int xa_chunks = (spec.rank + 15) / 16 * 2;
  const int xa_per_warp = (xa_chunks + c.warps_n - 1) / c.warps_n;
  return 4 * mf * (nf + xa_per_warp);
}

// Dynamic shared memory a config may take without a device to ask: the smallest opt-in limit of
// its target (227 KB on Hopper, 99 KB on sm_86/sm_89), less static memory.
int untuned_smem_limit(const std::string& arch) {
  return (arch == "sm_90a" ? 227 : 99) * 1024 - 1024;
}

// A candidate's module, loaded, and its launch handle.
struct LoadedCandidate {
  cuda::Module module;
  KernelHandle handle;
};

// Elements of each result compared: 32 MB of 16-bit values, the first rows of y (or all of dA/dB).
constexpr std::size_t kCheckedElements = std::size_t{1} << 24;

// The reference config (a candidate, or compiled into result.reference) and its result on the
// tuning problem, which every faster candidate must reproduce up to rounding (configs differ only
// in tiling and summation order).
struct Reference {
  CompiledCandidate* candidate = nullptr;  // null when the reference cannot run here: no checks
  std::vector<float> values;
};

constexpr int kPlayoffRounds = 7;

// The median of a candidate's launch times (the upper one of an even count).
double median_ms(std::vector<float> times) {
  std::ranges::sort(times);
  return times[times.size() / 2];
}

// Times playoff_finalists in kPlayoffRounds interleaved rounds, so a clock change during the
// playoff touches them all alike. Returns the finalist with the lowest median that also passes
// `passes_check` (the winner already has; one that fails it is marked pruned and counted in
// result.mismatched); sets each finalist's time_ms to that median.
// `time_once(handle)` launches once (the first launch of each finalist is its warm-up) and
// returns the launch's time in ms.
template <class Load, class TimeOnce, class Check>
CompiledCandidate* playoff(CompiledCandidate& winner, std::vector<CompiledCandidate>& candidates,
                           const Load& load, const TimeOnce& time_once, const Check& passes_check) {
  std::vector<CompiledCandidate*> finalists = playoff_finalists(candidates, winner);
  if (finalists.size() < 2) return &winner;
  std::vector<LoadedCandidate> loaded;
  for (const CompiledCandidate* c : finalists) {
    loaded.push_back(load(*c));
    time_once(loaded.back().handle);
  }
  std::vector<std::vector<float>> times(finalists.size());
  for (int round = 0; round < kPlayoffRounds; ++round)
    for (std::size_t i = 0; i < finalists.size(); ++i)
      times[i].push_back(time_once(loaded[i].handle));
  std::vector<std::size_t> ranking(finalists.size());
  for (std::size_t i = 0; i < finalists.size(); ++i) {
    finalists[i]->time_ms = median_ms(std::move(times[i]));
    ranking[i] = i;
  }
  std::ranges::stable_sort(ranking, {}, [&](std::size_t i) { return finalists[i]->time_ms; });
  for (const std::size_t i : ranking)
    if (finalists[i] == &winner || passes_check(*finalists[i], loaded[i])) return finalists[i];
  return &winner;
}

// Throws Error when the reference's own result is not finite: that shape needs a look, not a
// tune.
template <class Load>
Reference reference_result(const ProjectionSpec& spec, const cuda::DeviceInfo& device,
                           const std::string& key, const TuningProblem& problem, CUstream stream,
                           const Load& load, TuneResult& result) {
  const TileConfig config = reference_config(spec, device.arch());
  Reference out;
  for (CompiledCandidate& c : result.candidates)
    if (c.config == config && c.pruned.empty()) out.candidate = &c;
  if (!out.candidate && result.reference && result.reference->pruned.empty())
    out.candidate = &*result.reference;
  if (!out.candidate) return out;
  out.values = problem.run_and_read(load(*out.candidate).handle, stream, kCheckedElements);
  if (!std::all_of(out.values.begin(), out.values.end(), [](float v) { return std::isfinite(v); }))
    throw Error(
        fmt::format("autotune: the reference config {} gives non-finite results for {} "
                    "(key {})",
                    config.name(), spec.describe(), key));
  return out;
}

}  // namespace

bool wgmma_supported(const ProjectionSpec& spec, const std::string& arch) {
  if (arch != "sm_90a" || family_of(spec.op) != KernelFamily::gemm) return false;
  const GemmView v = gemm_view(spec);
  return v.a_dtype == spec.act && spec.rank <= 128;
}

namespace {

int padded_rank(const ProjectionSpec& spec) {
  return (spec.rank + 15) / 16 * 16;
}

// lora_grad configs (templates/moejit/lora_grad.cuh): warps_m splits the ranks, one 16-rank slice
// per warp up to r = 128, and warps_n each stage's rows. Each warp holds
// 4 * (block_m / warps_m / 16) * (block_n / 8) accumulators: at most 128.
std::optional<TileConfig> lora_grad_config(const ProjectionSpec& spec, int block_n, int block_k,
                                           int warps_n, int stages) {
  const int warps_m = padded_rank(spec) <= 128 ? padded_rank(spec) / 16 : 4;
  const TileConfig c{grad_block_m(spec.rank, warps_m), block_n, block_k, warps_m, warps_n, stages};
  if (warps_m * warps_n > 8 || !grad_config_problem(spec, c).empty() ||
      4 * (c.block_m / warps_m / 16) * (block_n / 8) > 128)
    return std::nullopt;
  return c;
}

// block_n 256 and 4 stages are left out: in a sweep of every preset's ops (bench/NOTES.md v10)
// the best config without them was within 2.3% of the best with them, and they took two thirds
// of the compile time. So are 64-row stages on one row warp, which won nothing there either and
// hold up to 32 gathered row indices per thread (some spill).
std::vector<TileConfig> lora_grad_candidates(const ProjectionSpec& spec) {
  std::vector<TileConfig> out;
  for (int warps_n : {1, 2, 4})
    for (int block_n : {64, 128})
      for (int block_k : {32, 64})
        for (int stages : {2, 3})
          if (warps_n > 1 || block_k == 32)
            if (const auto c = lora_grad_config(spec, block_n, block_k, warps_n, stages))
              out.push_back(*c);
  return out;
}

// Rows split over 4 warps of 64-row stages at small ranks (two stages: more CTAs per SM beat a
// deeper pipeline, bench/NOTES.md v10); more ranks take the warps.
TileConfig lora_grad_default(const ProjectionSpec& spec) {
  const int rp = padded_rank(spec);
  const auto c = rp <= 32    ? lora_grad_config(spec, 128, 64, 4, 2)
                 : rp <= 64  ? lora_grad_config(spec, 128, 32, 2, 3)
                 : rp <= 128 ? lora_grad_config(spec, 128, 32, 1, 3)
                             : lora_grad_config(spec, 64, 32, 1, rp <= 192 ? 3 : 2);
  if (!c) throw Error(fmt::format("no lora_grad default config for rank {}", spec.rank));
  return *c;
}

}  // namespace

bool is_tuned_op(OpKind op) {
  const KernelFamily f = family_of(op);
  return f == KernelFamily::gemm || f == KernelFamily::lora_grad;
}

std::vector<TileConfig> candidate_configs(const ProjectionSpec& spec, const std::string& arch) {
  if (family_of(spec.op) == KernelFamily::lora_grad) return lora_grad_candidates(spec);
  if (!is_tuned_op(spec.op)) return {TileConfig{}};
  struct Shape {
    int bm, bn, wm, wn;
  };
  constexpr Shape kShapes[] = {{64, 64, 2, 2},   {64, 128, 2, 2},  {128, 64, 2, 2},
                               {128, 128, 2, 2}, {128, 128, 2, 4}, {128, 128, 4, 2},
                               {64, 256, 1, 4},  {128, 256, 2, 4}, {256, 128, 4, 2}};
  std::vector<TileConfig> out;
  const bool quantized = is_quantized(spec.weights);
  auto add_wgmma = [&] {
    for (int bm : {64, 128})
      for (int bn : {128, 256})
        for (int stages : {3, 4, 5})
          out.push_back(TileConfig{bm, bn, 64, bm / 16, 1, stages, true});
  };
  auto add_tma = [&] {
    const std::vector<TileConfig> tma = tma_candidates(spec, arch);
    out.insert(out.end(), tma.begin(), tma.end());
  };
  if (wgmma_supported(spec, arch) && rs_serves(spec)) {
    // nf4 and int8 on Hopper: the register-operand kernel, measured 1.7-2.5x (nf4) and 2.1-2.9x
    // (int8) faster forward+backward than the mma.sync default on every preset projection
    // (bench/NOTES.md, v6 and v7), and the reference.
    out = rs_candidates(spec, arch);
    out.push_back(reference_config(spec, arch));
    return out;
  }
  if (wgmma_supported(spec, arch) && !quantized) {
    // Hopper with 16-bit weights: every tuned forward and dX of the v5b H100 run picked a TMA
    // tile (bench/results), so the other tiles are not worth their compile time there.
    add_tma();
    // Large ranks: no 128-row TMA tile fits the shared memory, and the wgmma tiles compete.
    if (std::ranges::none_of(out, [](const TileConfig& c) { return c.block_m == 128; }))
      add_wgmma();
    // The reference is timed with the others, so tuning never stores a slower config than it.
    if (const TileConfig reference = reference_config(spec, arch);
        std::ranges::find(out, reference) == out.end())
      out.push_back(reference);
    return out;
  }
  for (const Shape& s : kShapes)
    for (int bk : {32, 64})
      for (int stages : {2, 3, 4}) {
        const TileConfig c{s.bm, s.bn, bk, s.wm, s.wn, stages};
        if (accumulator_registers(spec, c) <= 160) out.push_back(c);
      }
  if (wgmma_supported(spec, arch)) {
    add_wgmma();
    add_tma();
  }
  return out;
}

namespace {

// A TMA tile worth compiling for `spec`: within the untuned shared-memory limit, and block_n 256
// only up to r = 64 (above, its accumulators and x * A^T spill).
bool tma_tile_serves(const ProjectionSpec& spec, const TileConfig& c, const std::string& arch) {
  return (c.block_n < 256 || padded_rank(spec) <= 64) &&
         dynamic_smem_bytes(spec, c) <= untuned_smem_limit(arch);
}

}  // namespace

std::vector<TileConfig> rs_candidates(const ProjectionSpec& spec, const std::string& arch) {
  if (!wgmma_supported(spec, arch) || !rs_serves(spec)) return {};
  // 256-row tiles halve the decoding per product against 128 but hold only 3-4 stages, 192-row
  // tiles 4-5 and 128-row tiles up to 7, to cover the loads' latency. The first four won
  // the tuning runs of the 2026-11-24 H100 measurements (bench/NOTES.md, v6); the last fits r = 64.
  std::vector<TileConfig> out;
  for (const auto& [bm, stages] : {std::pair{256, 4}, {256, 3}, {192, 4}, {128, 6}, {128, 4}}) {
    const TileConfig c{.block_m = bm,
                       .block_n = 128,
                       .block_k = 64,
                       .warps_m = 8,
                       .warps_n = 1,
                       .stages = stages,
                       .wgmma = true,
                       .tma = true,
                       .rs = true};
    // Beyond kRsLoraWgmmaMaxCells the LoRA term runs on mma.sync, whose registers spill: a
    // pinned config only.
    if (bm * padded_rank(spec) > kRsLoraWgmmaMaxCells) continue;
    if (dynamic_smem_bytes(spec, c) <= untuned_smem_limit(arch)) out.push_back(c);
  }
  return out;
}

std::vector<TileConfig> tma_candidates(const ProjectionSpec& spec, const std::string& arch) {
  // Quantized weights: the TMA kernel decoding them in its accumulating warpgroups (v5c) was
  // measured slower than the mma.sync default (bench/NOTES.md); only a pinned config reaches it.
  if (!wgmma_supported(spec, arch) || is_quantized(spec.weights)) return {};
  std::vector<TileConfig> out;
  for (int bm : {128, 64})
    for (int bn : {256, 128}) {
      for (int stages : {3, 4, 5, 6}) {
        const TileConfig c{bm, bn, 64, bm / 16, 1, stages, true, true};
        if (tma_tile_serves(spec, c, arch)) out.push_back(c);
      }
    }
  // No cluster tiles (_c2): they halve the weight bytes from L2 but were slower in every timed
  // case (bench/NOTES.md, v5e) and never won a tuning run; they cost compile time. Pinned only.
  return out;
}

TileConfig default_config(const ProjectionSpec& spec, const std::string& arch) {
  // Hopper with 16-bit weights: the TMA tile that tuning picked most often in the v5b H100 run,
  // else the first narrower or shallower one that serves (tma_tile_serves; r = 64 needs block_n
  // 128). Where no 128-row tile fits (r > 128) the reference serves.
  if (const std::vector<TileConfig> rs = rs_candidates(spec, arch); !rs.empty()) return rs.front();
  if (wgmma_supported(spec, arch) && !is_quantized(spec.weights))
    for (const TileConfig c : {TileConfig{128, 256, 64, 8, 1, 4, true, true},
                               TileConfig{128, 256, 64, 8, 1, 3, true, true},
                               TileConfig{128, 128, 64, 8, 1, 4, true, true},
                               TileConfig{128, 128, 64, 8, 1, 3, true, true}})
      if (tma_tile_serves(spec, c, arch)) return c;
  return reference_config(spec, arch);
}

TileConfig reference_config(const ProjectionSpec& spec, const std::string& arch) {
  if (family_of(spec.op) == KernelFamily::lora_grad) return lora_grad_default(spec);
  if (!is_tuned_op(spec.op)) return TileConfig{};
  auto fits = [&](const TileConfig& c) {
    return dynamic_smem_bytes(spec, c) <= untuned_smem_limit(arch);
  };
  // Quantized weights are decoded by the warps that also run the math: tuning on the H100 picks
  // mma.sync tiles with 8 warps for them (bench/NOTES.md), so the default does too.
  const bool quantized = is_quantized(spec.weights);
  if (quantized && fits(TileConfig{128, 128, 32, 4, 2, 2}))
    return TileConfig{128, 128, 32, 4, 2, 2};
  if (wgmma_supported(spec, arch))
    for (const TileConfig c :
         {TileConfig{128, 128, 64, 8, 1, 4, true}, TileConfig{128, 128, 64, 8, 1, 3, true},
          TileConfig{64, 128, 64, 4, 1, 3, true}})
      if (fits(c)) return c;
  // 128x128 tiles with a 4-stage pipeline suit every Ampere/Ada/Hopper part (69 KB of shared
  // memory at r <= 16); large ranks move to 8 warps so the x*A^T tile is split four ways, and
  // shallower pipelines or narrower tiles keep the shared memory within the limit.
  for (const TileConfig c : {TileConfig{128, 128, 32, 2, 2, 4}, TileConfig{128, 128, 32, 2, 4, 3},
                             TileConfig{128, 128, 32, 2, 4, 2}, TileConfig{64, 128, 32, 1, 4, 3},
                             TileConfig{64, 128, 32, 1, 4, 2}, TileConfig{64, 64, 32, 1, 4, 2}})
    if (accumulator_registers(spec, c) <= 160 && fits(c)) return c;
  return TileConfig{64, 64, 32, 1, 4, 2};
}

std::vector<CompiledCandidate> compile_candidates(const ProjectionSpec& spec,
                                                  const std::vector<TileConfig>& configs,
                                                  const std::string& arch, int smem_limit,
                                                  const std::string& key, int threads) {
  std::vector<CompiledCandidate> out(configs.size());
  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto worker = [&] {
    for (std::size_t i = next++; i < configs.size(); i = next++) {
      try {
        const KernelSource src = render_kernel_source(spec, configs[i]);
        CompiledCandidate& c = out[i];
        c.config = configs[i];
        c.dynamic_smem = src.dynamic_smem;
        c.kernel = compile({src.source, src.name_expression, arch, key});
        const int smem = c.dynamic_smem + c.kernel.report.static_smem;
        if (smem_limit > 0 && smem > smem_limit) {
          c.pruned = fmt::format("shared memory {} B > device limit {} B", smem, smem_limit);
        } else if (c.kernel.report.spills()) {
          c.pruned = fmt::format("ptxas spills ({} B stores, {} B loads)",
                                 c.kernel.report.spill_stores, c.kernel.report.spill_loads);
        }
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
    }
  };
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min<int>(threads, static_cast<int>(configs.size()));
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  }
  if (failure) std::rethrow_exception(failure);
  return out;
}

std::vector<CompiledCandidate*> playoff_finalists(std::vector<CompiledCandidate>& candidates,
                                                  const CompiledCandidate& winner) {
  CompiledCandidate* first = nullptr;
  std::vector<CompiledCandidate*> others;
  for (CompiledCandidate& c : candidates) {
    if (&c == &winner)
      first = &c;
    else if (c.pruned.empty() && c.time_ms > 0 && c.time_ms <= winner.time_ms * kPlayoffMargin)
      others.push_back(&c);
  }
  std::ranges::stable_sort(others, {}, &CompiledCandidate::time_ms);
  // The winner first, even where another's time ties with its.
  std::vector<CompiledCandidate*> finalists;
  if (first) finalists.push_back(first);
  for (CompiledCandidate* c : others)
    if (finalists.size() < kPlayoffFinalists) finalists.push_back(c);
  return finalists;
}

TuneResult tune(const ProjectionSpec& spec, std::int64_t tokens, const cuda::DeviceInfo& device,
                const std::string& key, std::vector<CompiledCandidate> precompiled) {
  TuneResult result;
  auto start = Clock::now();
  result.candidates = !precompiled.empty()
                          ? std::move(precompiled)
                          : compile_candidates(spec, candidate_configs(spec, device.arch()),
                                               device.arch(), device.smem_optin_bytes, key);
  result.compiled = static_cast<int>(result.candidates.size());
  // The reference checks the winner's result; compiled here when it is not a candidate (rare:
  // candidate_configs offers it where it can). Without it, no check.
  if (const TileConfig reference = reference_config(spec, device.arch()); std::ranges::none_of(
          result.candidates, [&](const CompiledCandidate& c) { return c.config == reference; })) {
    try {
      result.reference =
          compile_candidates(spec, {reference}, device.arch(), device.smem_optin_bytes, key, 1)[0];
      ++result.compiled;
    } catch (const CompileError&) {
    }
  }
  result.compile_seconds = seconds_since(start);

  start = Clock::now();
  const TuningProblem problem(spec, tokens);
  // Timed in the order of their floors, so once the best time is at or below the next floor, no
  // candidate left can win.
  const TensorPeak peak =
      tensor_peak(device.cc_major, device.cc_minor, device.sm_count, device.clock_khz);
  std::vector<std::pair<double, CompiledCandidate*>> order;
  for (CompiledCandidate& c : result.candidates) {
    if (!c.pruned.empty()) {
      ++result.pruned;
      continue;
    }
    order.emplace_back(time_floor_ms(spec, c.config, problem.expert_offsets(), peak), &c);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  cuda::Stream stream;
  cuda::Event before, after;
  auto load = [&](const CompiledCandidate& c) {
    LoadedCandidate loaded{cuda::Module(c.kernel.cubin), {}};
    loaded.handle =
        load_kernel(loaded.module, c.kernel.lowered_name, spec, c.config, device.sm_count);
    return loaded;
  };
  const DType result_dtype = family_of(spec.op) == KernelFamily::gemm ? spec.act : spec.lora;
  const Reference reference =
      reference_result(spec, device, key, problem, stream.get(), load, result);
  // Median of up to 5 launches after a warm-up; one launch when that is already 1.5x the best.
  auto time_once = [&](const KernelHandle& handle) {
    before.record(stream.get());
    problem.launch(handle, stream.get());
    after.record(stream.get());
    return after.elapsed_since(before);
  };
  auto time_candidate = [&](CompiledCandidate& c, const LoadedCandidate& loaded, double best) {
    problem.launch(loaded.handle, stream.get());
    std::vector<float> times;
    for (int rep = 0; rep < 5; ++rep) {
      times.push_back(time_once(loaded.handle));
      if (rep == 0 && times[0] > 1.5 * best) break;
    }
    c.time_ms = median_ms(std::move(times));
    ++result.timed;
  };
  double best = 1e30;
  CompiledCandidate* winner = nullptr;
  auto passes_check = [&](CompiledCandidate& c, const LoadedCandidate& loaded) {
    if (!reference.candidate) return true;
    const std::string difference =
        result_difference(problem.run_and_read(loaded.handle, stream.get(), kCheckedElements),
                          reference.values, result_dtype);
    if (difference.empty()) return true;
    c.pruned = "its result differs from the reference config's: " + difference;
    ++result.mismatched;
    return false;
  };
  for (const auto& [floor_ms, candidate] : order) {
    if (floor_ms >= best) {  // `best` is always a checked result's time
      result.cannot_win = static_cast<int>(order.size()) - result.timed;
      break;
    }
    CompiledCandidate& c = *candidate;
    const LoadedCandidate loaded = load(c);
    time_candidate(c, loaded, best);
    if (c.time_ms >= best) continue;
    // Only a candidate that would win is checked: a kernel wrong for this shape never wins.
    if (!passes_check(c, loaded)) continue;
    best = c.time_ms;
    winner = &c;
  }
  // Not for dA and dB: the step runs them beside dX on the few SMs it leaves free, so their time
  // alone on the whole GPU is a loose proxy, and the playoff's sharper one picked a dB config that
  // made olmoe down's nf4 step 2.5% slower (bench/NOTES.md, v21).
  if (winner && family_of(spec.op) == KernelFamily::gemm)
    winner = playoff(*winner, result.candidates, load, time_once, passes_check);
  if (!winner && reference.candidate) {  // every candidate that would win differed: the default
    winner = reference.candidate;
    time_candidate(*winner, load(*winner), 1e30);
  }
  stream.synchronize();
  if (!winner)
    throw Error(
        fmt::format("autotune: no candidate of {} for {} was both kept and right (key {}; "
                    "{} pruned before timing, {} with results that differ)",
                    result.compiled, spec.describe(), key, result.pruned, result.mismatched));
  result.best = *winner;
  result.timing_seconds = seconds_since(start);
  return result;
}

}  // namespace moejit
