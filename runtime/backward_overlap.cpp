#include "runtime/backward_overlap.hpp"

#include <algorithm>

namespace moejit {

// dX is tensor-bound and dB memory-bound (it reads dy once), and so is dA where it runs beside dX
// too, so they overlap where the reserved SMs move their bytes in about the time the others take
// for dX's products: reserved / (sm_count - reserved) = (bytes / per-SM rate) / (dX FLOPs /
// per-SM rate).
int grad_b_reserved_sms(const ProjectionSpec& spec, std::int64_t tokens, const KernelHandle& dx,
                        bool with_grad_a, int option) {
  // Only a persistent grid (the TMA and register-operand kernels) leaves SMs free.
  if (option == 0 || !dx.config.tma || dx.resident_ctas < 2) return 0;
  int reserved = option;
  if (option < 0) {
    const double rows = static_cast<double>(tokens) * spec.top_k;
    const double act = static_cast<double>(size_of(spec.act)), u = spec.rank * 4.0;
    const double bytes = rows * (spec.out_features * act + u) +
                         (with_grad_a ? rows * (spec.in_features * act + u) : 0.0);
    const double dx_flops = 2.0 * rows * spec.out_features * spec.in_features;
    // Per-SM rates of the H100 runs (bench/NOTES.md, v14b): dX's products on the TMA kernel and
    // on the register-operand one, and the gradients' reads on a few SMs.
    const double dx_flops_per_sm = dx.config.rs ? 2.6e12 : 3.6e12, bytes_per_sm = 30.0e9;
    const double grads_time = bytes / bytes_per_sm, dx_time = dx_flops / dx_flops_per_sm;
    reserved = static_cast<int>(grads_time / (grads_time + dx_time) * dx.sm_count + 0.5);
  }
  reserved = std::min(reserved, dx.resident_ctas / 2);          // dX keeps at least half
  return reserved / dx.config.cluster_m * dx.config.cluster_m;  // whole clusters
}

}  // namespace moejit
