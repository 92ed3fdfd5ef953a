#pragma once
// The inputs of one forward call uploaded to the device, with a poisoned output buffer, in the two
// forms the code under test takes: a ForwardParams block (launch_forward) and ForwardArgs
// (Runtime::forward). Needs a current CUDA context for its whole life. A forward kernel that reads
// B packed (forward_reads_packed_b) gets it packed here, as the runtime's pack_b would.
#include <cstdint>

#include "autotune/cuda_driver.hpp"
#include "compiler/problem.hpp"
#include "runtime/runtime.hpp"
#include "templates/moejit/params.h"
#include "tests/gpu/gpu_env.hpp"
#include "tests/support/reference.hpp"

namespace moejit::test {

class DeviceProblem {
 public:
  DeviceProblem(const ProjectionSpec& spec, const ForwardInputs& inputs);

  ForwardParams params() const;
  ForwardArgs args() const;
  // Fills the output with 0xFF bytes (NaN in bf16 and fp16) and waits for it.
  void poison_output();
  // The [T*k, N] output after the caller synchronized its stream.
  HostTensor download_output() const;
  std::int64_t rows() const { return rows_; }

 private:
  ProjectionSpec spec_;
  std::int64_t tokens_ = 0, rows_ = 0;
  float scale_ = 1.0f;
  cuda::DeviceBuffer x_, w_, a_, b_, b_packed_, bias_, expert_idxs_, scattered_, offsets_, y_;
};

}  // namespace moejit::test
