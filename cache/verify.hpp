#pragma once
// `moejit verify`: everything that can be checked about a cache file without a GPU, reported
// rather than thrown. The file is only read (through an in-memory copy), never moved; the one
// write is SQLite rolling back the journal of a writer killed mid-transaction, which restores the
// last committed state (what any process opening the file does first).
#include <filesystem>
#include <string>
#include <vector>

namespace moejit {

struct VerifyReport {
  std::filesystem::path path;
  int schema_version = 0;
  int entries = 0;                    // rows in the file
  int sound = 0;                      // rows that pass every check
  std::vector<std::string> problems;  // one line each: what is wrong and where
  std::vector<std::string> notes;     // worth knowing, not wrong (older schema, stale entries)
  bool ok() const { return problems.empty(); }
};

// Checks that the file is a SQLite database that passes SQLite's integrity check, holds moejit's
// schema (this version or an earlier one), and that every entry decodes, matches its CUBIN
// checksum, holds an ELF binary that contains its kernel's name, and has a valid spec and config.
VerifyReport verify_cache_file(const std::filesystem::path& path);

}  // namespace moejit
