#pragma once
// Launching a compiled moejit kernel: grid, block, shared-memory opt-in and parameter block.
#include <cstdint>
#include <string>

#include "autotune/cuda_driver.hpp"
#include "compiler/problem.hpp"
#include "compiler/source.hpp"
#include "compiler/tile_config.hpp"
#include "templates/moejit/params.h"

namespace moejit {

// A kernel function ready to launch, with the dynamic shared memory it was configured for.
struct KernelHandle {
  CUfunction function = nullptr;
  TileConfig config;
  int dynamic_smem = 0;
  int sm_count = 0;  // the device's
  // CTAs of this kernel the device holds at once; caps the grid of the persistent kernels (0: no
  // cap). Set by prepare_kernel.
  int resident_ctas = 0;
  // The register-operand kernel's prologue (x * A^T for ForwardParams::xa_in, compiler/source.hpp)
  // from the same module, its dynamic shared memory and the spec and config its grid follows;
  // null for every other kernel.
  CUfunction prologue = nullptr;
  int prologue_smem = 0;
  RsPrologue prologue_view;
};

// The kernel `lowered_name` of `module`, compiled for (spec, config), ready to launch (with its
// prologue for a register-operand config; prepare_kernel done).
KernelHandle load_kernel(const cuda::Module& module, const std::string& lowered_name,
                         const ProjectionSpec& spec, const TileConfig& config, int sm_count);

// Raises the function's dynamic shared-memory limit to what its config needs and finds its
// resident CTAs: one per SM, or for clusters what cuOccupancyMaxActiveClusters reports (the SMs
// of a GPU processing cluster may not pair up). Once per function.
void prepare_kernel(KernelHandle& kernel);

// Launches the kernel of `spec.op` with the parameter block `params` (the struct of params.h that
// the op takes) over `rows` = T*k grouped rows; does nothing when rows == 0. A register-operand
// kernel runs its prologue first, into params.xa_out or else stream-ordered scratch, and runs
// itself only when params.y is set. `before_main`, if given, is recorded on `stream` right before
// the kernel's own grid is launched (after the prologue), also when there is none to launch
// (rows == 0, or y unset); not when an argument check throws first.
void launch_kernel(const KernelHandle& kernel, const ProjectionSpec& spec, const void* params,
                   std::int64_t rows, CUstream stream, cuda::Event* before_main = nullptr);

// The stream-ordered scratch a register-operand kernel's launch holds for its grouped copy of a
// gathered input (ForwardParams::x_grouped): rows x K of the op's GEMM in the act dtype; 0 for
// a grouped input or an op the kernel does not serve.
std::size_t rs_grouped_x_bytes(const ProjectionSpec& spec, std::int64_t rows);

// The TMA kernel's tensor maps over the weight and LoRA A-role tensors of `params` (encoded per
// launch: they hold the addresses). Throws InvalidArgument naming a tensor the TMA cannot read.
ForwardTensorMaps encode_tensor_maps(const ProjectionSpec& spec, const TileConfig& config,
                                     const ForwardParams& params);

// The GEMM ops (forward, backward_dx) over `params.rows` grouped rows.
inline void launch_forward(const KernelHandle& kernel, const ProjectionSpec& spec,
                           const ForwardParams& params, CUstream stream) {
  launch_kernel(kernel, spec, &params, params.rows, stream);
}

}  // namespace moejit
