#include "cache/verify.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "cache/entry_row.hpp"
#include "cache/file_system.hpp"
#include "cache/rebuild.hpp"
#include "cache/schema.hpp"
#include "cache/store_open.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

std::string file_problem(FileState state) {
  switch (state) {
    case FileState::absent:
      return "no such file";
    case FileState::not_regular:
      return "not a regular file";
    case FileState::not_sqlite:
      return "not a SQLite database (wrong header)";
    case FileState::empty:  // a cache nothing was written to yet: see readable_copy
    case FileState::sqlite:
      break;
  }
  return {};
}

bool contains(const std::vector<char>& bytes, const std::string& text) {
  return !text.empty() &&
         std::search(bytes.begin(), bytes.end(), text.begin(), text.end()) != bytes.end();
}

// Why the entry would not load (short of a GPU), or empty.
std::string entry_problem(const CacheEntry& e) {
  static constexpr char kElfMagic[] = {0x7f, 'E', 'L', 'F'};
  if (e.cubin.size() < sizeof kElfMagic || !std::equal(kElfMagic, kElfMagic + 4, e.cubin.begin()))
    return fmt::format("the CUBIN ({} bytes) is not an ELF file", e.cubin.size());
  if (!contains(e.cubin, e.kernel_name))
    return fmt::format("the CUBIN does not contain its kernel '{}'", e.kernel_name);
  try {
    e.key.spec.validate();
    e.config.validate();
  } catch (const Error& error) {
    return error.what();
  }
  return {};
}

// Opens, checks and (in memory) migrates the file; nullopt after reporting why it cannot be read.
std::optional<sqlite::Database> readable_copy(VerifyReport& report) {
  // An empty file, or a SQLite file without tables, is what a process leaves when it stops
  // between creating the file and writing the schema: moejit creates the schema when it opens
  // it, so nothing is wrong and nothing was lost.
  constexpr const char* kNotWrittenYet =
      "no moejit tables yet (a new file, or a process stopped before writing them): moejit "
      "creates them when it opens the file";
  const FileState state = probe_file(report.path);
  if (state == FileState::empty) {
    report.notes.push_back(kNotWrittenYet);
    return std::nullopt;
  }
  if (const auto problem = file_problem(state); !problem.empty()) {
    report.problems.push_back(problem);
    return std::nullopt;
  }
  try {
    sqlite::Database copy = copy_into_memory(report.path);
    for (const auto& line : copy.integrity_problems())
      report.problems.push_back("SQLite integrity check: " + line);
    const schema::Classification found = schema::classify(copy);
    report.schema_version = found.version;
    if (found.kind == schema::Kind::empty) {
      report.notes.push_back(kNotWrittenYet);
      return std::nullopt;
    }
    if (found.kind == schema::Kind::foreign) {
      report.problems.push_back("not a moejit cache: " + found.why);
      return std::nullopt;
    }
    if (found.kind == schema::Kind::newer) {
      report.problems.push_back(fmt::format("schema version {} is newer than this moejit's {}",
                                            found.version, kSchemaVersion));
      return std::nullopt;
    }
    if (found.kind == schema::Kind::older) {
      report.notes.push_back(
          fmt::format("schema version {}: moejit migrates it to {} when it "
                      "opens the file",
                      found.version, kSchemaVersion));
      schema::migrate(copy);
    }
    return copy;
  } catch (const CacheError& error) {
    report.problems.push_back(fmt::format("cannot be read: {}", error.what()));
    return std::nullopt;
  }
}

void check_entries(const sqlite::Database& db, VerifyReport& report) {
  const ScanResult scanned = scan_entries(db);
  report.entries = static_cast<int>(scanned.entries.size() + scanned.damaged.size());
  for (const DamagedRow& row : scanned.damaged) report.problems.push_back(row.reason);
  int stale = 0;
  for (const CacheEntry& e : scanned.entries) {
    if (const auto problem = entry_problem(e); !problem.empty()) {
      report.problems.push_back(
          fmt::format("entry {} ({}): {}", e.key.id(), e.key.spec.describe(), problem));
      continue;
    }
    ++report.sound;
    stale += build_difference(e.key).empty() ? 0 : 1;
  }
  if (stale > 0)
    report.notes.push_back(fmt::format(
        "{} entries were built by another NVRTC, template or generator version and are not used "
        "by this build (`moejit prune --stale` removes them)",
        stale));
}

}  // namespace

VerifyReport verify_cache_file(const std::filesystem::path& path) {
  VerifyReport report;
  report.path = path;
  if (const auto copy = readable_copy(report)) {
    try {
      check_entries(*copy, report);
    } catch (const CacheError& error) {
      report.problems.push_back(fmt::format("cannot be read: {}", error.what()));
    }
  }
  return report;
}

}  // namespace moejit
