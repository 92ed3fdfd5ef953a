// The SMs Runtime::backward leaves to the LoRA gradients beside dX (grad_b_reserved_sms), without
// a GPU: the option's meaning, the caps, and how the shape moves the choice.
#include <gtest/gtest.h>

#include "compiler/tile_config.hpp"
#include "runtime/backward_overlap.hpp"
#include "runtime/presets.hpp"

namespace moejit {
namespace {

constexpr int kSms = 132;

// dX on the persistent kernel the tile config `name` selects, on an H100's 132 SMs.
KernelHandle persistent_dx(const char* name = "m128n256k64_w8x1_s4_tma") {
  KernelHandle k;
  k.config = parse_tile_config(name);
  k.sm_count = kSms;
  k.resident_ctas = kSms;
  return k;
}

ProjectionSpec preset_spec(const char* preset, Projection proj) {
  return projection_spec(*find_preset(preset), proj, 16);
}

constexpr std::int64_t kTokens = 8192;

TEST(BackwardOverlap, OptionZeroOrANonPersistentDxReservesNothing) {
  const ProjectionSpec spec = preset_spec("qwen3-30b-a3b", Projection::down);
  EXPECT_EQ(grad_b_reserved_sms(spec, kTokens, persistent_dx(), false, 0), 0);
  KernelHandle mma_sync = persistent_dx();
  mma_sync.config =
      parse_tile_config("m128n128k32_w2x2_s3");  // one CTA per tile: no SM is left free
  EXPECT_EQ(grad_b_reserved_sms(spec, kTokens, mma_sync, false, -1), 0);
  EXPECT_EQ(grad_b_reserved_sms(spec, kTokens, mma_sync, false, 16), 0);
}

TEST(BackwardOverlap, AnExplicitCountIsCappedAtHalfAndRoundedToClusters) {
  const ProjectionSpec spec = preset_spec("qwen3-30b-a3b", Projection::down);
  EXPECT_EQ(grad_b_reserved_sms(spec, kTokens, persistent_dx(), false, 16), 16);
  EXPECT_EQ(grad_b_reserved_sms(spec, kTokens, persistent_dx(), false, 1000), kSms / 2);
  EXPECT_EQ(
      grad_b_reserved_sms(spec, kTokens, persistent_dx("m128n256k64_w8x1_s4_tma_c2"), false, 7), 6);
}

TEST(BackwardOverlap, TheChoiceFollowsTheGradientsBytesAgainstDxProducts) {
  const KernelHandle tma = persistent_dx();
  const int qwen3_down =
      grad_b_reserved_sms(preset_spec("qwen3-30b-a3b", Projection::down), kTokens, tma, false, -1);
  const int mixtral_down =
      grad_b_reserved_sms(preset_spec("mixtral-8x7b", Projection::down), kTokens, tma, false, -1);
  // qwen3 down's dX is short in K (768): dB's bytes are large against its products.
  EXPECT_GT(qwen3_down, 0);
  EXPECT_LE(qwen3_down, kSms / 2);
  EXPECT_LT(mixtral_down, qwen3_down);
  // dA's bytes beside dX as well want more SMs for the same shape; a register-operand dX (fewer
  // FLOPs per SM and second, so a longer dX to hide them behind) fewer.
  const ProjectionSpec spec = preset_spec("qwen3-30b-a3b", Projection::gate_up);
  const int bf16 = grad_b_reserved_sms(spec, kTokens, tma, false, -1);
  EXPECT_GT(grad_b_reserved_sms(spec, kTokens, tma, true, -1), bf16);
  EXPECT_LT(grad_b_reserved_sms(spec, kTokens, persistent_dx("m256n128k64_w8x1_s4_rs"), false, -1),
            bf16);
}

}  // namespace
}  // namespace moejit
