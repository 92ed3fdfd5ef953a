#pragma once
// Launching a compiled moejit kernel: grid, block, shared-memory opt-in and parameter block.
#include <cstdint>

#include "autotune/cuda_driver.hpp"
#include "compiler/problem.hpp"
#include "compiler/tile_config.hpp"
#include "templates/moejit/params.h"

namespace moejit {

// A kernel function ready to launch, with the dynamic shared memory it was configured for.
struct KernelHandle {
  CUfunction function = nullptr;
  TileConfig config;
  int dynamic_smem = 0;
};

// Raises the function's dynamic shared-memory limit to what `config` needs (once per function).
void prepare_function(CUfunction function, int dynamic_smem);

// Launches the forward kernel over `params.rows` grouped rows; does nothing when rows == 0.
void launch_forward(const KernelHandle& kernel, const ProjectionSpec& spec,
                    const ForwardParams& params, CUstream stream);

}  // namespace moejit
