#include "tests/support/backward_reference.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <thread>

namespace moejit::test {
namespace {

// The inputs with the indexing formulas of SPEC.md and the routing's row bookkeeping.
struct Problem {
  const ProjectionSpec& spec;
  const DoubleInputs& in;
  const std::vector<double>& dy;

  double weight(int e, int c, int o) const {  // Wd_e[c, o]
    const std::int64_t E = e, K = spec.in_features, N = spec.out_features;
    return spec.layout == WeightLayout::out_in ? in.w[(E * N + o) * K + c]
                                               : in.w[(E * K + c) * N + o];
  }
  double lora_a(int e, int j, int c) const {  // A_e[j, c]
    return in.a[(static_cast<std::int64_t>(e) * spec.rank + j) * spec.in_features + c];
  }
  double lora_b(int e, int o, int j) const { return in.b[b_storage_index(spec, e, o, j)]; }
  int expert_of(std::int64_t i) const { return static_cast<int>(in.routing.sorted_expert_idxs[i]); }
  const double* x_row(std::int64_t i) const {  // the input row of grouped row i
    const std::int64_t row = spec.grouped_in ? i : in.routing.sorted_scattered_idxs[i] / spec.top_k;
    return &in.x[row * spec.in_features];
  }
  const double* dy_row(std::int64_t i) const {  // dy of grouped row i
    const std::int64_t row = spec.grouped_out ? i : in.routing.sorted_scattered_idxs[i];
    return &dy[row * spec.out_features];
  }
  std::int64_t first_row(int e) const { return e == 0 ? 0 : in.routing.expert_offsets[e - 1]; }
  std::int64_t end_row(int e) const { return in.routing.expert_offsets[e]; }
};

void expect_size(const char* name, std::size_t actual, std::int64_t expected) {
  if (static_cast<std::int64_t>(actual) != expected)
    throw std::invalid_argument(fmt::format("reference_backward: '{}' has {} elements, expected {}",
                                            name, actual, expected));
}

void check_sizes(const ProjectionSpec& s, const DoubleInputs& in, const std::vector<double>& dy) {
  if (s.weights != WeightFormat::bf16 && s.weights != WeightFormat::fp16)
    throw std::invalid_argument("reference_backward: only bf16/fp16 base weights are supported");
  const Routing& routing = in.routing;
  if (routing.experts != s.experts || routing.top_k != s.top_k)
    throw std::invalid_argument(
        fmt::format("reference_backward: routing has E={} k={}, spec E={} k={}", routing.experts,
                    routing.top_k, s.experts, s.top_k));
  const std::int64_t rows = routing.rows(), E = s.experts, K = s.in_features, N = s.out_features,
                     r = s.rank;
  expect_size("x", in.x.size(), (s.grouped_in ? rows : routing.tokens) * K);
  expect_size("w", in.w.size(), E * N * K);
  expect_size("a", in.a.size(), E * r * K);
  expect_size("b", in.b.size(), E * N * r);
  expect_size("dy", dy.size(), rows * N);
  expect_size("sorted_expert_idxs", routing.sorted_expert_idxs.size(), rows);
  expect_size("sorted_scattered_idxs", routing.sorted_scattered_idxs.size(), rows);
  expect_size("expert_offsets", routing.expert_offsets.size(), E);
}

// Runs body(begin, end) over [0, count) split into `threads` contiguous parts.
template <class Body>
void parallel_for(std::int64_t count, int threads, const Body& body) {
  const std::int64_t parts = std::max<std::int64_t>(1, std::min<std::int64_t>(threads, count));
  std::vector<std::jthread> workers;  // joined when this function returns
  for (std::int64_t t = 0; t < parts; ++t)
    workers.emplace_back([&, t] { body(count * t / parts, count * (t + 1) / parts); });
}

// Per grouped row i of expert e: xa = x*A_e^T, dyb = dy*B_e (both [rows, r]) and
// dx = dy*Wd_e^T + s*dyb*A_e ([rows, K]).
void row_gradients(const Problem& p, std::int64_t begin, std::int64_t end, std::vector<double>& xa,
                   std::vector<double>& dyb, std::vector<double>& dx) {
  const int K = p.spec.in_features, N = p.spec.out_features, r = p.spec.rank;
  for (std::int64_t i = begin; i < end; ++i) {
    const int e = p.expert_of(i);
    const double *x = p.x_row(i), *dy = p.dy_row(i);
    for (int j = 0; j < r; ++j) {
      double sum_xa = 0, sum_dyb = 0;
      for (int c = 0; c < K; ++c) sum_xa += x[c] * p.lora_a(e, j, c);
      for (int o = 0; o < N; ++o) sum_dyb += dy[o] * p.lora_b(e, o, j);
      xa[i * r + j] = sum_xa;
      dyb[i * r + j] = sum_dyb;
    }
    for (int c = 0; c < K; ++c) {
      double base = 0, lora = 0;
      for (int o = 0; o < N; ++o) base += dy[o] * p.weight(e, c, o);
      for (int j = 0; j < r; ++j) lora += dyb[i * r + j] * p.lora_a(e, j, c);
      dx[i * K + c] = base + p.in.scale * lora;
    }
  }
}

// dX[t] = sum over j = 0..k-1 of the dx of slot t*k + j.
std::vector<double> sum_slots(const Problem& p, const std::vector<double>& dx_rows) {
  const std::int64_t K = p.spec.in_features, rows = p.in.routing.rows();
  std::vector<std::int64_t> row_of_slot(rows);
  for (std::int64_t i = 0; i < rows; ++i) row_of_slot[p.in.routing.sorted_scattered_idxs[i]] = i;
  std::vector<double> dx(static_cast<std::size_t>(p.in.routing.tokens * K), 0.0);
  for (std::int64_t slot = 0; slot < rows; ++slot)
    for (std::int64_t c = 0; c < K; ++c)
      dx[slot / p.spec.top_k * K + c] += dx_rows[row_of_slot[slot] * K + c];
  return dx;
}

// dA_e[j, c] = s * sum over rows i of e of dyb[i, j] * x_i[c], for the (e, j) pairs in range.
void grad_a(const Problem& p, const std::vector<double>& dyb, std::int64_t begin, std::int64_t end,
            std::vector<double>& da) {
  const int K = p.spec.in_features, r = p.spec.rank;
  for (std::int64_t ej = begin; ej < end; ++ej) {
    const int e = static_cast<int>(ej / r), j = static_cast<int>(ej % r);
    for (int c = 0; c < K; ++c) {
      double sum = 0;
      for (std::int64_t i = p.first_row(e); i < p.end_row(e); ++i)
        sum += dyb[i * r + j] * p.x_row(i)[c];
      da[ej * K + c] = p.in.scale * sum;
    }
  }
}

// dB_e[o, j] = s * sum over rows i of e of dy_i[o] * xa[i, j], for the (e, o) pairs in range.
void grad_b(const Problem& p, const std::vector<double>& xa, std::int64_t begin, std::int64_t end,
            std::vector<double>& db) {
  const int N = p.spec.out_features, r = p.spec.rank;
  for (std::int64_t eo = begin; eo < end; ++eo) {
    const int e = static_cast<int>(eo / N), o = static_cast<int>(eo % N);
    for (int j = 0; j < r; ++j) {
      double sum = 0;
      for (std::int64_t i = p.first_row(e); i < p.end_row(e); ++i)
        sum += p.dy_row(i)[o] * xa[i * r + j];
      db[b_storage_index(p.spec, e, o, j)] = p.in.scale * sum;
    }
  }
}

}  // namespace

std::int64_t b_storage_index(const ProjectionSpec& spec, int expert, int out, int rank_index) {
  const std::int64_t E = spec.experts, N = spec.out_features, r = spec.rank;
  const std::int64_t e = expert, o = out, j = rank_index;
  switch (spec.b_storage) {
    case BStorage::peft:
      return o * r * E + j * E + e;
    case BStorage::expert_major:
      return o * E * r + e * r + j;
    case BStorage::stacked:
      return (e * N + o) * r + j;
  }
  throw std::logic_error("unknown B storage");
}

DoubleInputs to_double(const ForwardInputs& in) {
  return DoubleInputs{in.x.to_double(), in.w.to_double(), in.a.to_double(),
                      in.b.to_double(), in.routing,       in.scale};
}

BackwardReference reference_backward(const ProjectionSpec& spec, const DoubleInputs& in,
                                     const std::vector<double>& dy, int threads) {
  check_sizes(spec, in, dy);
  const Problem p{spec, in, dy};
  const std::int64_t rows = in.routing.rows(), E = spec.experts, K = spec.in_features,
                     N = spec.out_features, r = spec.rank;
  BackwardReference out;
  out.xa.resize(rows * r);
  std::vector<double> dyb(rows * r), dx_rows(rows * K);
  parallel_for(rows, threads, [&](std::int64_t begin, std::int64_t end) {
    row_gradients(p, begin, end, out.xa, dyb, dx_rows);
  });
  out.dx = spec.grouped_in ? std::move(dx_rows) : sum_slots(p, dx_rows);
  out.da.resize(E * r * K);
  parallel_for(E * r, threads,
               [&](std::int64_t begin, std::int64_t end) { grad_a(p, dyb, begin, end, out.da); });
  out.db.resize(E * N * r);
  parallel_for(E * N, threads, [&](std::int64_t begin, std::int64_t end) {
    grad_b(p, out.xa, begin, end, out.db);
  });
  return out;
}

BackwardReference reference_backward(const ProjectionSpec& spec, const ForwardInputs& in,
                                     const HostTensor& dy, int threads) {
  return reference_backward(spec, to_double(in), dy.to_double(), threads);
}

}  // namespace moejit::test
