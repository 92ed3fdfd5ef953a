#pragma once
// SPEC.md "Accuracy" for the backward, on the host: compares the gradients a GPU wrote with the
// float64 reference and explains every failure with the tensor, the error, the bound and an
// offending element in its coordinates (token or grouped row, expert, rank, feature).
#include <string>

#include "compiler/problem.hpp"
#include "tests/support/backward_reference.hpp"
#include "tests/support/host_tensor.hpp"
#include "tests/support/routing.hpp"

namespace moejit::test {

// dX (act dtype), dA and dB (lora dtype) as the GPU wrote them.
struct Gradients {
  HostTensor dx, da, db;
};

// The bound on the relative Frobenius error of a gradient stored in `stored` for `act`
// activations: SPEC.md's bound for the act dtype, but never below what rounding the result to
// `stored` alone costs (bf16 storage gives about 1.5e-3 on its own, above fp16 act's 1e-3).
double gradient_tolerance(DType act, DType stored);

// Why `gpu` fails the contract: a non-finite element (unwritten poison or overflow), an error above
// gradient_tolerance, or a non-zero dA/dB element of an expert without rows; one line per problem.
// Empty when it passes.
std::string gradient_mismatch(const ProjectionSpec& spec, const Routing& routing,
                              const BackwardReference& reference, const Gradients& gpu);

// The forward's save_xa ([T*k, r] fp32) against reference.xa, within the act dtype's bound.
std::string saved_xa_mismatch(const ProjectionSpec& spec, const BackwardReference& reference,
                              const HostTensor& xa);

// The first element in which two runs differ, per tensor; empty when they are bitwise identical.
std::string determinism_mismatch(const Gradients& first, const Gradients& second);

}  // namespace moejit::test
