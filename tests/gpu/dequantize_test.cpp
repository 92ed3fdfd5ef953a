// The dequantize op (runtime/dequantize.hpp, templates/moejit/dequant.cuh). On a GPU: every format
// (nf4 with each block size, with and without double quantization; int8_rowwise) and act dtype,
// bit-exact against the CPU formulas of tests/support/quant, on shapes whose blocks cross rows and
// experts, for expert subsets, into a poisoned output. Anywhere: SPEC.md's input checks and the
// NVRTC compilation of the kernels, including their static_asserts.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "compiler/error.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "runtime/dequantize.hpp"
#include "tests/gpu/gpu_env.hpp"
#include "tests/support/quant.hpp"

namespace moejit::test {
namespace {

constexpr std::uint64_t kSeed = 2024;

struct QuantCase {
  WeightFormat format = WeightFormat::nf4;
  int blocksize = 64;
  bool double_quant = false;
  DType act = DType::bf16;
  int experts = 0, rows = 0, cols = 0;

  std::string describe() const {
    return fmt::format("{} bs={} dq={} act={} E={} X={} Y={}", to_string(format), blocksize,
                       double_quant, to_string(act), experts, rows, cols);
  }
  std::int64_t expert_size() const { return std::int64_t{rows} * cols; }
  std::size_t values() const { return static_cast<std::size_t>(experts * expert_size()); }
};

// A quantized tensor on the host and the device, with the QuantizedWeights that describe it.
class DeviceQuantized {
 public:
  DeviceQuantized(const QuantCase& c, const Nf4Quantized& q) : weights_(shape(c)) {
    packed_ = upload(q.packed);
    code_ = upload(q.code);
    weights_.packed_or_cb = packed_.ptr();
    weights_.code = code_.ptr();
    weights_.double_quant = q.double_quant;
    weights_.blocksize = q.blocksize;
    if (q.double_quant) {
      scales_ = upload(q.qabsmax);
      absmax2_ = upload(q.absmax2);
      code2_ = upload(q.code2);
      weights_.absmax2 = absmax2_.ptr();
      weights_.code2 = code2_.ptr();
      weights_.offset = q.offset;
    } else {
      scales_ = upload(q.absmax);
    }
    weights_.absmax_or_qabsmax_or_row_stats = scales_.ptr();
  }
  DeviceQuantized(const QuantCase& c, const Int8Quantized& q) : weights_(shape(c)) {
    packed_ = upload(q.cb);
    scales_ = upload(q.row_stats);
    weights_.packed_or_cb = packed_.ptr();
    weights_.absmax_or_qabsmax_or_row_stats = scales_.ptr();
  }
  const QuantizedWeights& weights() const { return weights_; }

 private:
  static QuantizedWeights shape(const QuantCase& c) {
    QuantizedWeights w;
    w.format = c.format;
    w.experts = c.experts;
    w.rows = c.rows;
    w.cols = c.cols;
    return w;
  }
  template <class T>
  static cuda::DeviceBuffer upload(const std::vector<T>& v) {
    cuda::DeviceBuffer b(v.size() * sizeof(T));
    b.upload(v);
    return b;
  }
  QuantizedWeights weights_;
  cuda::DeviceBuffer packed_, scales_, code_, absmax2_, code2_;
};

// The first element where `got` differs from `want` bit for bit, located by expert slot, row and
// column; empty when equal.
std::string first_difference(const HostTensor& want, const HostTensor& got, const QuantCase& c,
                             const std::vector<int>& ids) {
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want.bytes()[2 * i] == got.bytes()[2 * i] &&
        want.bytes()[2 * i + 1] == got.bytes()[2 * i + 1])
      continue;
    const std::int64_t slot = i / c.expert_size(), local = i % c.expert_size();
    return fmt::format(
        "{}: first difference at slot {} (expert {}), row {}, col {}: got {} want {}", c.describe(),
        slot, ids[slot], local / c.cols, local % c.cols, got.at(i), want.at(i));
  }
  return {};
}

class DequantizeOnGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    MOEJIT_SKIP_WITHOUT_GPU();
    context_.emplace();
  }

  // Runs `dq` for `ids` into a poisoned buffer and expects exactly `all` (every expert, flattened)
  // restricted to `ids`.
  void expect_exact(Dequantizer& dq, const DeviceQuantized& w, const QuantCase& c,
                    const HostTensor& all, const std::vector<int>& ids) {
    cuda::DeviceBuffer device_ids(ids.size() * sizeof(int));
    device_ids.upload(ids);
    cuda::DeviceBuffer out(ids.size() * c.expert_size() * 2);
    out.fill_bytes(0xFF);  // NaN in bf16 and fp16; never a dequantized value (NaN is 0x7FFF)
    dq.run(w.weights(), static_cast<const int*>(device_ids.ptr()), static_cast<int>(ids.size()),
           out.ptr());
    synchronize_context();
    HostTensor got(c.act, ids.size() * c.expert_size());
    out.download(got.bytes());
    const std::string diff =
        first_difference(select_experts(all, c.expert_size(), ids), got, c, ids);
    EXPECT_TRUE(diff.empty()) << diff << " (ids " << fmt::format("{}", fmt::join(ids, ",")) << ")";
  }

  // Every expert in order, the last alone, and an unordered subset with a repeat.
  void check_subsets(const QuantCase& c, const DeviceQuantized& w, const HostTensor& all) {
    Dequantizer dq(c.act);
    const int e = c.experts;
    std::vector<int> every(e);
    for (int i = 0; i < e; ++i) every[i] = i;
    for (const std::vector<int>& ids : {every, {e - 1}, {e - 1, 0, e / 2, e / 2}})
      expect_exact(dq, w, c, all, ids);
    EXPECT_EQ(dq.compiles(), 1) << c.describe();
  }

  std::optional<TestContext> context_;
};

std::vector<float> weights_with_a_zero_block(const QuantCase& c) {
  std::vector<float> w = random_quant_weights(c.values(), kSeed + c.blocksize + c.rows);
  std::fill(w.begin(), w.begin() + std::min<std::size_t>(w.size(), 32), 0.0f);  // absmax 0
  return w;
}

// Blocks cross rows (Y = 104 < 128) and, for 128, 256 and 4096, experts (X*Y = 5824); at 32 and 64
// there are several absmax2 blocks. The second shape takes the kernel's one-value-per-step path
// (X*Y = 35 is odd: experts start mid-byte).
const QuantCase kVectorShape{WeightFormat::nf4, 64, false, DType::bf16, 6, 56, 104};
const QuantCase kOddShape{WeightFormat::nf4, 64, false, DType::bf16, 3, 5, 7};

TEST_F(DequantizeOnGpu, Nf4EveryBlockSizeBothDtypesWithAndWithoutDoubleQuant) {
  for (DType act : {DType::bf16, DType::fp16})
    for (int bs : {32, 64, 128, 256, 4096})
      for (bool double_quant : {false, true}) {
        QuantCase c = kVectorShape;
        c.act = act;
        c.blocksize = bs;
        c.double_quant = double_quant;
        const Nf4Quantized q = quantize_nf4(weights_with_a_zero_block(c), bs, double_quant);
        check_subsets(c, DeviceQuantized(c, q), dequantize(q, act));
      }
}

TEST_F(DequantizeOnGpu, Nf4ExpertsStartingMidByte) {
  for (DType act : {DType::bf16, DType::fp16})
    for (auto [bs, double_quant] : {std::pair{32, true}, {64, false}, {4096, true}}) {
      QuantCase c = kOddShape;
      c.act = act;
      c.blocksize = bs;
      c.double_quant = double_quant;
      const Nf4Quantized q = quantize_nf4(weights_with_a_zero_block(c), bs, double_quant);
      check_subsets(c, DeviceQuantized(c, q), dequantize(q, act));
    }
}

TEST_F(DequantizeOnGpu, Nf4DoubleQuantRoundsTheProductBeforeTheOffset) {
  // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 rounds to 1 + 2^-11 in fp32, so adding -(1 + 2^-11) gives 0;
  // a fused multiply-add would give 2^-24, which bf16 and fp16 both represent.
  Nf4Quantized q = quantize_nf4(random_quant_weights(64, kSeed), 32, true);
  q.code2[3] = 1.0f + std::ldexp(1.0f, -12);
  q.absmax2 = {1.0f + std::ldexp(1.0f, -12)};
  q.offset = -(1.0f + std::ldexp(1.0f, -11));
  q.qabsmax = {3, 3};
  q.packed.assign(32, 0xFF);  // code 1.0: w = absmax exactly
  for (DType act : {DType::bf16, DType::fp16}) {
    const QuantCase c{WeightFormat::nf4, 32, true, act, 1, 8, 8};
    const HostTensor all = dequantize(q, act);
    ASSERT_EQ(all.at(0), 0.0);
    check_subsets(c, DeviceQuantized(c, q), all);
  }
}

