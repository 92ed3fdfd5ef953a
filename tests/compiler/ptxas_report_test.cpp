// parse_ptxas_report must read the numbers of the requested entry function, not its neighbours'.
#include <gtest/gtest.h>

#include "compiler/ptxas_report.hpp"

namespace moejit {
namespace {

// Three functions with distinct numbers in every field, in the format ptxas -v prints.
constexpr const char* kLog =
    "ptxas info    : 0 bytes gmem\n"
    "ptxas info    : Compiling entry function '_Z5firstv' for 'sm_90a'\n"
    "ptxas info    : Function properties for _Z5firstv\n"
    "ptxas         .     8 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
    "ptxas info    : Used 40 registers, used 1 barriers, 1024 bytes smem, 384 bytes cmem[0]\n"
    "ptxas info    : Compiling entry function '_Z6secondv' for 'sm_90a'\n"
    "ptxas info    : Function properties for _Z6secondv\n"
    "ptxas         .     96 bytes stack frame, 24 bytes spill stores, 28 bytes spill loads\n"
    "ptxas info    : Used 255 registers, used 1 barriers, 2048 bytes smem, 400 bytes cmem[0]\n"
    "ptxas info    : Compiling entry function '_Z5thirdv' for 'sm_90a'\n"
    "ptxas info    : Function properties for _Z5thirdv\n"
    "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
    "ptxas info    : Used 72 registers, used 1 barriers, 512 bytes smem, 392 bytes cmem[0]\n";

TEST(PtxasReport, PicksTheNamedFunction) {
  const PtxasReport second = parse_ptxas_report(kLog, "_Z6secondv");
  EXPECT_TRUE(second.found);
  EXPECT_EQ(second.registers, 255);
  EXPECT_EQ(second.spill_stores, 24);
  EXPECT_EQ(second.spill_loads, 28);
  EXPECT_EQ(second.stack_frame, 96);
  EXPECT_EQ(second.static_smem, 2048);
  EXPECT_TRUE(second.spills());
}

TEST(PtxasReport, LastFunctionRunsToTheEndOfTheLog) {
  const PtxasReport third = parse_ptxas_report(kLog, "_Z5thirdv");
  EXPECT_TRUE(third.found);
  EXPECT_EQ(third.registers, 72);
  EXPECT_EQ(third.static_smem, 512);
  EXPECT_EQ(third.stack_frame, 0);
  EXPECT_FALSE(third.spills());
}

TEST(PtxasReport, EmptyNameMeansFirstFunction) {
  const PtxasReport first = parse_ptxas_report(kLog);
  EXPECT_TRUE(first.found);
  EXPECT_EQ(first.registers, 40);
  EXPECT_EQ(first.stack_frame, 8);
  EXPECT_EQ(first.static_smem, 1024);
  EXPECT_FALSE(first.spills());
}

TEST(PtxasReport, NamePrefixDoesNotMatchALongerName) {
  // "_Z5first" is a prefix of "_Z5firstv" but names no function in the log.
  EXPECT_FALSE(parse_ptxas_report(kLog, "_Z5first").found);
}

TEST(PtxasReport, UnknownFunctionOrEmptyLogIsNotFound) {
  EXPECT_FALSE(parse_ptxas_report(kLog, "_Z7missingv").found);
  const PtxasReport empty = parse_ptxas_report("");
  EXPECT_FALSE(empty.found);
  EXPECT_EQ(empty.registers, 0);
}

}  // namespace
}  // namespace moejit
