#include "runtime/dequantize.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "autotune/cuda_driver.hpp"
#include "compiler/error.hpp"
#include "compiler/nvrtc_compiler.hpp"

namespace moejit {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxCount = 65535;  // grid.y holds the selected experts
constexpr int kMaxGridX = 1024;   // the kernel loops over the rest

constexpr const char* kStub = R"(// moejit generated kernel: {description}
#include "moejit/dequant.cuh"
namespace moejit_cfg {{
struct DequantizeConfig {{
  using Act = {act};
  static constexpr int kFormat = {format};
  static constexpr int kBlocksize = {blocksize};
  static constexpr bool kDoubleQuant = {double_quant};
  static constexpr int kRows = {rows};
  static constexpr int kCols = {cols};
  static constexpr int kThreads = {threads};
}};
}}  // namespace moejit_cfg
)";
constexpr const char* kNameExpression = "moejit::dequantize_experts<moejit_cfg::DequantizeConfig>";

bool is_nf4(const QuantizedWeights& w) {
  return w.format == WeightFormat::nf4;
}

std::string pointer_text(const void* p) {
  return p ? fmt::format("{}", p) : "null";
}

void require_pointer(const void* p, const char* name, const char* what) {
  if (!p) throw InvalidArgument(name, "null", fmt::format("a device pointer ({})", what));
  if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0)
    throw InvalidArgument(name, pointer_text(p), "a 16-byte aligned device pointer");
}

void require_null(const void* p, const char* name, const std::string& why) {
  if (p) throw InvalidArgument(name, pointer_text(p), "null, " + why);
}

void validate_shape(const QuantizedWeights& w) {
  if (!is_nf4(w) && w.format != WeightFormat::int8_rowwise)
    throw InvalidArgument("format", std::string(to_string(w.format)),
                          "nf4 or int8_rowwise (bf16 and fp16 weights are used as stored)");
  for (auto [value, name] : {std::pair{w.experts, "experts"}, {w.rows, "rows"}, {w.cols, "cols"}})
    if (value < 1) throw InvalidArgument(name, std::to_string(value), ">= 1");
  if (!is_nf4(w)) return;
  const int bs = w.blocksize;
  if (bs < 32 || bs > 4096 || (bs & (bs - 1)) != 0)
    throw InvalidArgument("blocksize", std::to_string(bs), "a power of two in [32, 4096]");
}

void validate_arrays(const QuantizedWeights& w) {
  require_pointer(w.packed_or_cb, "packed_or_cb", is_nf4(w) ? "packed nf4 bytes" : "int8 cb");
  require_pointer(w.absmax_or_qabsmax_or_row_stats, "absmax_or_qabsmax_or_row_stats",
                  !is_nf4(w)       ? "fp32 row_stats"
                  : w.double_quant ? "uint8 qabsmax"
                                   : "fp32 absmax");
  if (!is_nf4(w)) {
    const std::string why = "int8_rowwise has no code tables";
    require_null(w.code, "code", why);
    require_null(w.absmax2, "absmax2", why);
    require_null(w.code2, "code2", why);
    return;
  }
  require_pointer(w.code, "code", "fp32[16]");
  if (w.double_quant) {
    require_pointer(w.absmax2, "absmax2", "fp32[ceil(nblocks/256)]");
    require_pointer(w.code2, "code2", "fp32[256]");
    if (!std::isfinite(w.offset))
      throw InvalidArgument("offset", fmt::format("{}", w.offset), "a finite fp32");
  } else {
    const std::string why = "since double_quant is false";
    require_null(w.absmax2, "absmax2", why);
    require_null(w.code2, "code2", why);
  }
}

// Work items per expert as the kernel counts them (eight values or one); only sizes the grid.
std::int64_t items_per_expert(const QuantizedWeights& w) {
  const std::int64_t size = std::int64_t{w.rows} * w.cols;
  const bool vector = is_nf4(w) ? size % 8 == 0 : w.cols % 8 == 0;
  return vector ? size / 8 : size;
}

const char* device_type(DType act) {
  return act == DType::bf16 ? "moejit::bf16" : "moejit::fp16";
}

// What selects a kernel within one Dequantizer (the act dtype is fixed per object); int8 kernels
// ignore the nf4 fields, so they are zeroed.
using KernelKey = std::tuple<WeightFormat, int, bool, int, int>;
KernelKey key_of(const QuantizedWeights& w) {
  return is_nf4(w) ? KernelKey{w.format, w.blocksize, w.double_quant, w.rows, w.cols}
                   : KernelKey{w.format, 0, false, w.rows, w.cols};
}

struct LoadedKernel {
  cuda::Module module;
  CUfunction function = nullptr;
};

}  // namespace

QuantizedSizes required_sizes(const QuantizedWeights& w) {
  validate_shape(w);
  const std::int64_t n = std::int64_t{w.experts} * w.rows * w.cols;
  QuantizedSizes s;
  if (!is_nf4(w)) {
    s.packed_or_cb = n;
    s.absmax_or_qabsmax_or_row_stats = std::int64_t{w.experts} * w.rows;
    return s;
  }
  const std::int64_t blocks = (n + w.blocksize - 1) / w.blocksize;
  s.packed_or_cb = (n + 1) / 2;
  s.absmax_or_qabsmax_or_row_stats = blocks;
  s.code = 16;
  if (w.double_quant) {
    s.absmax2 = (blocks + 255) / 256;
    s.code2 = 256;
  }
  return s;
}

