#pragma once
// What a kernel computes: everything that selects or shapes generated code (see ../shared/SPEC.md).
#include <cstdint>
#include <string>
#include <string_view>

namespace moejit {

enum class DType : std::uint8_t { bf16, fp16, fp32 };
enum class IndexType : std::uint8_t { int32, int64 };
enum class WeightFormat : std::uint8_t { bf16, fp16, nf4, int8_rowwise };
enum class WeightLayout : std::uint8_t { out_in, in_out };  // W[E,N,K] or W[E,K,N]
enum class BStorage : std::uint8_t { peft, expert_major, stacked };
// forward: y = x W + s (x A^T) B^T + bias. The backward of that forward runs as: backward_dx
// (dx = dy W^T + s (dy B) A, also saving dy B), grad_a (dA = s (dy B)^T X), grad_b
// (dB = s dY^T (X A^T)); pack_b and reduce_slots are its small helper kernels.
enum class OpKind : std::uint8_t { forward, backward_dx, grad_a, grad_b, pack_b, reduce_slots };

std::string_view to_string(DType);
std::string_view to_string(IndexType);
std::string_view to_string(WeightFormat);
// nf4 and int8_rowwise: decoded inside the kernels rather than read as 16-bit values.
inline bool is_quantized(WeightFormat w) {
  return w == WeightFormat::nf4 || w == WeightFormat::int8_rowwise;
}
std::string_view to_string(WeightLayout);
std::string_view to_string(BStorage);
std::string_view to_string(OpKind);

// Parsers throw InvalidArgument naming `argument` and the accepted spellings.
DType parse_dtype(std::string_view text, std::string_view argument);
IndexType parse_index_type(std::string_view text, std::string_view argument);
WeightFormat parse_weight_format(std::string_view text, std::string_view argument);
WeightLayout parse_weight_layout(std::string_view text, std::string_view argument);
BStorage parse_b_storage(std::string_view text, std::string_view argument);
OpKind parse_op(std::string_view text, std::string_view argument);

std::size_t size_of(DType);
std::size_t size_of(IndexType);

// One MoE-LoRA projection as the generated kernel sees it. The token count is not part of it: it
// is a launch argument (and, bucketed, part of the cache key).
struct ProjectionSpec {
  OpKind op = OpKind::forward;
  int experts = 0;       // E
  int top_k = 0;         // k
  int in_features = 0;   // K
  int out_features = 0;  // N
  int rank = 0;          // r
  DType act = DType::bf16;
  DType lora = DType::bf16;
  IndexType index = IndexType::int32;
  WeightFormat weights = WeightFormat::bf16;
  WeightLayout layout = WeightLayout::out_in;
  BStorage b_storage = BStorage::peft;
  bool grouped_in = false;
  bool grouped_out = false;
  bool has_bias = false;
  int quant_blocksize = 0;    // nf4 only
  bool double_quant = false;  // nf4 only

  // Throws InvalidArgument for any value outside SPEC.md's contract.
  void validate() const;
  // "forward E128 k8 K2048 N1536 r16 act=bf16 ..." for messages and listings.
  std::string describe() const;
  bool operator==(const ProjectionSpec&) const = default;
};

}  // namespace moejit
