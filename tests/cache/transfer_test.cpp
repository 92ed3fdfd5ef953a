// export -> import gives identical entries; merge keeps the better entry of a key; import checks
// binaries by rebuilding them unless told to trust them.
#include <gtest/gtest.h>

#include <algorithm>

#include "cache/import.hpp"
#include "cache/rebuild.hpp"
#include "cache/transfer.hpp"
#include "cache_test_support.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

using testing::sample_entry;
using testing::sample_key;
using testing::TempDir;

// A key this build can rebuild: this build's NVRTC, templates and generator.
CacheKey local_key(int index) {
  auto key = current_key(sample_key().device, sample_key().spec, std::int64_t{1} << index);
  key.spec.out_features = 64 * (1 + index);  // one binary per spec: distinct specs
  return key;
}

std::vector<CacheEntry> fill(CacheStore& store, int count) {
  std::vector<CacheEntry> entries;
  for (int i = 0; i < count; ++i) {
    entries.push_back(sample_entry(local_key(i), i % 3 != 0, i + 1));
    store.put(entries.back());
  }
  return entries;
}

void expect_same_entries(std::vector<CacheEntry> actual, std::vector<CacheEntry> expected) {
  ASSERT_EQ(actual.size(), expected.size());
  const auto by_id = [](const CacheEntry& a, const CacheEntry& b) {
    return a.key.id() < b.key.id();
  };
  std::sort(actual.begin(), actual.end(), by_id);
  std::sort(expected.begin(), expected.end(), by_id);
  for (std::size_t i = 0; i < actual.size(); ++i)
    testing::expect_same_entry(actual[i], expected[i]);
}

// The rebuild of an entry: its own binary, as if NVRTC reproduced it.
CompiledKernel same_binary(const CacheEntry& e) {
  return CompiledKernel{e.cubin, e.kernel_name, e.report, ""};
}

TEST(CacheTransfer, ExportThenImportGivesIdenticalEntries) {
  TempDir dir;
  CacheStore source(dir / "source.sqlite");
  const auto entries = fill(source, 30);
  const auto report = export_cache(source, dir / "shipped.sqlite", {}, false);
  EXPECT_EQ(report.exported, 30);
  EXPECT_GT(report.bytes, 30 * 3000);
  EXPECT_FALSE(std::filesystem::exists(dir / "shipped.sqlite-wal"));
  CacheStore target(dir / "target.sqlite");
  const auto imported = import_cache(target, dir / "shipped.sqlite", {.rebuild = same_binary});
  EXPECT_EQ(imported.read, 30);
  EXPECT_EQ(imported.identical_binaries, 30);
  EXPECT_TRUE(imported.dropped.empty()) << imported.dropped[0];
  EXPECT_EQ(imported.stored.added, 30);
  expect_same_entries(target.list(), entries);
  EXPECT_EQ(import_cache(target, dir / "shipped.sqlite", {.trust_binaries = true}).stored.kept, 30);
}

TEST(CacheTransfer, ExportSelectsByFilterAndRefusesToOverwrite) {
  TempDir dir;
  CacheStore source(dir / "source.sqlite");
  fill(source, 12);
  const auto report = export_cache(source, dir / "tuned.sqlite", {.tuned = true}, false);
  EXPECT_EQ(report.exported, 8);
  for (const auto& e : CacheStore::open_untrusted(dir / "tuned.sqlite").list())
    EXPECT_TRUE(e.tuned);
  EXPECT_THROW(export_cache(source, dir / "tuned.sqlite", {}, false), InvalidArgument);
  EXPECT_EQ(export_cache(source, dir / "tuned.sqlite", {}, true).exported, 12);
}

TEST(CacheTransfer, ImportRebuildsDifferentBinariesAndDropsUncompilableOnes) {
  TempDir dir;
  CacheStore source(dir / "source.sqlite");
  const auto entries = fill(source, 3);
  export_cache(source, dir / "shipped.sqlite", {}, false);
  const auto tampered_id = entries[1].key.id();
  const auto rebuild = [&](const CacheEntry& e) {
    if (e.key.spec.out_features == entries[2].key.spec.out_features)
      throw CompileError("NVRTC refused it");
    CompiledKernel kernel = same_binary(e);
    if (e.key.id() == tampered_id) kernel.cubin[10] ^= 1;  // the shipped binary is not ours
    return kernel;
  };
  CacheStore target(dir / "target.sqlite");
  const auto report = import_cache(target, dir / "shipped.sqlite", {.rebuild = rebuild});
  EXPECT_EQ(report.identical_binaries, 1);
  EXPECT_EQ(report.rebuilt_binaries, 1);
  ASSERT_EQ(report.dropped.size(), 1u);
  EXPECT_NE(report.dropped[0].find("NVRTC refused it"), std::string::npos) << report.dropped[0];
  const auto stored = target.lookup(entries[1].key);
  ASSERT_EQ(stored.status, LookupStatus::hit);
  EXPECT_NE(stored.entry->cubin, entries[1].cubin);
  EXPECT_EQ(stored.entry->config, entries[1].config);
  EXPECT_EQ(stored.entry->time_ms, entries[1].time_ms);
}

TEST(CacheTransfer, EntriesOfAnotherBuildNeedTrust) {
  TempDir dir;
  CacheStore source(dir / "source.sqlite");
  source.put(sample_entry(sample_key(), true));  // template hash "0123456789abcdef"
  export_cache(source, dir / "shipped.sqlite", {}, false);
  CacheStore target(dir / "target.sqlite");
  const auto checked = import_cache(target, dir / "shipped.sqlite", {.rebuild = same_binary});
  ASSERT_EQ(checked.dropped.size(), 1u);
  EXPECT_NE(checked.dropped[0].find("--trust-binaries"), std::string::npos) << checked.dropped[0];
  EXPECT_NE(checked.dropped[0].find("template hash 01234567"), std::string::npos);
  EXPECT_TRUE(target.list().empty());
  const auto trusted = import_cache(target, dir / "shipped.sqlite", {.trust_binaries = true});
  EXPECT_EQ(trusted.stored.added, 1);
  testing::expect_same_entry(target.list().at(0), sample_entry(sample_key(), true));
}

