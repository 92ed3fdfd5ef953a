#include "autotune/launch.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>

#include "compiler/error.hpp"
#include "compiler/kernel_view.hpp"
#include "compiler/source.hpp"

namespace moejit {
namespace {

// A 3-D map over a [depth][rows][inner] tensor of 16-bit elements, read in boxes of box_inner x
// box_rows x 1 with the 128-byte swizzle; out-of-range elements read as zeros.
TensorMapStorage encode_3d(const char* tensor, const void* address, CUtensorMapDataType type,
                           std::uint64_t inner, std::uint64_t rows, std::uint64_t depth,
                           std::uint32_t box_inner, std::uint32_t box_rows) {
  static_assert(sizeof(TensorMapStorage) == sizeof(CUtensorMap));
  if (address == nullptr || reinterpret_cast<std::uintptr_t>(address) % 16 != 0)
    throw InvalidArgument(tensor, fmt::format("{}", address),
                          "a non-null address aligned to 16 bytes (TMA)");
  const cuuint64_t dims[3] = {inner, rows, depth};
  const cuuint64_t strides[2] = {inner * 2, inner * rows * 2};  // bytes, dimensions 1 and 2
  const cuuint32_t box[3] = {box_inner, box_rows, 1};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  CUtensorMap map;
  const CUresult result = cuda::api().cuTensorMapEncodeTiled(
      &map, type, 3, const_cast<void*>(address), dims, strides, box, element_strides,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS)
    cuda::check(result, fmt::format("cuTensorMapEncodeTiled({} at {}, dims {}x{}x{}, box {}x{}x1)",
                                    tensor, address, inner, rows, depth, box_inner, box_rows)
                            .c_str());
  TensorMapStorage out;
  std::memcpy(&out, &map, sizeof(map));
  return out;
}

}  // namespace

KernelHandle load_kernel(const cuda::Module& module, const std::string& lowered_name,
                         const ProjectionSpec& spec, const TileConfig& config, int sm_count) {
  KernelHandle kernel{module.function(lowered_name), config, dynamic_smem_bytes(spec, config),
                      sm_count};
  if (config.rs) {
    kernel.prologue_view = rs_prologue(spec);
    kernel.prologue = module.function(kRsPrologueName);
    kernel.prologue_smem =
        dynamic_smem_bytes(kernel.prologue_view.spec, kernel.prologue_view.config);
    cuda::check(
        cuda::api().cuFuncSetAttribute(
            kernel.prologue, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, kernel.prologue_smem),
        "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, rs prologue)");
  }
  prepare_kernel(kernel);
  return kernel;
}

void prepare_kernel(KernelHandle& kernel) {
  cuda::check(
      cuda::api().cuFuncSetAttribute(
          kernel.function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, kernel.dynamic_smem),
      "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
  kernel.resident_ctas = kernel.sm_count;
  if (kernel.config.cluster_m == 1 || kernel.sm_count <= 0) return;
  CUlaunchConfig launch{};
  launch.gridDimX =
      static_cast<unsigned>(kernel.sm_count / kernel.config.cluster_m * kernel.config.cluster_m);
  launch.gridDimY = launch.gridDimZ = 1;
  launch.blockDimX = static_cast<unsigned>(kernel.config.threads());
  launch.blockDimY = launch.blockDimZ = 1;
  launch.sharedMemBytes = static_cast<unsigned>(kernel.dynamic_smem);
  int clusters = 0;  // the kernel's cluster shape is compiled in (__cluster_dims__)
  cuda::check(cuda::api().cuOccupancyMaxActiveClusters(&clusters, kernel.function, &launch),
              "cuOccupancyMaxActiveClusters");
  if (clusters <= 0)
    throw InvalidArgument("tile config", kernel.config.name(),
                          "a cluster shape this device can hold at least once");
  kernel.resident_ctas = std::min(kernel.sm_count, clusters * kernel.config.cluster_m);
}

ForwardTensorMaps encode_tensor_maps(const ProjectionSpec& spec, const TileConfig& config,
                                     const ForwardParams& params) {
  const GemmView v = gemm_view(spec);
  const auto type =
      spec.act == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const std::uint64_t e = spec.experts, k = v.k, n = v.n, r = spec.rank;
  const auto rp = static_cast<std::uint32_t>((spec.rank + 15) / 16 * 16);
  ForwardTensorMaps maps{};
  // Quantized weights are decoded by the kernel, not read by TMA. (Without y, only x * A^T is
  // wanted, but the kernel still runs the base product of column tile 0: see its header.)
  if (!is_quantized(spec.weights)) {
    // Out_in tiles in a cluster: each CTA loads block_n / cluster_m rows of the shared tile.
    maps.w = v.in_out ? encode_3d("w", params.w, type, n, k, e, 64, 64)
                      : encode_3d("w", params.w, type, k, n, e, 64,
                                  static_cast<std::uint32_t>(config.block_n / config.cluster_m));
  }
  if (!config.rs) maps.a = encode_3d("lora_a", params.lora_a, type, k, r, e, 64, rp);
  // Grouped x rows are contiguous: the kernel loads them by TMA as well.
  if (reads_grouped_x(spec, config))
    maps.x = encode_3d("x", params.x, type, k, static_cast<std::uint64_t>(params.rows), 1, 64,
                       static_cast<std::uint32_t>(config.block_m));
  return maps;
}

namespace {

void launch_or_throw(CUfunction function, const LaunchDims& dims, int smem, CUstream stream,
                     void** args, const ProjectionSpec& spec, const char* what) {
  const CUresult result = cuda::api().cuLaunchKernel(
      function, static_cast<unsigned>(dims.grid_x), static_cast<unsigned>(dims.grid_y), 1,
      static_cast<unsigned>(dims.threads), 1, 1, static_cast<unsigned>(smem), stream, args,
      nullptr);
  if (result != CUDA_SUCCESS)  // the name is formatted only on failure: launches are the hot path
    cuda::check(result, fmt::format("cuLaunchKernel({}{})", to_string(spec.op), what).c_str());
}

// The register-operand kernel: x * A^T by its prologue, then the GEMM reading it.
void launch_rs(const KernelHandle& kernel, const ProjectionSpec& spec, const ForwardParams& params,
               std::int64_t rows, CUstream stream, cuda::Event* before_main) {
  std::optional<cuda::StreamScratch> scratch;
  ForwardParams prologue_params = params;
  prologue_params.y = nullptr;
  if (params.xa_out == nullptr) {
    scratch.emplace(static_cast<std::size_t>(rows) * spec.rank * sizeof(float), stream,
                    "cuMemAllocAsync(rs x*A^T)");
    prologue_params.xa_out = static_cast<float*>(scratch->ptr());
  }
  // A gathered input: the prologue copies its rows in grouped order for the main kernel's TMA.
  // params.rows: the rows the x tensor map of the main kernel spans.
  std::optional<cuda::StreamScratch> x_grouped;
  if (const std::size_t bytes = rs_grouped_x_bytes(spec, params.rows);
      params.y != nullptr && bytes > 0) {
    x_grouped.emplace(bytes, stream, "cuMemAllocAsync(rs grouped x)");
    prologue_params.x_grouped = x_grouped->ptr();
  }
  const RsPrologue& prologue = kernel.prologue_view;
  void* prologue_args[] = {&prologue_params};
  launch_or_throw(kernel.prologue, launch_dims(prologue.spec, prologue.config, rows),
                  kernel.prologue_smem, stream, prologue_args, spec, ", rs prologue");
  if (params.y == nullptr) {  // x * A^T was all that was asked for
    if (before_main) before_main->record(stream);
    return;
  }
  ForwardParams p = params;
  p.xa_in = prologue_params.xa_out;
  p.xa_out = nullptr;
  if (x_grouped) p.x = x_grouped->ptr();
  p.x_grouped = nullptr;
  ForwardTensorMaps maps = encode_tensor_maps(spec, kernel.config, p);
  if (before_main) before_main->record(stream);
  void* args[] = {&p, &maps};
  launch_or_throw(kernel.function, launch_dims(spec, kernel.config, rows, kernel.resident_ctas),
                  kernel.dynamic_smem, stream, args, spec, "");
}

}  // namespace

std::size_t rs_grouped_x_bytes(const ProjectionSpec& spec, std::int64_t rows) {
  if (!rs_serves(spec) || gemm_view(spec).grouped_in || rows <= 0) return 0;
  return static_cast<std::size_t>(rows) * gemm_view(spec).k * size_of(spec.act);
}

void launch_kernel(const KernelHandle& kernel, const ProjectionSpec& spec, const void* params,
                   std::int64_t rows, CUstream stream, cuda::Event* before_main) {
  if (rows <= 0) {
    if (before_main) before_main->record(stream);
    return;
  }
  const LaunchDims dims = launch_dims(spec, kernel.config, rows, kernel.resident_ctas);
  if (dims.grid_x > INT_MAX)
    throw InvalidArgument("rows", std::to_string(rows), "a grid of at most 2^31-1 CTAs");
  if (kernel.config.tma && rows > INT_MAX)
    throw InvalidArgument("rows", std::to_string(rows),
                          "at most 2^31-1 routed rows (the TMA kernel's 32-bit x row indices)");
  if (kernel.config.rs) {
    launch_rs(kernel, spec, *static_cast<const ForwardParams*>(params), rows, stream, before_main);
    return;
  }
  ForwardTensorMaps maps;
  void* args[] = {const_cast<void*>(params), &maps};
  if (kernel.config.tma)
    maps = encode_tensor_maps(spec, kernel.config, *static_cast<const ForwardParams*>(params));
  if (before_main) before_main->record(stream);
  launch_or_throw(kernel.function, dims, kernel.dynamic_smem, stream, args, spec, "");
}

}  // namespace moejit
