// The outcome line `moejit warm` prints for one shape, from the runtime's counters.
#include <gtest/gtest.h>

#include <string>

#include "cli/progress.hpp"

namespace moejit::cli {
namespace {

TEST(PrepareOutcome, TuneShowsItsCountsAndOnlyThisShapesPart) {
  RuntimeStats before;
  before.compiles = 5;
  before.tunes = 1;
  before.tune_pruned = 2;
  before.tune_timed = 3;
  RuntimeStats after = before;
  after.compiles += 13;
  after.tunes += 1;
  after.tune_pruned += 1;
  after.tune_timed += 4;
  after.tune_cannot_win += 8;
  EXPECT_EQ(prepare_outcome(before, after),
            "tuned (13 candidates compiled, 1 pruned, 4 timed, 8 left untimed by the time floor)");
  after.tune_mismatched += 2;
  EXPECT_EQ(prepare_outcome(before, after),
            "tuned (13 candidates compiled, 1 pruned, 4 timed, 8 left untimed by the time floor; "
            "2 dropped: result differed from the reference config's)");
}

TEST(PrepareOutcome, WithoutATune) {
  RuntimeStats before;
  RuntimeStats after;
  EXPECT_EQ(prepare_outcome(before, after), "already loaded");
  after.cache_hits = 1;
  EXPECT_EQ(prepare_outcome(before, after), "already cached");
  after.compiles = 1;
  EXPECT_EQ(prepare_outcome(before, after), "compiled default config (tuning off)");
}

}  // namespace
}  // namespace moejit::cli
