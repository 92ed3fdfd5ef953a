#include "tests/support/host_tensor.hpp"

#include <cstring>

#include "tests/support/half.hpp"

namespace moejit::test {

HostTensor::HostTensor(DType dtype, std::size_t count)
    : dtype_(dtype), count_(count), bytes_(count * size_of(dtype)) {}

double HostTensor::at(std::size_t i) const {
  if (dtype_ == DType::fp32) {
    float v;
    std::memcpy(&v, bytes_.data() + i * 4, 4);
    return v;
  }
  std::uint16_t bits;
  std::memcpy(&bits, bytes_.data() + i * 2, 2);
  return dtype_ == DType::bf16 ? bf16_to_float(bits) : fp16_to_float(bits);
}

void HostTensor::set(std::size_t i, float value) {
  if (dtype_ == DType::fp32) {
    std::memcpy(bytes_.data() + i * 4, &value, 4);
    return;
  }
  const std::uint16_t bits = dtype_ == DType::bf16 ? float_to_bf16(value) : float_to_fp16(value);
  std::memcpy(bytes_.data() + i * 2, &bits, 2);
}

std::vector<double> HostTensor::to_double() const {
  std::vector<double> out(count_);
  for (std::size_t i = 0; i < count_; ++i) out[i] = at(i);
  return out;
}

HostTensor random_tensor(DType dtype, std::size_t count, double scale, Rng& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  HostTensor out(dtype, count);
  for (std::size_t i = 0; i < count; ++i) {
    do {
      out.set(i, static_cast<float>(uniform(rng) * scale));
    } while (out.at(i) == 0.0);
  }
  return out;
}

}  // namespace moejit::test
