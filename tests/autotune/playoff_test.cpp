// Which candidates the tuner times again before it picks one (autotune/tuner.hpp).
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "autotune/tuner.hpp"

namespace moejit {
namespace {

CompiledCandidate timed(int block_m, int stages, double time_ms, std::string pruned = {}) {
  CompiledCandidate c;
  c.config = TileConfig{block_m, 128, 64, 8, 1, stages};
  c.time_ms = time_ms;
  c.pruned = std::move(pruned);
  return c;
}

std::vector<double> times_of(const std::vector<CompiledCandidate*>& finalists) {
  std::vector<double> out;
  for (const CompiledCandidate* c : finalists) out.push_back(c->time_ms);
  return out;
}

TEST(PlayoffFinalists, KeepsTheFastestWithinTheMarginOfTheWinner) {
  std::vector<CompiledCandidate> candidates{
      timed(256, 4, 0.65),  // timed first, after the compiles: slower than it is
      timed(256, 3, 0.62),  // the winner of the one-by-one timing
      timed(192, 4, 0.64),
      timed(128, 6, 0.77),  // beyond the margin
      timed(128, 4, -1),    // never timed: its floor could not win
      timed(128, 3, 0.61, "its result differs from the reference config's"),
  };
  const auto finalists = playoff_finalists(candidates, candidates[1]);
  EXPECT_EQ(times_of(finalists), (std::vector<double>{0.62, 0.64, 0.65}));
  EXPECT_EQ(finalists.front(), &candidates[1]);
}

TEST(PlayoffFinalists, KeepsAtMostTheCapFastestFirst) {
  std::vector<CompiledCandidate> candidates;
  for (int i = 0; i < 8; ++i) candidates.push_back(timed(128, 2 + i % 5, 1.0 + 0.01 * (7 - i)));
  const auto finalists = playoff_finalists(candidates, candidates[7]);
  ASSERT_EQ(finalists.size(), kPlayoffFinalists);
  EXPECT_EQ(times_of(finalists), (std::vector<double>{1.0, 1.01, 1.02, 1.03}));
}

TEST(PlayoffFinalists, KeepsTheWinnerWhenOthersTieWithIt) {
  std::vector<CompiledCandidate> candidates;
  for (int i = 0; i < 6; ++i) candidates.push_back(timed(128, 2 + i % 5, 1.0));
  const auto finalists = playoff_finalists(candidates, candidates[5]);
  ASSERT_EQ(finalists.size(), kPlayoffFinalists);
  EXPECT_EQ(finalists.front(), &candidates[5]);
}

TEST(PlayoffFinalists, AloneWhenNoneIsClose) {
  std::vector<CompiledCandidate> candidates{timed(256, 4, 0.5), timed(128, 4, 0.56)};
  const auto finalists = playoff_finalists(candidates, candidates[0]);
  EXPECT_EQ(finalists, (std::vector<CompiledCandidate*>{&candidates[0]}));
}

}  // namespace
}  // namespace moejit
