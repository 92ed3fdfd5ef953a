#include "autotune/launch.hpp"

#include <fmt/format.h>
#include <climits>

#include "compiler/error.hpp"
#include "compiler/source.hpp"

namespace moejit {

void prepare_function(CUfunction function, int dynamic_smem) {
  cuda::check(cuda::api().cuFuncSetAttribute(
                  function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, dynamic_smem),
              "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
}

void launch_kernel(const KernelHandle& kernel, const ProjectionSpec& spec, const void* params,
                   std::int64_t rows, CUstream stream) {
  if (rows <= 0) return;
  const LaunchDims dims = launch_dims(spec, kernel.config, rows);
  if (dims.grid_x > INT_MAX)
    throw InvalidArgument("rows", std::to_string(rows), "a grid of at most 2^31-1 CTAs");
  void* args[] = {const_cast<void*>(params)};
  const CUresult result = cuda::api().cuLaunchKernel(
      kernel.function, static_cast<unsigned>(dims.grid_x), static_cast<unsigned>(dims.grid_y), 1,
      static_cast<unsigned>(dims.threads), 1, 1, static_cast<unsigned>(kernel.dynamic_smem), stream,
      args, nullptr);
  if (result != CUDA_SUCCESS)  // the name is formatted only on failure: launches are the hot path
    cuda::check(result, fmt::format("cuLaunchKernel({})", to_string(spec.op)).c_str());
}

}  // namespace moejit
