#include "tests/gpu/backward_accuracy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "tests/support/compare.hpp"

namespace moejit::test {
namespace {

// Coordinates of a flat element index, for messages.
using Locator = std::function<std::string(std::size_t)>;

Locator dx_locator(const ProjectionSpec& s) {
  return [K = std::size_t(s.in_features), grouped = s.grouped_in](std::size_t i) {
    return fmt::format("{} {}, col {}", grouped ? "grouped row" : "token", i / K, i % K);
  };
}

Locator da_locator(const ProjectionSpec& s) {  // [E*r, K]
  return [K = std::size_t(s.in_features), r = std::size_t(s.rank)](std::size_t i) {
    return fmt::format("expert {}, rank {}, col {}", i / K / r, i / K % r, i % K);
  };
}

// The inverse of b_storage_index: expert, output feature and rank index of a flat index.
Locator db_locator(const ProjectionSpec& s) {
  return [s](std::size_t i) {
    const std::size_t E = s.experts, N = s.out_features, r = s.rank;
    std::size_t e = 0, o = 0, j = 0;
    switch (s.b_storage) {
      case BStorage::peft:  // [N, r, E]
        o = i / (r * E), j = i / E % r, e = i % E;
        break;
      case BStorage::expert_major:  // [N, E, r]
        o = i / (E * r), e = i / r % E, j = i % r;
        break;
      case BStorage::stacked:  // [E, N, r]
        e = i / (N * r), o = i / r % N, j = i % r;
        break;
    }
    return fmt::format("expert {}, out {}, rank {} ({} storage)", e, o, j, to_string(s.b_storage));
  };
}

std::string describe_element(const char* name, const std::vector<double>& ref,
                             const HostTensor& out, std::size_t i, const Locator& where) {
  return fmt::format("{}[{}] ({}): got {:.6g}, want {:.6g}", name, i, where(i), out.at(i), ref[i]);
}

// Finite everywhere (poison is NaN, so this also finds unwritten elements) and within `bound`.
std::string tensor_mismatch(const char* name, const std::vector<double>& ref, const HostTensor& out,
                            const Locator& where, double bound) {
  if (ref.size() != out.size())
    return fmt::format("{}: {} elements, reference {}\n", name, out.size(), ref.size());
  if (const std::int64_t bad = first_non_finite(out); bad >= 0)
    return fmt::format("{}: not finite (unwritten poison or overflow): {}\n", name,
                       describe_element(name, ref, out, std::size_t(bad), where));
  const double error = relative_frobenius_error(ref, out);
  if (error <= bound) return {};
  double mean_square = 0;
  std::size_t worst = 0, first_bad = ref.size();
  for (std::size_t i = 0; i < ref.size(); ++i) mean_square += ref[i] * ref[i];
  const double rms = std::sqrt(mean_square / std::max<double>(1, ref.size()));
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double diff = std::abs(out.at(i) - ref[i]);
    if (diff > std::abs(out.at(worst) - ref[worst])) worst = i;
    if (first_bad == ref.size() && diff > bound * std::max(rms, std::abs(ref[i]))) first_bad = i;
  }
  std::string why = fmt::format("{}: relative Frobenius error {:.3e} > bound {:.0e}; worst {}",
                                name, error, bound, describe_element(name, ref, out, worst, where));
  if (first_bad < ref.size())
    why += fmt::format("; first off by more than bound x max(|want|, rms {:.3g}): {}", rms,
                       describe_element(name, ref, out, first_bad, where));
  return why + "\n";
}

// SPEC.md: an expert with no rows gets zeros, exactly.
std::string empty_expert_mismatch(const ProjectionSpec& s, const Routing& routing,
                                  const Gradients& gpu) {
  const std::size_t K = s.in_features, N = s.out_features, r = s.rank;
  for (int e = 0; e < s.experts; ++e) {
    if (routing.rows_of(e) != 0) continue;
    for (std::size_t i = e * r * K; i < (e + 1) * r * K; ++i)
      if (gpu.da.at(i) != 0)
        return fmt::format("dA: expert {} has no rows but dA[{}] ({}) = {:.6g}, expected 0\n", e, i,
                           da_locator(s)(i), gpu.da.at(i));
    for (std::size_t o = 0; o < N; ++o)
      for (std::size_t j = 0; j < r; ++j)
        if (const auto i = std::size_t(b_storage_index(s, e, int(o), int(j))); gpu.db.at(i) != 0)
          return fmt::format("dB: expert {} has no rows but dB[{}] ({}) = {:.6g}, expected 0\n", e,
                             i, db_locator(s)(i), gpu.db.at(i));
  }
  return {};
}

std::string first_difference(const char* name, const HostTensor& a, const HostTensor& b) {
  const auto [pa, pb] = std::mismatch(a.bytes().begin(), a.bytes().end(), b.bytes().begin());
  if (pa == a.bytes().end()) return {};
  const std::size_t i = std::size_t(pa - a.bytes().begin()) / size_of(a.dtype());
  return fmt::format("{}: not deterministic: element {} is {:.9g} in run 1, {:.9g} in run 2\n",
                     name, i, a.at(i), b.at(i));
}

}  // namespace

double gradient_tolerance(DType act, DType stored) {
  return std::max(forward_tolerance(act), stored == DType::fp32 ? 0.0 : forward_tolerance(stored));
}

std::string gradient_mismatch(const ProjectionSpec& spec, const Routing& routing,
                              const BackwardReference& ref, const Gradients& gpu) {
  std::string why =
      tensor_mismatch("dX", ref.dx, gpu.dx, dx_locator(spec), forward_tolerance(spec.act));
  const double lora_bound = gradient_tolerance(spec.act, spec.lora);
  why += tensor_mismatch("dA", ref.da, gpu.da, da_locator(spec), lora_bound);
  why += tensor_mismatch("dB", ref.db, gpu.db, db_locator(spec), lora_bound);
  if (gpu.da.size() == ref.da.size() && gpu.db.size() == ref.db.size())
    why += empty_expert_mismatch(spec, routing, gpu);
  return why;
}

std::string saved_xa_mismatch(const ProjectionSpec& spec, const BackwardReference& reference,
                              const HostTensor& xa) {
  const auto where = [r = std::size_t(spec.rank)](std::size_t i) {
    return fmt::format("grouped row {}, rank {}", i / r, i % r);
  };
  return tensor_mismatch("forward's save_xa (x*A^T)", reference.xa, xa, where,
                         forward_tolerance(spec.act));
}

std::string determinism_mismatch(const Gradients& first, const Gradients& second) {
  return first_difference("dX", first.dx, second.dx) + first_difference("dA", first.da, second.da) +
         first_difference("dB", first.db, second.db);
}

}  // namespace moejit::test
