#include "tests/gpu/gpu_env.hpp"

namespace moejit::test {

std::string no_gpu_reason() {
  std::string why;
  if (!cuda::try_api(&why)) return why.empty() ? "no CUDA driver" : why;
  return cuda::device_count() == 0 ? "no CUDA device" : "";
}

void synchronize_context() {
  cuda::check(cuda::api().cuCtxSynchronize(), "cuCtxSynchronize");
}

TestContext::TestContext(int ordinal) {
  CUcontext current = nullptr;
  cuda::check(cuda::api().cuCtxGetCurrent(&current), "cuCtxGetCurrent");
  had_current_ = current != nullptr;
  guard_.emplace(ordinal);
}

TestContext::~TestContext() {
  guard_.reset();
  if (!had_current_) cuda::api().cuCtxSetCurrent(nullptr);  // no throw from a destructor
}

}  // namespace moejit::test