void check_sizes(const QuantizedWeights& w, const QuantizedSizes& given) {
  const QuantizedSizes need = required_sizes(w);
  const std::tuple<const char*, std::int64_t, std::int64_t> arrays[] = {
      {"packed_or_cb", given.packed_or_cb, need.packed_or_cb},
      {"absmax_or_qabsmax_or_row_stats", given.absmax_or_qabsmax_or_row_stats,
       need.absmax_or_qabsmax_or_row_stats},
      {"code", given.code, need.code},
      {"absmax2", given.absmax2, need.absmax2},
      {"code2", given.code2, need.code2}};
  for (const auto& [name, have, want] : arrays)
    if (have != want)
      throw InvalidArgument(fmt::format("{} (elements)", name), std::to_string(have),
                            fmt::format("{} for {} E={} X={} Y={} blocksize={}{}", want,
                                        to_string(w.format), w.experts, w.rows, w.cols, w.blocksize,
                                        w.double_quant ? " double_quant" : ""));
}

void validate_dequantize(const QuantizedWeights& w, const int* device_expert_ids, int count,
                         const void* out) {
  validate_shape(w);
  validate_arrays(w);
  if (count < 0 || count > kMaxCount)
    throw InvalidArgument("count", std::to_string(count), fmt::format("in [0, {}]", kMaxCount));
  require_pointer(device_expert_ids, "device_expert_ids", "int32[count]");
  require_pointer(out, "out", "[count, rows, cols] in the act dtype");
}

CompileRequest dequantize_kernel_request(const QuantizedWeights& w, DType act,
                                         const std::string& arch) {
  validate_shape(w);
  if (act != DType::bf16 && act != DType::fp16)
    throw InvalidArgument("act", std::string(to_string(act)), "bf16 or fp16");
  const std::string description =
      is_nf4(w)
          ? fmt::format("dequantize nf4 blocksize={} double_quant={} act={} X={} Y={}", w.blocksize,
                        w.double_quant, to_string(act), w.rows, w.cols)
          : fmt::format("dequantize int8_rowwise act={} X={} Y={}", to_string(act), w.rows, w.cols);
  using fmt::arg;
  CompileRequest request;
  request.source = fmt::format(kStub, arg("description", description), arg("act", device_type(act)),
                               arg("format", static_cast<int>(w.format)),
                               arg("blocksize", is_nf4(w) ? w.blocksize : 0),
                               arg("double_quant", is_nf4(w) && w.double_quant),
                               arg("rows", w.rows), arg("cols", w.cols), arg("threads", kThreads));
  request.name_expression = kNameExpression;
  request.arch = arch;
  request.key = description;
  return request;
}

struct Dequantizer::Impl {
  DType act;
  DequantizerOptions options;
  cuda::ContextGuard context;
  std::string arch;
  mutable std::mutex mutex;
  std::map<KernelKey, LoadedKernel> kernels;
  int compiles = 0;

  Impl(DType a, DequantizerOptions o)
      : act(a), options(o), context(o.device), arch(cuda::query_device(context.device()).arch()) {}

  CUfunction kernel_for(const QuantizedWeights& w) {
    std::lock_guard lock(mutex);
    auto found = kernels.find(key_of(w));
    if (found != kernels.end()) return found->second.function;
    const CompiledKernel compiled = compile(dequantize_kernel_request(w, act, arch));
    ++compiles;
    LoadedKernel loaded{cuda::Module(compiled.cubin), nullptr};
    loaded.function = loaded.module.function(compiled.lowered_name);
    return kernels.emplace(key_of(w), std::move(loaded)).first->second.function;
  }

  void check_ids(const int* ids, int count, int experts, CUstream stream) const {
    cuda::check(cuda::api().cuStreamSynchronize(stream), "cuStreamSynchronize(expert id check)");
    std::vector<int> host(count);
    cuda::check(cuda::api().cuMemcpyDtoH(host.data(), reinterpret_cast<CUdeviceptr>(ids),
                                         host.size() * sizeof(int)),
                "cuMemcpyDtoH(expert ids)");
    for (int s = 0; s < count; ++s)
      if (host[s] < 0 || host[s] >= experts)
        throw InvalidArgument(fmt::format("device_expert_ids[{}]", s), std::to_string(host[s]),
                              fmt::format("an expert in [0, {})", experts));
  }
};

Dequantizer::Dequantizer(DType act, DequantizerOptions options) {
  if (act != DType::bf16 && act != DType::fp16)
    throw InvalidArgument("act", std::string(to_string(act)), "bf16 or fp16");
  impl_ = std::make_unique<Impl>(act, options);
}

Dequantizer::~Dequantizer() = default;

int Dequantizer::compiles() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->compiles;
}

void Dequantizer::run(const QuantizedWeights& w, const int* device_expert_ids, int count, void* out,
                      CUstream stream) {
  validate_dequantize(w, device_expert_ids, count, out);
  if (count == 0) return;
  if (impl_->options.validate_ids) impl_->check_ids(device_expert_ids, count, w.experts, stream);
  const CUfunction function = impl_->kernel_for(w);
  const std::int64_t items = items_per_expert(w);
  const auto grid_x = static_cast<unsigned>(
      std::clamp<std::int64_t>((items + kThreads - 1) / kThreads, 1, kMaxGridX));
  const void* values = w.packed_or_cb;
  const void* scales = w.absmax_or_qabsmax_or_row_stats;
  const void* code = w.code;
  const void* absmax2 = w.absmax2;
  const void* code2 = w.code2;
  float offset = w.offset;
  int experts = w.experts;
  void* args[] = {&values,  &scales, &code, &absmax2, &code2, &offset, &device_expert_ids,
                  &experts, &out};
  cuda::check(cuda::api().cuLaunchKernel(function, grid_x, static_cast<unsigned>(count), 1,
                                         kThreads, 1, 1, 0, stream, args, nullptr),
              "cuLaunchKernel(dequantize_experts)");
}

}  // namespace moejit
