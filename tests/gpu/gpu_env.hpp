#pragma once
// What every GPU test needs around it: a skip on machines without a GPU, and a CUDA context that
// is current for exactly the test's lifetime.
#include <optional>
#include <string>

#include "autotune/cuda_driver.hpp"

namespace moejit::test {

// Empty when a GPU is usable; otherwise the driver's reason, for GTEST_SKIP.
std::string no_gpu_reason();

// Skips the calling test, with the reason, on a machine without a usable GPU.
#define MOEJIT_SKIP_WITHOUT_GPU()                                              \
  do {                                                                         \
    if (const std::string why = ::moejit::test::no_gpu_reason(); !why.empty()) \
      GTEST_SKIP() << "needs a GPU: " << why;                                  \
  } while (0)

// MOEJIT_TEST_QUICK set (and not "0"): the sweeps run a fifth of their sampled cases, as under
// compute-sanitizer (bench/device.sh), which slows every launch many times over.
bool quick_mode();
// `count` sampled cases, or a fifth of them (at least 6) in quick mode.
int sampled_count(int count);

// Waits for all work of the current context, including the legacy-stream copies and memsets of
// DeviceBuffer, which a non-blocking Stream does not wait for by itself.
void synchronize_context();

// A cuda::ContextGuard that also leaves the thread's current context as it found it. ContextGuard
// releases the primary context it retained but leaves it current, so the next test's guard would
// adopt a released context (CUDA_ERROR_CONTEXT_IS_DESTROYED); this restores "none current".
class TestContext {
 public:
  explicit TestContext(int ordinal = 0);
  ~TestContext();
  TestContext(const TestContext&) = delete;
  TestContext& operator=(const TestContext&) = delete;
  int device() const { return guard_->device(); }

 private:
  bool had_current_ = false;
  std::optional<cuda::ContextGuard> guard_;
};

}  // namespace moejit::test
