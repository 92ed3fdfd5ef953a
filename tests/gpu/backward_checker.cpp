#include "tests/gpu/backward_checker.hpp"

#include <fmt/format.h>

#include <atomic>
#include <optional>
#include <thread>

#include "compiler/error.hpp"
#include "tests/gpu/gpu_env.hpp"
#include "tests/support/forward_case.hpp"

namespace moejit::test {
namespace {

Gradients run_backward(Runtime& runtime, const ProjectionSpec& spec, BackwardProblem& problem,
                       const cuda::Stream& stream) {
  problem.poison();
  runtime.backward(spec, problem.args(), stream.get());
  stream.synchronize();
  return problem.download();
}

// One worker of check_backward_cases: takes cases until none are left or the context broke.
void check_cases_on_worker(const std::vector<BackwardCase>& cases,
                           const std::filesystem::path& cache, std::atomic<std::size_t>& next,
                           std::atomic<bool>& broken, std::vector<std::string>& results,
                           const std::optional<TileConfig>& gemm_config) {
  std::optional<TestContext> context;  // first: outlives the runtime and the stream
  std::optional<Runtime> runtime;
  std::optional<cuda::Stream> stream;
  std::string setup_error;
  try {
    context.emplace();
    RuntimeOptions options;
    options.cache_path = cache;
    options.tune = false;
    options.gemm_config = gemm_config;
    runtime.emplace(options);
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
      results[i] = check_backward_case(*runtime, cases[i], *stream, 1);
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

std::string check_backward_case(Runtime& runtime, const BackwardCase& c, const cuda::Stream& stream,
                                int reference_threads) {
  const ForwardInputs inputs = make_inputs(c.spec, c.tokens, c.routing, c.seed);
  const HostTensor dy = make_dy(c);
  const BackwardReference ref = reference_backward(c.spec, inputs, dy, reference_threads);
  BackwardProblem problem(c.spec, inputs, dy, c.save_xa);
  runtime.forward(c.spec, problem.forward_args(), stream.get());
  stream.synchronize();
  std::string why = c.save_xa ? saved_xa_mismatch(c.spec, ref, problem.download_xa()) : "";
  const Gradients first = run_backward(runtime, c.spec, problem, stream);
  const Gradients second = run_backward(runtime, c.spec, problem, stream);
  why += gradient_mismatch(c.spec, inputs.routing, ref, first);
  return why + determinism_mismatch(first, second);
}

std::vector<std::string> check_backward_cases(const std::vector<BackwardCase>& cases,
                                              const std::filesystem::path& cache_dir, int workers,
                                              const std::optional<TileConfig>& gemm_config) {
  std::vector<std::string> results(cases.size(),
                                   "not run: a CUDA error stopped the sweep before this case\n");
  std::atomic<std::size_t> next{0};
  std::atomic<bool> broken{false};
  {
    std::vector<std::jthread> pool;  // joined at the end of this scope
    for (int w = 0; w < workers; ++w)
      pool.emplace_back([&, w] {
        check_cases_on_worker(cases, cache_dir / fmt::format("worker{}.sqlite", w), next, broken,
                              results, gemm_config);
      });
  }
  return results;
}

}  // namespace moejit::test
