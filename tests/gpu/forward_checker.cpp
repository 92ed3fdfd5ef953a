#include "tests/gpu/forward_checker.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>

#include "autotune/tuner.hpp"
#include "tests/support/compare.hpp"

namespace moejit::test {
namespace {

int host_threads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// Compiles one kernel; failures become data so that one bad case does not hide the others.
void compile_into(const ForwardCase& c, const cuda::DeviceInfo& device, CompiledCandidate& out,
                  std::string& error) {
  try {
    out = compile_candidates(c.spec, {c.config}, device.arch(), device.smem_optin_bytes,
                             c.describe(), 1)
              .at(0);
  } catch (const std::exception& e) {
    error = e.what();
  }
}

}  // namespace

std::string kernel_key(const ForwardCase& c) {
  return c.spec.describe() + " config=" + c.config.name();
}

KernelSet load_kernels(const std::vector<ForwardCase>& cases, const cuda::DeviceInfo& device) {
  std::map<std::string, const ForwardCase*> distinct;
  for (const ForwardCase& c : cases) distinct.emplace(kernel_key(c), &c);
  std::vector<const ForwardCase*> todo;
  for (const auto& [key, c] : distinct) todo.push_back(c);
  std::vector<CompiledCandidate> compiled(todo.size());
  std::vector<std::string> errors(todo.size());
  std::atomic<std::size_t> next{0};
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < host_threads(); ++t)
      pool.emplace_back([&] {
        for (std::size_t i = next++; i < todo.size(); i = next++)
          compile_into(*todo[i], device, compiled[i], errors[i]);
      });
  }
  KernelSet out;
  for (std::size_t i = 0; i < todo.size(); ++i) {
    LoadedKernel& k = out[kernel_key(*todo[i])];
    k.compile_error = errors[i];
    if (!errors[i].empty()) continue;
    const CompiledCandidate& c = compiled[i];
    // compile_candidates marks both reasons as "pruned"; only shared memory prevents a launch.
    if (c.pruned.find("spill") != std::string::npos) {
      k.spills = c.pruned;
    } else if (!c.pruned.empty()) {
      k.too_big = c.pruned;
      continue;
    }
    k.module = cuda::Module(c.kernel.cubin);
    k.handle =
        load_kernel(k.module, c.kernel.lowered_name, todo[i]->spec, c.config, device.sm_count);
  }
  return out;
}

HostTensor run_forward(const KernelHandle& kernel, const ProjectionSpec& spec,
                       DeviceProblem& problem, const cuda::Stream& stream) {
  problem.poison_output();
  launch_forward(kernel, spec, problem.params(), stream.get());
  stream.synchronize();
  return problem.download_output();
}

std::string check_case(const ForwardCase& c, const KernelHandle& kernel,
                       const cuda::Stream& stream) {
  const ForwardInputs inputs = make_inputs(c);
  const std::vector<double> reference = reference_forward(c.spec, inputs, host_threads());
  DeviceProblem problem(c.spec, inputs);
  const HostTensor y = run_forward(kernel, c.spec, problem, stream);
  return forward_mismatch(reference, y, c.spec.out_features, c.spec.act);
}

}  // namespace moejit::test