TEST_F(DequantizeOnGpu, Int8RowwiseBothDtypes) {
  // 56 x 104: eight values of one row per step; 8 x 12 and 5 x 7: one value per step.
  for (DType act : {DType::bf16, DType::fp16})
    for (auto [rows, cols] : {std::pair{56, 104}, {8, 12}, {5, 7}}) {
      const QuantCase c{WeightFormat::int8_rowwise, 0, false, act, 4, rows, cols};
      std::vector<float> w = random_quant_weights(c.values(), kSeed + rows);
      std::fill(w.begin(), w.begin() + cols, 0.0f);  // an all-zero row
      const Int8Quantized q = quantize_int8_rowwise(w, std::int64_t{c.experts} * rows, cols);
      check_subsets(c, DeviceQuantized(c, q), dequantize(q, act));
    }
}

TEST_F(DequantizeOnGpu, CompilesOncePerKernelAndNothingForZeroExperts) {
  QuantCase c = kOddShape;
  const Nf4Quantized q = quantize_nf4(random_quant_weights(c.values(), kSeed), 64, false);
  const DeviceQuantized w(c, q);
  cuda::DeviceBuffer ids(16), out(16);
  Dequantizer dq(DType::bf16);
  dq.run(w.weights(), static_cast<const int*>(ids.ptr()), 0, out.ptr());
  EXPECT_EQ(dq.compiles(), 0);
  const HostTensor all = dequantize(q, DType::bf16);
  expect_exact(dq, w, c, all, {2, 1});
  expect_exact(dq, w, c, all, {0});
  EXPECT_EQ(dq.compiles(), 1);
}

TEST_F(DequantizeOnGpu, OutOfRangeIdsAreRejectedOrLeaveTheirSliceUnwritten) {
  const QuantCase c = kOddShape;
  const Nf4Quantized q = quantize_nf4(random_quant_weights(c.values(), kSeed), 32, false);
  const DeviceQuantized w(c, q);
  const std::vector<int> ids = {1, c.experts};
  cuda::DeviceBuffer device_ids(ids.size() * sizeof(int));
  device_ids.upload(ids);
  cuda::DeviceBuffer out(ids.size() * c.expert_size() * 2);
  out.fill_bytes(0xFF);
  DequantizerOptions checked;
  checked.validate_ids = true;
  Dequantizer validating(c.act, checked);
  const auto* id_ptr = static_cast<const int*>(device_ids.ptr());
  EXPECT_THROW(validating.run(w.weights(), id_ptr, 2, out.ptr()), InvalidArgument);
  Dequantizer unchecked(c.act);
  unchecked.run(w.weights(), id_ptr, 2, out.ptr());
  synchronize_context();
  HostTensor got(c.act, ids.size() * c.expert_size());
  out.download(got.bytes());
  const HostTensor want = select_experts(dequantize(q, c.act), c.expert_size(), {1});
  const std::size_t half = want.bytes().size();
  EXPECT_TRUE(std::equal(want.bytes().begin(), want.bytes().end(), got.bytes().begin()));
  EXPECT_TRUE(std::all_of(got.bytes().begin() + half, got.bytes().end(), [](std::uint8_t b) {
    return b == 0xFF;
  })) << "the slot of an out-of-range id was written";
}

// ---- Input checks and compilation: no GPU needed ----------------------------------------------

const void* fake(std::uintptr_t address) {
  return reinterpret_cast<const void*>(address);
}

QuantizedWeights valid_nf4(bool double_quant) {
  QuantizedWeights w;
  w.format = WeightFormat::nf4;
  w.experts = 3;
  w.rows = 5;
  w.cols = 7;
  w.blocksize = 32;
  w.double_quant = double_quant;
  w.packed_or_cb = fake(0x1000);
  w.absmax_or_qabsmax_or_row_stats = fake(0x2000);
  w.code = fake(0x3000);
  if (double_quant) {
    w.absmax2 = fake(0x4000);
    w.code2 = fake(0x5000);
    w.offset = 0.5f;
  }
  return w;
}

QuantizedWeights valid_int8() {
  QuantizedWeights w = valid_nf4(false);
  w.format = WeightFormat::int8_rowwise;
  w.code = nullptr;
  return w;
}

// Expects InvalidArgument naming `argument`.
template <class Call>
void expect_rejected(Call call, const std::string& argument) {
  try {
    call();
    ADD_FAILURE() << "no InvalidArgument for a bad '" << argument << "'";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("'" + argument), std::string::npos) << e.what();
  }
}

void expect_call_rejected(const QuantizedWeights& w, const std::string& argument, int count = 4,
                          const void* ids = fake(0x6000), const void* out = fake(0x7000)) {
  expect_rejected([&] { validate_dequantize(w, static_cast<const int*>(ids), count, out); },
                  argument);
}

TEST(DequantizeChecks, AcceptsValidArguments) {
  for (const QuantizedWeights& w : {valid_nf4(false), valid_nf4(true), valid_int8()})
    EXPECT_NO_THROW(validate_dequantize(w, static_cast<const int*>(fake(0x6000)), 4, fake(0x7000)));
}