TEST(CacheTransfer, ImportOfAGarbageFileIsAnErrorNamingIt) {
  TempDir dir;
  testing::write_bytes(dir / "garbage.sqlite", std::string(5000, 'x'));
  CacheStore target(dir / "target.sqlite");
  try {
    import_cache(target, dir / "garbage.sqlite", {});
    ADD_FAILURE() << "imported garbage";
  } catch (const CacheError& error) {
    EXPECT_NE(std::string(error.what()).find((dir / "garbage.sqlite").string()), std::string::npos);
    EXPECT_NE(std::string(error.what()).find("not a SQLite database"), std::string::npos);
  }
  EXPECT_TRUE(std::filesystem::exists(dir / "garbage.sqlite"));  // an import never moves its input
}

TEST(CacheMerge, TunedBeatsUntunedAndFasterBeatsSlower) {
  TempDir dir;
  const auto key = [](int i) { return local_key(i); };
  auto timed = [&](int i, bool tuned, double ms, int seed) {
    auto entry = sample_entry(key(i), tuned, seed);
    entry.time_ms = tuned ? ms : -1;
    return entry;
  };
  {
    CacheStore a(dir / "a.sqlite"), b(dir / "b.sqlite");
    a.put(timed(0, false, 0, 1));  // key 0: untuned in A, tuned in B -> B
    b.put(timed(0, true, 2.0, 2));
    a.put(timed(1, true, 1.0, 3));  // key 1: A faster -> A
    b.put(timed(1, true, 1.5, 4));
    a.put(timed(2, true, 3.0, 5));  // key 2: B faster -> B
    b.put(timed(2, true, 2.5, 6));
    a.put(timed(3, true, 1.0, 7));  // key 3: tuned in A, untuned in B -> A
    b.put(timed(3, false, 0, 8));
    a.put(timed(4, true, 1.0, 9));  // keys 4 and 5: only in one input
    b.put(timed(5, false, 0, 10));
  }
  const auto report = merge_caches(dir / "a.sqlite", dir / "b.sqlite", dir / "out.sqlite", false);
  EXPECT_EQ(report.from_first, 5);
  EXPECT_EQ(report.from_second, 5);
  EXPECT_EQ(report.entries, 6);
  EXPECT_EQ(report.second_into_first.added, 1);
  EXPECT_EQ(report.second_into_first.replaced, 2);
  EXPECT_EQ(report.second_into_first.kept, 2);
  const CacheStore out = CacheStore::open_untrusted(dir / "out.sqlite");
  const std::pair<int, int> winners[] = {{0, 2}, {1, 3}, {2, 6}, {3, 7}, {4, 9}, {5, 10}};
  for (const auto& [index, seed] : winners) {
    const auto found = out.lookup(key(index));
    ASSERT_EQ(found.status, LookupStatus::hit) << index;
    EXPECT_EQ(found.entry->cubin, sample_entry(key(index), true, seed).cubin) << "key " << index;
  }
  EXPECT_THROW(merge_caches(dir / "a.sqlite", dir / "b.sqlite", dir / "a.sqlite", true),
               InvalidArgument);
}

}  // namespace
}  // namespace moejit

namespace moejit {
namespace {

// A real entry compiled by NVRTC (no GPU needed) for sm_80.
CacheEntry compiled_entry() {
  CacheEntry entry;
  entry.key = current_key(DeviceIdentity::offline("sm_80"), sample_key().spec, 1024);
  entry.key.spec.weights = WeightFormat::bf16;
  entry.key.spec.lora = DType::bf16;
  entry.key.spec.in_features = entry.key.spec.out_features = 256;
  entry.key.spec.has_bias = false;
  entry.key.spec.layout = WeightLayout::out_in;
  entry.key.spec.b_storage = BStorage::peft;
  const CompiledKernel kernel = rebuild_kernel(entry);
  entry.cubin = kernel.cubin;
  entry.kernel_name = kernel.lowered_name;
  entry.report = kernel.report;
  return entry;
}

TEST(CacheRebuild, NvrtcRebuildsTheSameBinaryAndATamperedOneDiffers) {
  const CacheEntry entry = compiled_entry();
  const CompiledKernel again = rebuild_kernel(entry);
  EXPECT_EQ(again.lowered_name, entry.kernel_name);
  EXPECT_TRUE(same_build(again.cubin, entry.cubin));
  auto tampered = entry.cubin;
  tampered[tampered.size() / 2] ^= 0x10;
  EXPECT_FALSE(same_build(again.cubin, tampered));
}

TEST(CacheRebuild, ImportWithRealCompilesStoresTheLocalBuild) {
  TempDir dir;
  {
    CacheStore source(dir / "source.sqlite");
    source.put(compiled_entry());
  }
  export_cache(CacheStore(dir / "source.sqlite"), dir / "shipped.sqlite", {}, false);
  CacheStore target(dir / "target.sqlite");
  const auto report = import_cache(target, dir / "shipped.sqlite", {});
  EXPECT_EQ(report.identical_binaries, 1) << (report.notes.empty() ? "" : report.notes[0]);
  EXPECT_TRUE(report.dropped.empty()) << report.dropped[0];
  EXPECT_EQ(target.list().size(), 1u);
}

}  // namespace
}  // namespace moejit
