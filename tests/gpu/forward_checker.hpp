#pragma once
// Compiles the kernels of a set of forward cases once each and in parallel, then runs one case at a
// time on the device and compares its output with the float64 reference.
#include <map>
#include <string>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "autotune/launch.hpp"
#include "tests/gpu/device_problem.hpp"
#include "tests/support/forward_case.hpp"

namespace moejit::test {

struct LoadedKernel {
  cuda::Module module;
  KernelHandle handle;
  std::string compile_error;  // non-empty: the kernel failed to compile (a bug)
  std::string too_big;        // non-empty: needs more shared memory than the device has
  std::string spills;         // non-empty: ptxas spilled (still correct, so still run)
};

// One entry per distinct (spec, config) of `cases`, keyed by kernel_key().
using KernelSet = std::map<std::string, LoadedKernel>;
std::string kernel_key(const ForwardCase& c);

// Compiles on all host cores, then loads the modules into the current context.
KernelSet load_kernels(const std::vector<ForwardCase>& cases, const cuda::DeviceInfo& device);

// Poisons the output, launches on `stream`, waits and downloads the output.
HostTensor run_forward(const KernelHandle& kernel, const ProjectionSpec& spec,
                       DeviceProblem& problem, const cuda::Stream& stream);

// Generates the case's inputs, runs it and compares with the reference: empty when the output
// meets SPEC.md "Accuracy", otherwise why not.
std::string check_case(const ForwardCase& c, const KernelHandle& kernel,
                       const cuda::Stream& stream);

}  // namespace moejit::test
