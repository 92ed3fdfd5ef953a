#pragma once
// Before a tuned config is stored, its result is compared with the reference config's
// (reference_config in tuner.hpp) on the same problem: configs differ only in tiling and summation
// order, so a larger difference means a kernel that is wrong for this shape, and tuning must not
// pick it however fast it is.
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/problem.hpp"

namespace moejit {

// Raw little-endian elements of `dtype` as floats (bf16 and fp16 widened exactly).
std::vector<float> widen(const std::vector<unsigned char>& bytes, DType dtype);

// Empty when every element of `got` is finite and within rounding of `want` (two units of
// `dtype`'s spacing at the element's size, plus an eighth of one at the largest |want|, which
// covers cancellation; fp32 sums get 2^-14 as their unit); otherwise the count of differing
// elements and the first of them.
std::string result_difference(const std::vector<float>& got, const std::vector<float>& want,
                              DType dtype);

}  // namespace moejit
