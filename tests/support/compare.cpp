#include "tests/support/compare.hpp"

#include <fmt/format.h>
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

std::string forward_mismatch(const std::vector<double>& reference, const HostTensor& output,
                             std::int64_t cols, DType act) {
  if (const std::int64_t bad = first_non_finite(output); bad >= 0)
    return fmt::format("output element {} (row {}, col {}) is {} (unwritten or overflowed)", bad,
                       bad / cols, bad % cols, output.at(static_cast<std::size_t>(bad)));
  const double error = relative_frobenius_error(reference, output);
  if (error > forward_tolerance(act))
    return fmt::format("relative Frobenius error {:.3e} > {:.0e} ({} act)", error,
                       forward_tolerance(act), to_string(act));
  return {};
}

}  // namespace moejit::test
