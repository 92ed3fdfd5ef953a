#pragma once
// Shared by the cache tests: a private temporary directory per test, scoped environment variables
// and sample keys and entries whose every field differs from its default.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cache/store.hpp"

namespace moejit::testing {

// A fresh directory named after the running test, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string name = std::string("moejit-cache-") + test->test_suite_name() + "-" +
                             test->name() + "-" + std::to_string(::getpid()) + "-" +
                             std::to_string(std::random_device{}());
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Sets (or, with nullopt, unsets) one environment variable and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value->c_str(), 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A connection of our own, behind the store's back, to damage or inspect the file.
struct RawDb {
  explicit RawDb(const std::filesystem::path& path) {
    sqlite3* raw = nullptr;
    EXPECT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
    db.reset(raw);
  }
  void exec(const std::string& sql) {
    EXPECT_EQ(sqlite3_exec(db.get(), sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db.get());
  }
  std::int64_t integer(const std::string& sql) {
    sqlite3_stmt* statement = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db.get(), sql.c_str(), -1, &statement, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db.get());
    const std::int64_t value =
        sqlite3_step(statement) == SQLITE_ROW ? sqlite3_column_int64(statement, 0) : -1;
    sqlite3_finalize(statement);
    return value;
  }
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db{nullptr, &sqlite3_close};
};

// Collects the store's warnings instead of printing them.
struct Warnings {
  StoreOptions options() {
    return {.warn = [this](const std::string& line) { lines.push_back(line); }};
  }
  std::string joined() const {
    std::string all;
    for (const auto& line : lines) all += line + "\n";
    return all;
  }
  std::vector<std::string> lines;
};

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// The files "<path>.corrupt-*" beside `path`.
inline std::vector<std::filesystem::path> moved_aside(const std::filesystem::path& path) {
  std::vector<std::filesystem::path> found;
  const std::string prefix = path.filename().string() + ".corrupt-";
  for (const auto& file : std::filesystem::directory_iterator(path.parent_path()))
    if (file.path().filename().string().rfind(prefix, 0) == 0 &&
        file.path().string().find("-wal") == std::string::npos)
      found.push_back(file.path());
  return found;
}

inline CacheKey sample_key() {
  CacheKey key;
  key.device = {
      .name = "NVIDIA H100 80GB HBM3", .arch = "sm_90a", .sm_count = 132, .driver_version = 13000};
  key.nvrtc_version = "13.0";
  key.template_hash = "0123456789abcdef";
  key.generator_version = 3;
  key.spec = {.op = OpKind::forward,
              .experts = 128,
              .top_k = 8,
              .in_features = 2048,
              .out_features = 1536,
              .rank = 16,
              .act = DType::bf16,
              .lora = DType::fp32,
              .index = IndexType::int64,
              .weights = WeightFormat::nf4,
              .layout = WeightLayout::in_out,
              .b_storage = BStorage::expert_major,
              .grouped_in = true,
              .grouped_out = false,
              .has_bias = true,
              .quant_blocksize = 64,
              .double_quant = true};
  key.token_bucket = 4096;
  return key;
}

// A complete entry; `seed` varies the CUBIN bytes and the measurements.
inline CacheEntry sample_entry(const CacheKey& key, bool tuned, int seed = 1) {
  CacheEntry entry;
  entry.key = key;
  entry.config = {
      .block_m = 64, .block_n = 128, .block_k = 64, .warps_m = 2, .warps_n = 4, .stages = 4};
  std::mt19937 random(seed);
  entry.cubin.resize(3000 + seed % 100);
  for (char& byte : entry.cubin) byte = static_cast<char>(random());
  entry.kernel_name = "_Z14moejit_forwardILi" + std::to_string(seed) + "EEvv";
  entry.report = {.registers = 168,
                  .spill_stores = 8,
                  .spill_loads = 12,
                  .static_smem = 49152,
                  .stack_frame = 16,
                  .found = true};
  entry.time_ms = tuned ? 0.125 * seed : -1;
  entry.tuned = tuned;
  entry.created_unix = 1700000000 + seed;
  entry.moejit_version = "test-" + std::to_string(seed);
  return entry;
}

inline void expect_same_entry(const CacheEntry& actual, const CacheEntry& expected) {
  EXPECT_EQ(actual.key, expected.key);
  EXPECT_EQ(actual.config, expected.config);
  EXPECT_EQ(actual.cubin, expected.cubin);
  EXPECT_EQ(actual.kernel_name, expected.kernel_name);
  EXPECT_EQ(actual.report.registers, expected.report.registers);
  EXPECT_EQ(actual.report.spill_stores, expected.report.spill_stores);
  EXPECT_EQ(actual.report.spill_loads, expected.report.spill_loads);
  EXPECT_EQ(actual.report.static_smem, expected.report.static_smem);
  EXPECT_EQ(actual.report.stack_frame, expected.report.stack_frame);
  EXPECT_EQ(actual.report.found, expected.report.found);
  EXPECT_EQ(actual.time_ms, expected.time_ms);
  EXPECT_EQ(actual.tuned, expected.tuned);
  EXPECT_EQ(actual.created_unix, expected.created_unix);
  EXPECT_EQ(actual.moejit_version, expected.moejit_version);
}

}  // namespace moejit::testing
