#pragma once
// What the cache needs to know about the file under it: whether it looks like SQLite at all, which
// file it is (to tell whether another process already replaced it), whether the file system can
// share a WAL database between processes, and moving a damaged file out of the way.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace moejit {

enum class FileState { absent, not_regular, empty, sqlite, not_sqlite };

// Reads at most the 16-byte SQLite header. A file that cannot be read counts as not_sqlite.
FileState probe_file(const std::filesystem::path& path);

// Device and inode: equal ids mean the same file even after a rename.
struct FileId {
  std::uint64_t device = 0, inode = 0;
  bool operator==(const FileId&) const = default;
};
std::optional<FileId> file_id(const std::filesystem::path& path);

// The name of the network file system that holds `directory` ("nfs", "cifs", "lustre", ...), or
// nullopt for a local one. WAL needs shared memory between the processes of one host, and SQLite's
// locks are unreliable over the network, so moejit keeps a private copy there.
std::optional<std::string> network_file_system(const std::filesystem::path& directory);
// The name of the network file system with magic number `type` (statfs f_type), or nullopt.
std::optional<std::string> network_file_system_name(std::int64_t type);

// Renames `path` to "<path>.corrupt-<unix time>" (and its -wal beside it; its -shm is deleted, so
// that a new database never replays an old log). Returns the new name; throws CacheError naming
// both paths when the rename fails.
std::filesystem::path move_aside(const std::filesystem::path& path);

}  // namespace moejit
