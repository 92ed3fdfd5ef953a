// Routing invariants of SPEC.md "Routing" under every distribution, and the index byte encodings.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <stdexcept>
#include <tuple>

#include "tests/support/routing.hpp"

namespace moejit::test {
namespace {

constexpr std::uint64_t kSeed = 77;

void expect_valid_routing(const Routing& r) {
  const std::int64_t rows = r.tokens * r.top_k;
  ASSERT_EQ(static_cast<int>(r.expert_offsets.size()), r.experts);
  ASSERT_EQ(static_cast<std::int64_t>(r.sorted_expert_idxs.size()), rows);
  ASSERT_EQ(static_cast<std::int64_t>(r.sorted_scattered_idxs.size()), rows);
  EXPECT_EQ(r.expert_offsets.back(), rows);
  EXPECT_TRUE(std::is_sorted(r.expert_offsets.begin(), r.expert_offsets.end()));
  EXPECT_TRUE(std::is_sorted(r.sorted_expert_idxs.begin(), r.sorted_expert_idxs.end()));
  for (int e = 0; e < r.experts; ++e) {
    for (std::int64_t i = e == 0 ? 0 : r.expert_offsets[e - 1]; i < r.expert_offsets[e]; ++i)
      ASSERT_EQ(r.sorted_expert_idxs[i], e) << "grouped row " << i;
  }
  std::vector<int> seen(rows, 0);
  std::vector<std::set<std::int64_t>> experts_of_token(r.tokens);
  for (std::int64_t i = 0; i < rows; ++i) {
    const std::int64_t slot = r.sorted_scattered_idxs[i];
    ASSERT_TRUE(slot >= 0 && slot < rows) << "slot " << slot;
    ++seen[slot];
    experts_of_token[slot / r.top_k].insert(r.sorted_expert_idxs[i]);
  }
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }))
      << "every slot appears exactly once";
  for (const auto& chosen : experts_of_token)
    EXPECT_EQ(static_cast<int>(chosen.size()), r.top_k) << "a token's experts are distinct";
}

int experts_without_rows(const Routing& r) {
  int count = 0;
  for (int e = 0; e < r.experts; ++e) count += r.rows_of(e) == 0;
  return count;
}

using Shape = std::tuple<RoutingKind, int, int, int>;  // kind, E, k, T
class RoutingInvariants : public ::testing::TestWithParam<Shape> {};

TEST_P(RoutingInvariants, Hold) {
  const auto [kind, experts, top_k, tokens] = GetParam();
  Rng rng(kSeed);
  const Routing r = make_routing(kind, experts, top_k, tokens, rng);
  SCOPED_TRACE(::testing::Message() << to_string(kind) << " E=" << experts << " k=" << top_k
                                    << " T=" << tokens << " seed=" << kSeed);
  expect_valid_routing(r);
  if (kind == RoutingKind::sparse && experts > top_k) {
    EXPECT_GE(experts_without_rows(r), 1);
  }
  if (kind == RoutingKind::one_expert && tokens > 0) {
    EXPECT_EQ(experts_without_rows(r), experts - 1);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, RoutingInvariants,
    ::testing::Values(Shape{RoutingKind::uniform, 8, 2, 100}, Shape{RoutingKind::uniform, 3, 3, 7},
                      Shape{RoutingKind::uniform, 17, 4, 333}, Shape{RoutingKind::uniform, 5, 2, 0},
                      Shape{RoutingKind::skewed, 17, 4, 333}, Shape{RoutingKind::skewed, 8, 1, 1},
                      Shape{RoutingKind::sparse, 17, 4, 333}, Shape{RoutingKind::sparse, 3, 2, 50},
                      Shape{RoutingKind::sparse, 8, 1, 100},
                      Shape{RoutingKind::one_expert, 8, 1, 100},
                      Shape{RoutingKind::one_expert, 1, 1, 7}));

TEST(Routing, SkewedConcentratesOnTheFirstExperts) {
  Rng rng(kSeed);
  const Routing r = make_routing(RoutingKind::skewed, 8, 2, 2000, rng);
  // Uniform routing would give each expert T*k/E = 500 rows.
  EXPECT_GT(r.rows_of(0), 2 * 500) << "seed " << kSeed;
  EXPECT_LT(r.rows_of(7), 500) << "seed " << kSeed;
}

TEST(Routing, SameSeedSameRouting) {
  Rng first(kSeed), second(kSeed);
  const Routing a = make_routing(RoutingKind::uniform, 8, 2, 50, first);
  const Routing b = make_routing(RoutingKind::uniform, 8, 2, 50, second);
  EXPECT_EQ(a.sorted_scattered_idxs, b.sorted_scattered_idxs);
  EXPECT_EQ(a.expert_offsets, b.expert_offsets);
}

TEST(Routing, RejectsImpossibleRequests) {
  Rng rng(kSeed);
  EXPECT_THROW(make_routing(RoutingKind::one_expert, 8, 2, 10, rng), std::invalid_argument);
  EXPECT_THROW(make_routing(RoutingKind::uniform, 2, 3, 10, rng), std::invalid_argument);
  EXPECT_THROW(make_routing(RoutingKind::uniform, 2, 0, 10, rng), std::invalid_argument);
}

TEST(Routing, SortsSlotsStablyByExpert) {
  // Tokens 0 and 1 with k = 2: slots 0..3 chose experts 2, 0, 2, 1.
  const Routing r = sort_by_expert({2, 0, 2, 1}, 3, 2);
  EXPECT_EQ(r.tokens, 2);
  EXPECT_EQ(r.sorted_scattered_idxs, (std::vector<std::int64_t>{1, 3, 0, 2}));
  EXPECT_EQ(r.sorted_expert_idxs, (std::vector<std::int64_t>{0, 1, 2, 2}));
  EXPECT_EQ(r.expert_offsets, (std::vector<std::int64_t>{1, 2, 4}));
}

TEST(Routing, IndexBytesEncodeBothWidths) {
  const std::vector<std::int64_t> values{0, 5, 1 << 20, 3};
  const auto narrow = index_bytes(values, IndexType::int32);
  const auto wide = index_bytes(values, IndexType::int64);
  ASSERT_EQ(narrow.size(), 16u);
  ASSERT_EQ(wide.size(), 32u);
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::int32_t n;
    std::int64_t w;
    std::memcpy(&n, narrow.data() + 4 * i, 4);
    std::memcpy(&w, wide.data() + 8 * i, 8);
    EXPECT_EQ(n, values[i]);
    EXPECT_EQ(w, values[i]);
  }
}

}  // namespace
}  // namespace moejit::test
