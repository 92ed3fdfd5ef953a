#pragma once
// The inputs of one forward + backward pair uploaded to the device: the forward's (DeviceProblem),
// dY, the optional saved x*A^T, the workspace and poisoned dX, dA, dB, in the forms Runtime takes.
// Needs a current CUDA context for its whole life.
#include <cstdint>

#include "autotune/cuda_driver.hpp"
#include "runtime/runtime.hpp"
#include "tests/gpu/backward_accuracy.hpp"
#include "tests/gpu/device_problem.hpp"
#include "tests/support/reference.hpp"

namespace moejit::test {

class BackwardProblem {
 public:
  // With `save_xa`, forward_args() asks the forward to save x*A^T and args() hands it on.
  BackwardProblem(const ProjectionSpec& spec, const ForwardInputs& inputs, const HostTensor& dy,
                  bool save_xa);

  ForwardArgs forward_args() const;
  // Everything in place, with a workspace of exactly backward_workspace_bytes(spec, tokens).
  BackwardArgs args() const;
  // Fills dX, dA, dB and the workspace with 0xFF bytes (NaN in every float format) and waits.
  void poison();
  // After the caller synchronized its stream.
  Gradients download() const;
  HostTensor download_xa() const;  // [T*k, r] fp32; only with save_xa
  std::size_t workspace_bytes() const { return workspace_bytes_; }

 private:
  ProjectionSpec spec_;
  DeviceProblem forward_;
  std::int64_t tokens_ = 0;
  std::size_t workspace_bytes_ = 0;
  cuda::DeviceBuffer dy_, xa_, dx_, da_, db_, workspace_;
};

}  // namespace moejit::test
