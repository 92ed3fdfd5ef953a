#include "tests/support/reference.hpp"

#include <algorithm>
#include <stdexcept>
#include <thread>

namespace moejit::test {
namespace {

// The stored tensors decoded once, with the indexing formulas of SPEC.md.
struct DecodedProblem {
  const ProjectionSpec& spec;
  std::vector<double> x, w, a, b, bias;

  double weight(int e, int c, int o) const {  // Wd_e[c, o]
    const std::int64_t E = e, K = spec.in_features, N = spec.out_features;
    return spec.layout == WeightLayout::out_in ? w[(E * N + o) * K + c] : w[(E * K + c) * N + o];
  }
  double lora_a(int e, int j, int c) const {  // A_e[j, c]
    return a[(static_cast<std::int64_t>(e) * spec.rank + j) * spec.in_features + c];
  }
  double lora_b(int e, int o, int j) const {  // B_e[o, j]
    const std::int64_t E = spec.experts, N = spec.out_features, r = spec.rank;
    switch (spec.b_storage) {
      case BStorage::peft:
        return b[o * r * E + j * E + e];
      case BStorage::expert_major:
        return b[o * E * r + e * r + j];
      case BStorage::stacked:
        return b[(e * N + o) * r + j];
    }
    throw std::logic_error("unknown B storage");
  }
};

// y = x*Wd_e + s*((x*A_e^T)*B_e^T) + bias_e for grouped rows [begin, end).
void forward_rows(const DecodedProblem& p, const Routing& routing, double scale, std::int64_t begin,
                  std::int64_t end, std::vector<double>& y) {
  const ProjectionSpec& s = p.spec;
  const int K = s.in_features, N = s.out_features, r = s.rank;
  std::vector<double> xa(r);
  for (std::int64_t i = begin; i < end; ++i) {
    const int e = static_cast<int>(routing.sorted_expert_idxs[i]);
    const std::int64_t slot = routing.sorted_scattered_idxs[i];
    const double* x = &p.x[(s.grouped_in ? i : slot / s.top_k) * K];
    double* out = &y[(s.grouped_out ? i : slot) * N];
    for (int j = 0; j < r; ++j) {
      xa[j] = 0;
      for (int c = 0; c < K; ++c) xa[j] += x[c] * p.lora_a(e, j, c);
    }
    for (int o = 0; o < N; ++o) {
      double base = 0, lora = 0;
      for (int c = 0; c < K; ++c) base += x[c] * p.weight(e, c, o);
      for (int j = 0; j < r; ++j) lora += xa[j] * p.lora_b(e, o, j);
      out[o] =
          base + scale * lora + (s.has_bias ? p.bias[static_cast<std::int64_t>(e) * N + o] : 0);
    }
  }
}

}  // namespace

std::vector<double> reference_forward(const ProjectionSpec& spec, const ForwardInputs& in,
                                      int threads) {
  if (spec.weights != WeightFormat::bf16 && spec.weights != WeightFormat::fp16)
    throw std::invalid_argument("reference_forward: only bf16/fp16 base weights are supported");
  const DecodedProblem p{spec,
                         in.x.to_double(),
                         in.w.to_double(),
                         in.a.to_double(),
                         in.b.to_double(),
                         in.bias.to_double()};
  const std::int64_t rows = in.routing.rows();
  std::vector<double> y(static_cast<std::size_t>(rows) * spec.out_features);
  const std::int64_t parts = std::max<std::int64_t>(1, std::min<std::int64_t>(threads, rows));
  {
    std::vector<std::jthread> workers;  // joined at the end of this scope, before y is returned
    for (std::int64_t t = 0; t < parts; ++t) {
      workers.emplace_back([&, t] {
        forward_rows(p, in.routing, in.scale, rows * t / parts, rows * (t + 1) / parts, y);
      });
    }
  }
  return y;
}

}  // namespace moejit::test
