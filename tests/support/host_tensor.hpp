#pragma once
// A tensor as the bytes it is stored in (bf16, fp16 or fp32), so that the GPU and the float64
// reference read exactly the same values.
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "compiler/problem.hpp"

namespace moejit::test {

using Rng = std::mt19937_64;

class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DType dtype, std::size_t count);

  DType dtype() const { return dtype_; }
  std::size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }
  std::vector<std::uint8_t>& bytes() { return bytes_; }

  // Element i as stored (exactly representable in a double).
  double at(std::size_t i) const;
  // Rounds `value` to the dtype (nearest even) and stores it.
  void set(std::size_t i, float value);
  std::vector<double> to_double() const;

 private:
  DType dtype_ = DType::bf16;
  std::size_t count_ = 0;
  std::vector<std::uint8_t> bytes_;
};

// `count` values drawn from U(-scale, scale) and rounded to `dtype`; a value that rounds to zero is
// drawn again, so no element is zero.
HostTensor random_tensor(DType dtype, std::size_t count, double scale, Rng& rng);

}  // namespace moejit::test
