#pragma once
// How many SMs Runtime::backward leaves to the LoRA gradients beside dX
// (RuntimeOptions::grad_b_sms).
#include <cstdint>

#include "autotune/launch.hpp"
#include "compiler/problem.hpp"

namespace moejit {

// SMs the backward keeps dX's persistent grid off, for the LoRA gradients to run on beside it (0:
// none, they run after dX). `spec` is the forward's, `dx` the kernel dX runs, `with_grad_a` whether
// dA runs beside dX too (the register-operand kernel's prologue writes its u first), `option`
// RuntimeOptions::grad_b_sms (-1: from the shape, 0: none, else that many). At most half of dX's
// resident CTAs, in whole clusters; 0 where dX is not persistent.
int grad_b_reserved_sms(const ProjectionSpec& spec, std::int64_t tokens, const KernelHandle& dx,
                        bool with_grad_a, int option);

}  // namespace moejit
