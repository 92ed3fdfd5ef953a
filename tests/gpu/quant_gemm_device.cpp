#include "tests/gpu/quant_gemm_device.hpp"

#include "tests/gpu/gpu_env.hpp"

namespace moejit::test {
namespace {

// An absent array (empty vector) stays a null pointer.
template <class T>
cuda::DeviceBuffer upload(const std::vector<T>& values) {
  if (values.empty()) return {};
  cuda::DeviceBuffer buffer(values.size() * sizeof(T));
  buffer.upload(values);
  return buffer;
}

}  // namespace

DeviceQuantWeights::DeviceQuantWeights(const QuantizedBase& base) {
  if (base.format == WeightFormat::nf4) {
    const Nf4Quantized& q = base.nf4;
    weights_ = upload(q.packed);
    absmax_ = q.double_quant ? upload(q.qabsmax) : upload(q.absmax);
    code_ = upload(q.code);
    absmax2_ = upload(q.absmax2);
    code2_ = upload(q.code2);
    offset_ = q.offset;
  } else {
    weights_ = upload(base.int8.cb);
    absmax_ = upload(base.int8.row_stats);
  }
  synchronize_context();  // pageable uploads may still be in flight on the legacy stream
}

}  // namespace moejit::test
