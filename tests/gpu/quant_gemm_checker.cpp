#include "tests/gpu/quant_gemm_checker.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <optional>
#include <thread>

#include "compiler/error.hpp"
#include "tests/gpu/backward_accuracy.hpp"
#include "tests/gpu/backward_problem.hpp"
#include "tests/gpu/device_problem.hpp"
#include "tests/gpu/gpu_env.hpp"
#include "tests/gpu/quant_gemm_device.hpp"
#include "tests/support/backward_reference.hpp"
#include "tests/support/compare.hpp"

namespace moejit::test {
namespace {

// The expert of each row of a tensor whose rows are grouped rows (grouped) or slots (not).
std::vector<int> slot_experts(const Routing& routing, bool grouped) {
  std::vector<int> experts(routing.sorted_expert_idxs.size());
  for (std::size_t i = 0; i < experts.size(); ++i) {
    const auto row = grouped ? i : static_cast<std::size_t>(routing.sorted_scattered_idxs[i]);
    experts[row] = static_cast<int>(routing.sorted_expert_idxs[i]);
  }
  return experts;
}

// dX rows: grouped rows, or tokens (whose expert is known only for k = 1).
std::vector<int> dx_row_experts(const ProjectionSpec& s, const Routing& routing) {
  if (s.grouped_in || s.top_k == 1) return slot_experts(routing, s.grouped_in);
  return std::vector<int>(static_cast<std::size_t>(routing.tokens), -1);
}

std::vector<int> da_row_experts(const ProjectionSpec& s) {  // [E*r, K]
  std::vector<int> experts(std::size_t(s.experts) * s.rank);
  for (std::size_t i = 0; i < experts.size(); ++i) experts[i] = static_cast<int>(i / s.rank);
  return experts;
}

std::string element(const char* name, const std::vector<double>& ref, const HostTensor& out,
                    std::size_t i, std::int64_t cols, const std::vector<int>& row_experts) {
  const std::size_t row = i / cols;
  const int expert = row < row_experts.size() ? row_experts[row] : -1;
  return fmt::format("{}[row {}, col {}{}]: got {:.6g}, want {:.6g}", name, row, i % cols,
                     expert >= 0 ? fmt::format(", expert {}", expert) : "", out.at(i), ref[i]);
}

// Y against its reference: finite, within the act dtype's bound; the worst element and the
// pattern of the bad ones otherwise.
std::string output_mismatch(const char* name, const std::vector<double>& ref, const HostTensor& out,
                            std::int64_t cols, double bound, const std::vector<int>& row_experts) {
  if (ref.size() != out.size())
    return fmt::format("{}: {} elements, reference {}\n", name, out.size(), ref.size());
  const std::int64_t bad = first_non_finite(out);
  const double error = bad >= 0 ? NAN : relative_frobenius_error(ref, out);
  if (bad < 0 && error <= bound) return {};
  std::string why;
  if (bad >= 0) {
    why = fmt::format("{}: not finite (unwritten poison or overflow): {}", name,
                      element(name, ref, out, std::size_t(bad), cols, row_experts));
  } else {
    std::size_t worst = 0;
    for (std::size_t i = 0; i < ref.size(); ++i)
      if (std::abs(out.at(i) - ref[i]) > std::abs(out.at(worst) - ref[worst])) worst = i;
    why = fmt::format("{}: relative Frobenius error {:.3e} > bound {:.0e}; worst {}", name, error,
                      bound, element(name, ref, out, worst, cols, row_experts));
  }
  return why + "\n" + error_pattern(ref, out, cols, bound, row_experts);
}

// The pattern lines for the gradients that fail their bound (gradient_mismatch names them).
std::string gradient_patterns(const ProjectionSpec& s, const Routing& routing,
                              const BackwardReference& ref, const Gradients& g) {
  const auto fails = [](const std::vector<double>& want, const HostTensor& got, double bound) {
    return want.size() == got.size() &&
           (first_non_finite(got) >= 0 || relative_frobenius_error(want, got) > bound);
  };
  std::string out;
  if (const double bound = forward_tolerance(s.act); fails(ref.dx, g.dx, bound))
    out += "dX " + error_pattern(ref.dx, g.dx, s.in_features, bound, dx_row_experts(s, routing));
  if (const double bound = gradient_tolerance(s.act, s.lora); fails(ref.da, g.da, bound))
    out += "dA " + error_pattern(ref.da, g.da, s.in_features, bound, da_row_experts(s));
  return out;
}

std::string bitwise_difference(const char* name, const HostTensor& first,
                               const HostTensor& second) {
  const auto [a, b] =
      std::mismatch(first.bytes().begin(), first.bytes().end(), second.bytes().begin());
  if (a == first.bytes().end()) return {};
  const std::size_t i = std::size_t(a - first.bytes().begin()) / size_of(first.dtype());
  return fmt::format("{}: not deterministic: element {} is {:.9g} in run 1, {:.9g} in run 2\n",
                     name, i, first.at(i), second.at(i));
}

struct ForwardRun {
  HostTensor y, xa;
};

ForwardRun run_forward(Runtime& runtime, const QuantCase& c, const ForwardArgs& args,
                       DeviceProblem& problem, const BackwardProblem& backward,
                       const cuda::Stream& stream) {
  problem.poison_output();
  runtime.forward(c.spec, args, stream.get());
  stream.synchronize();
  return {problem.download_output(), c.save_xa ? backward.download_xa() : HostTensor()};
}

Gradients run_backward(Runtime& runtime, const QuantCase& c, const BackwardArgs& args,
                       BackwardProblem& problem, const cuda::Stream& stream) {
  problem.poison();
  runtime.backward(c.spec, args, stream.get());
  stream.synchronize();
  return problem.download();
}

// What Runtime::backward launches for the case, in order, for messages.
std::string backward_kernels(const ProjectionSpec& s, bool save_xa) {
  return fmt::format("pack_b, {}backward_dx, {}grad_a, grad_b",
                     save_xa ? "" : "the forward kernel recomputing x*A^T, ",
                     !s.grouped_in && s.top_k > 1 ? "reduce_slots, " : "");
}

// Runs `step`; a CudaError leaving it gets the stage and what the case had shown before it. A
// kernel fault is asynchronous: it surfaces at the next synchronize or module load, of this or
// of a concurrent worker, so the stage brackets the faulting launch rather than naming it.
template <class Step>
auto at_stage(const std::string& stage, const std::string& checks_before, Step step) {
  try {
    return step();
  } catch (const CudaError& e) {
    throw CudaError(fmt::format("{} [surfaced during {}; earlier checks of this case: {}]",
                                e.what(), stage,
                                checks_before.empty() ? "none failed" : checks_before));
  }
}

void check_on_worker(const std::vector<QuantCase>& cases, const std::filesystem::path& cache,
                     std::atomic<std::size_t>& next, std::atomic<bool>& broken,
                     std::vector<std::string>& results) {
  std::optional<TestContext> context;  // first: outlives the runtime and the stream
  std::optional<Runtime> runtime, runtime_after_dx;
  std::optional<cuda::Stream> stream;
  std::string setup_error;
  try {
    context.emplace();
    RuntimeOptions options;
    options.cache_path = cache;
    options.tune = false;
    runtime.emplace(options);
    options.grad_b_sms = 0;
    runtime_after_dx.emplace(options);
    stream.emplace();
  } catch (const std::exception& e) {  // no exception may leave a thread
    setup_error = e.what();
  }
  for (std::size_t i = next++; i < cases.size() && !broken; i = next++) {
    if (!setup_error.empty()) {
      results[i] =
          fmt::format("worker setup failed (context, Runtime or stream): {}\n", setup_error);
      continue;
    }
    try {
      results[i] = check_quant_case(*runtime, cases[i], *stream, 1, &*runtime_after_dx);
    } catch (const CudaError& e) {
      broken = true;
      results[i] =
          fmt::format("CUDA error (this or a concurrent case broke the context): {}\n", e.what());
    } catch (const std::exception& e) {
      results[i] = fmt::format("exception: {}\n", e.what());
    }
  }
}

}  // namespace

std::string error_pattern(const std::vector<double>& ref, const HostTensor& out, std::int64_t cols,
                          double bound, const std::vector<int>& row_experts) {
  double mean_square = 0;
  for (const double v : ref) mean_square += v * v;
  const double rms = std::sqrt(mean_square / std::max<double>(1, ref.size()));
  std::int64_t bad = 0, non_finite = 0, row_min = -1, row_max = -1, col_min = cols, col_max = -1;
  std::map<int, std::int64_t> per_expert;
  for (std::size_t i = 0; i < ref.size() && i < out.size(); ++i) {
    const double got = out.at(i);
    const bool finite = std::isfinite(got);
    if (finite && std::abs(got - ref[i]) <= bound * std::max(rms, std::abs(ref[i]))) continue;
    ++bad;
    non_finite += finite ? 0 : 1;
    const auto row = std::int64_t(i) / cols, col = std::int64_t(i) % cols;
    row_min = row_min < 0 ? row : row_min;
    row_max = row;
    col_min = std::min(col_min, col);
    col_max = std::max(col_max, col);
    if (std::size_t(row) < row_experts.size() && row_experts[row] >= 0)
      ++per_expert[row_experts[row]];
  }
  if (bad == 0) return {};
  std::string experts;
  for (const auto& [e, count] : per_expert)
    experts += fmt::format("{}{}: {}", experts.empty() ? "" : ", ", e, count);
  return fmt::format(
      "  pattern: {} of {} elements off by more than bound x max(|want|, rms {:.3g}) ({} not "
      "finite): rows {}..{}, cols {}..{}{}\n",
      bad, ref.size(), rms, non_finite, row_min, row_max, col_min, col_max,
      experts.empty() ? "" : fmt::format(", per expert {{{}}}", experts));
}

std::string check_quant_case(Runtime& runtime, const QuantCase& c, const cuda::Stream& stream,
                             int reference_threads, Runtime* gradients_after_dx) {
  const QuantizedBase base = make_quantized_base(c.spec, c.seed);
  const ForwardInputs inputs = make_quant_inputs(c, base);
  const HostTensor dy = make_quant_dy(c);
  const ProjectionSpec ref_spec = reference_spec(c.spec);
  const std::vector<double> y_ref = reference_forward(ref_spec, inputs, reference_threads);
  const BackwardReference grad_ref = reference_backward(ref_spec, inputs, dy, reference_threads);

  const DeviceQuantWeights weights(base);
  DeviceProblem forward(c.spec, inputs);  // its w (the 16-bit Wd) is replaced by `weights`
  BackwardProblem backward(c.spec, inputs, dy, c.save_xa);
  ForwardArgs forward_args = forward.args();
  weights.apply(forward_args);
  forward_args.save_xa = backward.forward_args().save_xa;
  BackwardArgs backward_args = backward.args();
  weights.apply(backward_args);

  const ForwardRun first = at_stage("forward run 1", "", [&] {
    return run_forward(runtime, c, forward_args, forward, backward, stream);
  });
  const ForwardRun second = at_stage("forward run 2", "", [&] {
    return run_forward(runtime, c, forward_args, forward, backward, stream);
  });
  std::string why =
      output_mismatch("Y", y_ref, first.y, c.spec.out_features, forward_tolerance(c.spec.act),
                      slot_experts(inputs.routing, c.spec.grouped_out));
  if (c.save_xa) why += saved_xa_mismatch(ref_spec, grad_ref, first.xa);
  why += bitwise_difference("Y", first.y, second.y) +
         bitwise_difference("save_xa", first.xa, second.xa);

  const std::string backward_stage = backward_kernels(c.spec, c.save_xa);
  const Gradients g1 = at_stage("backward run 1 (" + backward_stage + ")", why, [&] {
    return run_backward(runtime, c, backward_args, backward, stream);
  });
  const Gradients g2 = at_stage("backward run 2 (" + backward_stage + ")", why, [&] {
    return run_backward(gradients_after_dx ? *gradients_after_dx : runtime, c, backward_args,
                        backward, stream);
  });
  if (const std::string grads = gradient_mismatch(ref_spec, inputs.routing, grad_ref, g1);
      !grads.empty())
    why += grads + gradient_patterns(ref_spec, inputs.routing, grad_ref, g1);
  const std::string repeat = determinism_mismatch(g1, g2);
  if (!repeat.empty() && gradients_after_dx)
    return why + "backward run 2 computed dA and dB after dX (grad_b_sms = 0): " + repeat;
  return why + repeat;
}

std::filesystem::path worker_cache(const std::filesystem::path& cache_dir, int worker) {
  return cache_dir / fmt::format("worker{}.sqlite", worker);
}

std::vector<std::string> check_quant_cases(const std::vector<QuantCase>& cases,
                                           const std::filesystem::path& cache_dir, int workers) {
  std::vector<std::string> results(cases.size(),
                                   "not run: a CUDA error stopped the sweep before this case\n");
  std::atomic<std::size_t> next{0};
  std::atomic<bool> broken{false};
  {
    std::vector<std::jthread> pool;  // joined at the end of this scope
    for (int w = 0; w < workers; ++w)
      pool.emplace_back(
          [&, w] { check_on_worker(cases, worker_cache(cache_dir, w), next, broken, results); });
  }
  return results;
}

}  // namespace moejit::test
