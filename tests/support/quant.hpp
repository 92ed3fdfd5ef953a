#pragma once
// bitsandbytes' quantized base-weight formats on the CPU (SPEC.md "Base weights"): a quantizer that
// follows bitsandbytes' rules, to make realistic test data, and dequantizers that implement
// SPEC.md's formulas bit for bit (fp32 arithmetic in the stated order, then one rounding to the act
// dtype), the oracle for the GPU's dequantization.
//
// Where bitsandbytes' CUDA quantizer uses approximate arithmetic (fast-math reciprocals, a
// parallel mean), this one uses the IEEE fp32 operation or a float64 mean; a nibble or code may
// then differ from bitsandbytes' in rare near-tie cases. That never matters for moejit: kernels
// read the quantized arrays as data, and the dequantizers here are exact for any data.
#include <array>
#include <cstdint>
#include <vector>

#include "compiler/problem.hpp"
#include "tests/support/host_tensor.hpp"

namespace moejit::test {

// QuantState.code of quant_type nf4: the 16 NF4 values, ascending, code[7] = 0.
inline constexpr std::array<float, 16> kNf4Code = {-1.0f,
                                                   -0.6961928009986877f,
                                                   -0.5250730514526367f,
                                                   -0.39491748809814453f,
                                                   -0.28444138169288635f,
                                                   -0.18477343022823334f,
                                                   -0.09105003625154495f,
                                                   0.0f,
                                                   0.07958029955625534f,
                                                   0.16093020141124725f,
                                                   0.24611230194568634f,
                                                   0.33791524171829224f,
                                                   0.44070982933044434f,
                                                   0.5626170039176941f,
                                                   0.7229568362236023f,
                                                   1.0f};

// 1/127 rounded to fp32: the int8_rowwise dequantization factor.
inline constexpr float kInt8Factor = 7.874015718698502e-3f;

// Smallest and largest NF4 block sizes bitsandbytes accepts (powers of two in between).
inline constexpr int kMinNf4Blocksize = 32;
inline constexpr int kMaxNf4Blocksize = 4096;
// Block size of the second-level quantization of absmax (double quantization).
inline constexpr int kAbsmaxBlocksize = 256;

// bitsandbytes' create_dynamic_map(signed=True): 256 ascending values, [127] = 0, [255] = 1.
// linspace follows torch's CPU formula (start + step*i below the middle, end - step*(n-1-i) from
// it), each operation rounded to fp32.
std::vector<float> dynamic_map_signed();

// The NF4 nibble bitsandbytes stores for a value already divided by its block's absmax: the
// nearest code, where a value exactly on the fp32 midpoint of two codes takes the lower one and
// NaN (an all-zero block: 0 * 1/0) takes nibble 0.
std::uint8_t nf4_nibble(float normalized);

// The index bitsandbytes' 8-bit blockwise quantizer stores for a normalized value and an ascending
// 256-entry code: the nearest code, a value exactly on a midpoint taking the even index, NaN 0.
std::uint8_t dynamic_code_index(const std::vector<float>& code, float normalized);

// One NF4 tensor as quantize_4bit stores it; n = values.
struct Nf4Quantized {
  std::int64_t values = 0;
  int blocksize = 0;
  bool double_quant = false;
  std::vector<std::uint8_t> packed;   // (n+1)/2 bytes: value 2j high nibble of byte j, 2j+1 low
  std::vector<float> code;            // 16 entries
  std::vector<float> absmax;          // ceil(n/bs); empty with double quantization
  std::vector<std::uint8_t> qabsmax;  // ceil(n/bs); double quantization only
  std::vector<float> absmax2;         // ceil(nblocks/256); double quantization only
  std::vector<float> code2;           // 256 entries; double quantization only
  float offset = 0.0f;                // double quantization only

  std::int64_t blocks() const;
};

// Blockwise NF4 quantization of w_flat (W flattened row-major): absmax = max |w| of each block of
// `blocksize` consecutive values, nibble = nf4_nibble(w * (1/absmax)). With double_quant, offset =
// mean(absmax), and absmax - offset is quantized blockwise by 256 with dynamic_map_signed().
// Throws std::invalid_argument for a block size outside [32, 4096] or not a power of two.
Nf4Quantized quantize_nf4(const std::vector<float>& w_flat, int blocksize, bool double_quant);

// One int8_rowwise tensor as int8_vectorwise_quant stores it: [rows, cols] row-major.
struct Int8Quantized {
  std::int64_t rows = 0;
  int cols = 0;
  std::vector<std::int8_t> cb;
  std::vector<float> row_stats;  // one per row
};

// row_stats = max |w| of each row; cb = w * (127 / row_stats) rounded to nearest, ties to even (0
// for an all-zero row). Throws std::invalid_argument when values.size() != rows * cols.
Int8Quantized quantize_int8_rowwise(const std::vector<float>& values, std::int64_t rows, int cols);

// SPEC.md's formulas in fp32, before rounding to the act dtype.
// absmax[block], decoded from qabsmax with double quantization: code2[q] * absmax2[b/256] + offset.
float nf4_block_absmax(const Nf4Quantized& q, std::int64_t block);
// code[nibble(flat)] * absmax[flat / bs].
float nf4_value(const Nf4Quantized& q, std::int64_t flat);
// float(cb[flat]) * row_stats[flat / cols] * kInt8Factor.
float int8_value(const Int8Quantized& q, std::int64_t flat);

// Every value, rounded once to `act` (bf16 or fp16): Wd of all experts, flattened.
HostTensor dequantize(const Nf4Quantized& q, DType act);
HostTensor dequantize(const Int8Quantized& q, DType act);

// n weights for quantization tests: runs of 97 values U(-1, 1) * 2^u with u uniform in [-8, 3], so
// neighbouring blocks have very different absmax.
std::vector<float> random_quant_weights(std::size_t n, std::uint64_t seed);

// The experts `experts` of a flattened [E, X*Y] tensor, in that order: [experts.size(), X*Y].
HostTensor select_experts(const HostTensor& all, std::int64_t expert_size,
                          const std::vector<int>& experts);

}  // namespace moejit::test
