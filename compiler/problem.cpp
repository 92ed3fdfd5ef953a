#include "compiler/problem.hpp"

#include <fmt/format.h>
#include <array>
#include <utility>

#include "compiler/error.hpp"

namespace moejit {
namespace {

template <class Enum, std::size_t N>
using NameTable = std::array<std::pair<Enum, std::string_view>, N>;

constexpr NameTable<DType, 3> kDTypes{
    {{DType::bf16, "bf16"}, {DType::fp16, "fp16"}, {DType::fp32, "fp32"}}};
constexpr NameTable<IndexType, 2> kIndexTypes{
    {{IndexType::int32, "int32"}, {IndexType::int64, "int64"}}};
constexpr NameTable<WeightFormat, 4> kWeightFormats{{{WeightFormat::bf16, "bf16"},
                                                     {WeightFormat::fp16, "fp16"},
                                                     {WeightFormat::nf4, "nf4"},
                                                     {WeightFormat::int8_rowwise, "int8_rowwise"}}};
constexpr NameTable<WeightLayout, 2> kLayouts{
    {{WeightLayout::out_in, "out_in"}, {WeightLayout::in_out, "in_out"}}};
constexpr NameTable<BStorage, 3> kBStorages{{{BStorage::peft, "peft"},
                                             {BStorage::expert_major, "expert_major"},
                                             {BStorage::stacked, "stacked"}}};
constexpr NameTable<OpKind, 6> kOps{{{OpKind::forward, "forward"},
                                     {OpKind::backward_dx, "backward_dx"},
                                     {OpKind::grad_a, "grad_a"},
                                     {OpKind::grad_b, "grad_b"},
                                     {OpKind::pack_b, "pack_b"},
                                     {OpKind::reduce_slots, "reduce_slots"}}};

template <class Enum, std::size_t N>
std::string_view name_of(const NameTable<Enum, N>& table, Enum value) {
  for (const auto& [e, name] : table)
    if (e == value) return name;
  return "?";
}

template <class Enum, std::size_t N>
Enum parse(const NameTable<Enum, N>& table, std::string_view text, std::string_view argument) {
  std::string accepted;
  for (const auto& [e, name] : table) {
    if (name == text) return e;
    accepted += (accepted.empty() ? "" : ", ") + std::string(name);
  }
  throw InvalidArgument(std::string(argument), "'" + std::string(text) + "'", "one of " + accepted);
}

void require(bool ok, std::string_view argument, long long value, std::string_view expected) {
  if (!ok)
    throw InvalidArgument(std::string(argument), std::to_string(value), std::string(expected));
}

}  // namespace

std::string_view to_string(DType v) {
  return name_of(kDTypes, v);
}
std::string_view to_string(IndexType v) {
  return name_of(kIndexTypes, v);
}
std::string_view to_string(WeightFormat v) {
  return name_of(kWeightFormats, v);
}
std::string_view to_string(WeightLayout v) {
  return name_of(kLayouts, v);
}
std::string_view to_string(BStorage v) {
  return name_of(kBStorages, v);
}
std::string_view to_string(OpKind v) {
  return name_of(kOps, v);
}

DType parse_dtype(std::string_view t, std::string_view a) {
  return parse(kDTypes, t, a);
}
IndexType parse_index_type(std::string_view t, std::string_view a) {
  return parse(kIndexTypes, t, a);
}
WeightFormat parse_weight_format(std::string_view t, std::string_view a) {
  return parse(kWeightFormats, t, a);
}
WeightLayout parse_weight_layout(std::string_view t, std::string_view a) {
  return parse(kLayouts, t, a);
}
BStorage parse_b_storage(std::string_view t, std::string_view a) {
  return parse(kBStorages, t, a);
}
OpKind parse_op(std::string_view t, std::string_view a) {
  return parse(kOps, t, a);
}

std::size_t size_of(DType t) {
  return t == DType::fp32 ? 4 : 2;
}
std::size_t size_of(IndexType t) {
  return t == IndexType::int64 ? 8 : 4;
}

void ProjectionSpec::validate() const {
  require(experts >= 1, "experts", experts, ">= 1");
  require(top_k >= 1 && top_k <= experts, "top_k", top_k, "1 <= top_k <= experts");
  require(in_features >= 1 && in_features % 8 == 0, "in_features (K)", in_features,
          "a positive multiple of 8 (16-byte rows)");
  require(out_features >= 1 && out_features % 8 == 0, "out_features (N)", out_features,
          "a positive multiple of 8 (16-byte rows)");
  require(rank >= 1 && rank <= 256, "rank", rank, "1 <= rank <= 256");
  if (act == DType::fp32)
    throw InvalidArgument("act", "fp32", "bf16 or fp16 (activations are 16-bit)");
  if (!is_quantized(weights) && static_cast<int>(weights) != static_cast<int>(act))
    throw InvalidArgument(
        "weights", std::string(to_string(weights)),
        "the act dtype (" + std::string(to_string(act)) + ") for unquantized base weights");
  if (weights == WeightFormat::nf4) {
    const int bs = quant_blocksize;
    require(bs >= 32 && bs <= 4096 && (bs & (bs - 1)) == 0, "quant_blocksize", bs,
            "a power of two in [32, 4096]");
  }
}

std::string ProjectionSpec::describe() const {
  return fmt::format(
      "{} E={} k={} K={} N={} r={} act={} lora={} index={} weights={} layout={} b={} "
      "grouped_in={} grouped_out={} bias={}{}",
      to_string(op), experts, top_k, in_features, out_features, rank, to_string(act),
      to_string(lora), to_string(index), to_string(weights), to_string(layout),
      to_string(b_storage), grouped_in, grouped_out, has_bias,
      weights == WeightFormat::nf4
          ? fmt::format(" blocksize={} double_quant={}", quant_blocksize, double_quant)
          : std::string());
}

}  // namespace moejit
