#pragma once
// Quantized base weights on the device, in the arrays bitsandbytes produces (packed nf4 bytes or
// int8 cb, absmax or qabsmax/absmax2/code2/offset, code, row_stats), handed to the Runtime through
// the w* fields of ForwardArgs and BackwardArgs. Needs a current CUDA context for its whole life.
#include "autotune/cuda_driver.hpp"
#include "runtime/runtime.hpp"
#include "tests/gpu/quant_gemm_cases.hpp"

namespace moejit::test {

class DeviceQuantWeights {
 public:
  explicit DeviceQuantWeights(const QuantizedBase& base);

  // Points w and the quantization fields of `args` at these arrays (the ones the format has;
  // the others null).
  void apply(ForwardArgs& args) const { apply_to(args); }
  void apply(BackwardArgs& args) const { apply_to(args); }

 private:
  template <class Args>
  void apply_to(Args& args) const {
    args.w = weights_.ptr();
    args.w_absmax = absmax_.ptr();
    args.w_code = static_cast<const float*>(code_.ptr());
    args.w_absmax2 = static_cast<const float*>(absmax2_.ptr());
    args.w_code2 = static_cast<const float*>(code2_.ptr());
    args.w_offset = offset_;
  }

  cuda::DeviceBuffer weights_, absmax_, code_, absmax2_, code2_;
  float offset_ = 0.0f;
};

}  // namespace moejit::test