TEST(DequantizeChecks, RejectsShapesFormatsAndBlockSizes) {
  QuantizedWeights w = valid_nf4(false);
  w.format = WeightFormat::bf16;
  expect_call_rejected(w, "format");
  for (int bs : {16, 48, 8192}) {
    w = valid_nf4(false);
    w.blocksize = bs;
    expect_call_rejected(w, "blocksize");
  }
  w = valid_nf4(true);
  w.rows = 0;
  expect_call_rejected(w, "rows");
  w = valid_int8();
  w.experts = -1;
  expect_call_rejected(w, "experts");
}

TEST(DequantizeChecks, RejectsMissingExtraAndMisalignedPointers) {
  QuantizedWeights w = valid_nf4(false);
  w.packed_or_cb = fake(0x1001);
  expect_call_rejected(w, "packed_or_cb");
  w = valid_nf4(true);
  w.absmax_or_qabsmax_or_row_stats = nullptr;
  expect_call_rejected(w, "absmax_or_qabsmax_or_row_stats");
  w = valid_nf4(false);
  w.code = nullptr;
  expect_call_rejected(w, "code");
  w = valid_nf4(false);
  w.absmax2 = fake(0x4000);
  expect_call_rejected(w, "absmax2");
  w = valid_nf4(true);
  w.code2 = fake(0x5008);
  expect_call_rejected(w, "code2");
  w = valid_nf4(true);
  w.offset = std::numeric_limits<float>::quiet_NaN();
  expect_call_rejected(w, "offset");
  w = valid_int8();
  w.code = fake(0x3000);
  expect_call_rejected(w, "code");
  expect_call_rejected(valid_int8(), "out", 4, fake(0x6000), fake(0x7002));
  expect_call_rejected(valid_int8(), "device_expert_ids", 4, nullptr);
  expect_call_rejected(valid_int8(), "count", -1);
  expect_call_rejected(valid_int8(), "count", 65536);
}

TEST(DequantizeChecks, RequiredSizesFollowSpec) {
  // n = 3*5*7 = 105: (n+1)/2 = 53 bytes, ceil(105/32) = 4 blocks, one absmax2.
  QuantizedSizes nf4{53, 4, 16, 1, 256};
  EXPECT_EQ(required_sizes(valid_nf4(true)), nf4);
  nf4.absmax2 = nf4.code2 = 0;
  EXPECT_EQ(required_sizes(valid_nf4(false)), nf4);
  EXPECT_EQ(required_sizes(valid_int8()), (QuantizedSizes{105, 15, 0, 0, 0}));
  QuantizedWeights big = valid_nf4(true);
  big.experts = 128;
  big.rows = 1536;
  big.cols = 2048;
  big.blocksize = 64;
  // n = 402653184: 6291456 blocks, 24576 absmax2 entries.
  EXPECT_EQ(required_sizes(big), (QuantizedSizes{201326592, 6291456, 16, 24576, 256}));
  expect_rejected(
      [] {
        check_sizes(valid_nf4(true), QuantizedSizes{53, 4, 16, 2, 256});
      },
      "absmax2");
  EXPECT_NO_THROW(check_sizes(valid_nf4(true), QuantizedSizes{53, 4, 16, 1, 256}));
}

TEST(DequantizeCompile, EveryFormatCompilesForAmpereAndHopper) {
  for (const std::string arch : {"sm_80", "sm_90a"})
    for (QuantizedWeights w : {valid_nf4(false), valid_nf4(true), valid_int8()})
      for (auto [rows, cols] : {std::pair{5, 7}, {56, 104}}) {
        w.rows = rows;
        w.cols = cols;
        const CompiledKernel k = compile(dequantize_kernel_request(w, DType::fp16, arch));
        EXPECT_FALSE(k.cubin.empty());
        EXPECT_EQ(k.report.spill_stores, 0) << arch;
      }
  expect_rejected([] { dequantize_kernel_request(valid_int8(), DType::fp32, "sm_90a"); }, "act");
}

TEST(DequantizeCompile, StaticAssertsRejectAnInvalidBlockSize) {
  CompileRequest request = dequantize_kernel_request(valid_nf4(false), DType::bf16, "sm_80");
  const std::string valid = "kBlocksize = 32;";
  const auto at = request.source.find(valid);
  ASSERT_NE(at, std::string::npos) << request.source;
  request.source.replace(at, valid.size(), "kBlocksize = 48;");
  try {
    compile(request);
    ADD_FAILURE() << "a block size of 48 compiled";
  } catch (const CompileError& e) {
    EXPECT_NE(std::string(e.what()).find("power of two in [32, 4096]"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace moejit::test
