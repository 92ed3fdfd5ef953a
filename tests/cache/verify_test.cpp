// verify_cache_file reports every injected fault, names where it is, and changes nothing (but
// for rolling back a killed writer's journal).
#include <gtest/gtest.h>

#include "cache/verify.hpp"
#include "cache_test_support.hpp"

namespace moejit {
namespace {

using testing::RawDb;
using testing::sample_key;
using testing::TempDir;

// An entry whose CUBIN looks like a real one: ELF magic and the kernel's name inside.
CacheEntry elf_entry(int index) {
  auto key = sample_key();
  key.token_bucket = std::int64_t{1} << index;
  auto entry = testing::sample_entry(key, true, index + 1);
  const std::string elf =
      "\x7f"
      "ELF";
  std::copy(elf.begin(), elf.end(), entry.cubin.begin());
  std::copy(entry.kernel_name.begin(), entry.kernel_name.end(), entry.cubin.begin() + 100);
  return entry;
}

std::filesystem::path sound_cache(const TempDir& dir, int count) {
  const auto path = dir / "cache.sqlite";
  CacheStore store(path);
  for (int i = 0; i < count; ++i) store.put(elf_entry(i));
  return path;
}

std::string all_problems(const VerifyReport& report) {
  std::string text;
  for (const auto& line : report.problems) text += line + "\n";
  return text;
}

bool mentions(const VerifyReport& report, const std::string& part) {
  return all_problems(report).find(part) != std::string::npos;
}

TEST(CacheVerify, SoundCacheIsOkAndUnchanged) {
  TempDir dir;
  const auto path = sound_cache(dir, 10);
  const auto before = testing::read_bytes(path);
  const auto report = verify_cache_file(path);
  EXPECT_TRUE(report.ok()) << all_problems(report);
  EXPECT_EQ(report.entries, 10);
  EXPECT_EQ(report.sound, 10);
  EXPECT_EQ(report.schema_version, kSchemaVersion);
  EXPECT_EQ(testing::read_bytes(path), before);
}

TEST(CacheVerify, TruncatedFile) {
  TempDir dir;
  const auto path = sound_cache(dir, 20);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 3);
  const auto report = verify_cache_file(path);
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(mentions(report, "malformed")) << all_problems(report);
  EXPECT_TRUE(testing::moved_aside(path).empty()) << "verify must not move the file";
}

TEST(CacheVerify, FlippedCubinByte) {
  TempDir dir;
  const auto path = sound_cache(dir, 5);
  const auto victim = elf_entry(3);
  RawDb(path).exec(
      "UPDATE entries SET cubin = cast(substr(cubin, 1, 1999) || 'Z' || "
      "substr(cubin, 2001) AS BLOB) WHERE id = '" +
      victim.key.id() + "'");
  const auto report = verify_cache_file(path);
  ASSERT_EQ(report.problems.size(), 1u) << all_problems(report);
  EXPECT_TRUE(mentions(report, victim.key.id())) << all_problems(report);
  EXPECT_TRUE(mentions(report, "checksum")) << all_problems(report);
  EXPECT_EQ(report.sound, 4);
}

TEST(CacheVerify, WrongSchemaVersion) {
  TempDir dir;
  const auto newer = sound_cache(dir, 2);
  RawDb(newer).exec("PRAGMA user_version = 7");
  const auto report = verify_cache_file(newer);
  EXPECT_TRUE(mentions(report, "schema version 7 is newer")) << all_problems(report);
  RawDb(newer).exec("PRAGMA user_version = 1");  // version 1 had no claims table
  const auto older = verify_cache_file(newer);
  EXPECT_TRUE(mentions(older, "unexpected table 'claims'")) << all_problems(older);
}

TEST(CacheVerify, GarbageFile) {
  TempDir dir;
  testing::write_bytes(dir / "garbage.sqlite", std::string(4096, '\x5a'));
  const auto report = verify_cache_file(dir / "garbage.sqlite");
  EXPECT_TRUE(mentions(report, "not a SQLite database")) << all_problems(report);
  EXPECT_TRUE(mentions(verify_cache_file(dir / "absent.sqlite"), "no such file"));
}

// What a process killed between creating the file and writing the schema leaves: the Runtime
// and the CLI open it as a new cache, so verify reports no problem, zero entries and a note.
TEST(CacheVerify, FileWithoutTablesYetIsAnEmptyCache) {
  TempDir dir;
  testing::write_bytes(dir / "empty.sqlite", std::string());
  { RawDb(dir / "tables_missing.sqlite").exec("CREATE TABLE t(x); DROP TABLE t;"); }
  for (const char* name : {"empty.sqlite", "tables_missing.sqlite"}) {
    const auto report = verify_cache_file(dir / name);
    EXPECT_TRUE(report.ok()) << name << ": " << all_problems(report);
    EXPECT_EQ(report.entries, 0) << name;
    ASSERT_EQ(report.notes.size(), 1u) << name;
    EXPECT_NE(report.notes[0].find("no moejit tables yet"), std::string::npos) << name;
    CacheStore store(dir / name);  // and it opens as a cache that takes entries
    store.put(elf_entry(0));
    EXPECT_EQ(verify_cache_file(dir / name).sound, 1) << name;
  }
}

TEST(CacheVerify, CubinThatIsNotAKernel) {
  TempDir dir;
  const auto path = dir / "cache.sqlite";
  auto entry = elf_entry(0);
  entry.cubin[0] = 'X';
  auto unnamed = elf_entry(1);
  unnamed.kernel_name = "_Z6absentv";
  CacheStore(path).put(entry);
  CacheStore(path).put(unnamed);
  const auto report = verify_cache_file(path);
  EXPECT_EQ(report.problems.size(), 2u) << all_problems(report);
  EXPECT_TRUE(mentions(report, "not an ELF file")) << all_problems(report);
  EXPECT_TRUE(mentions(report, "does not contain its kernel '_Z6absentv'")) << all_problems(report);
}

// What a writer killed mid-transaction leaves on a file in rollback-journal mode (a cache being
// created, before it switches to WAL): pages of the transaction already in the file and a hot
// journal holding the old ones. The copy returned is that state with no process holding a lock.
std::filesystem::path stopped_writer_copy(const TempDir& dir, int count) {
  const auto path = sound_cache(dir, count);
  const auto stopped = dir / "stopped.sqlite";
  RawDb raw(path);
  raw.exec("PRAGMA journal_mode=DELETE");
  raw.exec("PRAGMA cache_size=1");  // spill the transaction's pages into the file
  raw.exec("BEGIN IMMEDIATE");
  raw.exec("DELETE FROM entries");
  std::filesystem::copy_file(path, stopped);
  std::filesystem::copy_file(path.string() + "-journal", stopped.string() + "-journal");
  raw.exec("ROLLBACK");
  EXPECT_NE(testing::read_bytes(stopped), testing::read_bytes(path))
      << "the copy should hold pages of the unfinished transaction";
  return stopped;
}

TEST(CacheVerify, HotJournalOfAKilledWriterIsRolledBack) {
  TempDir dir;
  const auto stopped = stopped_writer_copy(dir, 6);
  const auto report = verify_cache_file(stopped);
  EXPECT_TRUE(report.ok()) << all_problems(report);
  EXPECT_EQ(report.entries, 6);
  EXPECT_EQ(report.sound, 6);
  EXPECT_FALSE(std::filesystem::exists(stopped.string() + "-journal"));
}

TEST(CacheVerify, HotJournalOnAReadOnlyFileIsReportedNotMisread) {
  TempDir dir;
  const auto stopped = stopped_writer_copy(dir, 3);
  std::filesystem::permissions(stopped, std::filesystem::perms::owner_read);
  if (::access(stopped.c_str(), W_OK) == 0)
    GTEST_SKIP() << "running as root: chmod does not stop root";
  const auto report = verify_cache_file(stopped);
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(mentions(report, "cannot be rolled back")) << all_problems(report);
}

}  // namespace
}  // namespace moejit
