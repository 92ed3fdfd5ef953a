#include "tests/support/compare.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace moejit::test {

double relative_frobenius_error(const std::vector<double>& reference, const HostTensor& output) {
  if (reference.size() != output.size())
    throw std::invalid_argument("relative_frobenius_error: reference has " +
                                std::to_string(reference.size()) + " elements, output " +
                                std::to_string(output.size()));
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < reference.size(); ++i) {
    const double d = output.at(i) - reference[i];
    diff += d * d;
    norm += reference[i] * reference[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

std::int64_t first_non_finite(const HostTensor& output) {
  for (std::size_t i = 0; i < output.size(); ++i)
    if (!std::isfinite(output.at(i))) return static_cast<std::int64_t>(i);
  return -1;
}

double forward_tolerance(DType act) {
  return act == DType::fp16 ? 1e-3 : 5e-3;
}

}  // namespace moejit::test
