#include "autotune/launch.hpp"

#include <climits>

#include "compiler/error.hpp"
#include "compiler/source.hpp"

namespace moejit {

void prepare_function(CUfunction function, int dynamic_smem) {
  cuda::check(cuda::api().cuFuncSetAttribute(
                  function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, dynamic_smem),
              "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
}

void launch_forward(const KernelHandle& kernel, const ProjectionSpec& spec,
                    const ForwardParams& params, CUstream stream) {
  if (params.rows <= 0) return;
  const std::int64_t grid = grid_size(spec, kernel.config, params.rows);
  if (grid > INT_MAX)
    throw InvalidArgument("rows", std::to_string(params.rows), "a grid of at most 2^31-1 CTAs");
  void* args[] = {const_cast<ForwardParams*>(&params)};
  cuda::check(cuda::api().cuLaunchKernel(kernel.function, static_cast<unsigned>(grid), 1, 1,
                                         static_cast<unsigned>(kernel.config.threads()), 1, 1,
                                         static_cast<unsigned>(kernel.dynamic_smem), stream, args,
                                         nullptr),
              "cuLaunchKernel(moe_lora_forward)");
}

}  // namespace moejit
