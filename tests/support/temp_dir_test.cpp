// TempDir gives each test a private directory and removes it with its contents.
#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/temp_dir.hpp"

namespace moejit::test {
namespace {

TEST(TempDir, IsFreshPrivateAndRemoved) {
  std::filesystem::path kept;
  {
    TempDir first, second;
    EXPECT_NE(first.path(), second.path());
    EXPECT_TRUE(std::filesystem::is_directory(first.path()));
    EXPECT_TRUE(std::filesystem::is_empty(first.path()));
    std::ofstream(first.path() / "cache.sqlite") << "data";
    kept = first.path();
  }
  EXPECT_FALSE(std::filesystem::exists(kept));
}

}  // namespace
}  // namespace moejit::test
