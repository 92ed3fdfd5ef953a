#include "cache/transfer.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <system_error>

#include "compiler/error.hpp"

namespace moejit {
namespace {

// A file written under a temporary name and renamed into place by commit(); deleted otherwise.
class PendingFile {
 public:
  explicit PendingFile(const std::filesystem::path& target)
      : target_(target), temporary_(target.string() + fmt::format(".tmp-{}", ::getpid())) {
    remove_temporary();
  }
  ~PendingFile() {
    if (!committed_) remove_temporary();
  }
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;
  const std::filesystem::path& path() const { return temporary_; }

  void commit() {
    std::error_code error;
    std::filesystem::rename(temporary_, target_, error);
    if (error)
      throw CacheError(fmt::format("cannot rename '{}' to '{}': {}", temporary_.string(),
                                   target_.string(), error.message()));
    committed_ = true;
  }

 private:
  void remove_temporary() noexcept {
    std::error_code ignored;
    std::filesystem::remove(temporary_, ignored);
    std::filesystem::remove(temporary_.string() + "-journal", ignored);
  }
  std::filesystem::path target_, temporary_;
  bool committed_ = false;
};

void check_output(const std::filesystem::path& out, bool overwrite) {
  if (out.empty()) throw InvalidArgument("output file", "''", "a file name");
  if (!overwrite && std::filesystem::exists(out))
    throw InvalidArgument("output file", "'" + out.string() + "'",
                          "a file that does not exist yet (or --force to replace it)");
  std::error_code error;
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path(), error);
  if (error)
    throw CacheError(fmt::format("cannot create directory '{}': {}", out.parent_path().string(),
                                 error.message()));
}

std::int64_t size_of_file(const std::filesystem::path& path) {
  std::error_code error;
  const auto size = std::filesystem::file_size(path, error);
  return error ? 0 : static_cast<std::int64_t>(size);
}

bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code error;
  return std::filesystem::equivalent(a, b, error);
}

}  // namespace

ExportReport export_cache(const CacheStore& store, const std::filesystem::path& out,
                          const EntryFilter& filter, bool overwrite) {
  check_output(out, overwrite);
  const ScanResult source = store.scan();
  std::vector<CacheEntry> selected;
  const std::int64_t now = unix_now();
  for (const CacheEntry& entry : source.entries)
    if (filter.matches(entry, now)) selected.push_back(entry);
  PendingFile pending(out);
  {
    CacheStore target(pending.path(), StoreOptions{.standalone = true});
    target.merge(selected);
  }  // closed before the rename: the file is complete and has no journal
  pending.commit();
  return ExportReport{static_cast<int>(selected.size()), static_cast<int>(source.damaged.size()),
                      size_of_file(out)};
}

MergeReport merge_caches(const std::filesystem::path& first, const std::filesystem::path& second,
                         const std::filesystem::path& out, bool overwrite) {
  for (const auto& input : {first, second})
    if (same_file(input, out))
      throw InvalidArgument("output file", "'" + out.string() + "'",
                            "a file other than the inputs");
  check_output(out, overwrite);
  const ScanResult a = CacheStore::open_untrusted(first).scan();
  const ScanResult b = CacheStore::open_untrusted(second).scan();
  MergeReport report{static_cast<int>(a.entries.size()), static_cast<int>(b.entries.size())};
  report.damaged = a.damaged;
  report.damaged.insert(report.damaged.end(), b.damaged.begin(), b.damaged.end());
  PendingFile pending(out);
  {
    CacheStore target(pending.path(), StoreOptions{.standalone = true});
    target.merge(a.entries);
    report.second_into_first = target.merge(b.entries);
    report.entries = static_cast<int>(target.scan().entries.size());
  }
  pending.commit();
  return report;
}

}  // namespace moejit
