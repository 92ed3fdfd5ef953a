#include "tests/gpu/gpu_env.hpp"

#include <algorithm>
#include <cstdlib>
#include <string_view>

namespace moejit::test {

std::string no_gpu_reason() {
  std::string why;
  if (!cuda::try_api(&why)) return why.empty() ? "no CUDA driver" : why;
  return cuda::device_count() == 0 ? "no CUDA device" : "";
}

bool quick_mode() {
  const char* value = std::getenv("MOEJIT_TEST_QUICK");
  return value != nullptr && *value != '\0' && std::string_view(value) != "0";
}

int sampled_count(int count) {
  return quick_mode() ? std::max(6, count / 5) : count;
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
