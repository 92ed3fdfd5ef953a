#include "cache/file_system.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <array>
#include <chrono>
#include <cstring>
#include <fstream>
#include <utility>

#include "compiler/error.hpp"

namespace moejit {
namespace {

constexpr char kSqliteMagic[] = "SQLite format 3";  // 16 bytes with its terminating zero

std::filesystem::path with_suffix(const std::filesystem::path& path, std::string_view suffix) {
  return std::filesystem::path(path.string() + std::string(suffix));
}

// statfs f_type values (linux/magic.h and the file systems' own headers).
constexpr std::pair<std::int64_t, const char*> kNetworkFileSystems[] = {
    {0x6969, "nfs"},        {0x517b, "smb"},      {0xff534d42, "cifs"}, {0xfe534d42, "smb2"},
    {0x0bd00bd0, "lustre"}, {0x47504653, "gpfs"}, {0x00c36400, "ceph"}, {0x01021997, "9p"},
    {0x73757245, "coda"},   {0x6b414653, "afs"},  {0x5346414f, "afs"},  {0x013111a8, "ibrix"},
    {0x19830326, "beegfs"},
};

}  // namespace

FileState probe_file(const std::filesystem::path& path) {
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (status.type() == std::filesystem::file_type::not_found) return FileState::absent;
  if (status.type() != std::filesystem::file_type::regular) return FileState::not_regular;
  if (std::filesystem::file_size(path, error) == 0 && !error) return FileState::empty;
  std::ifstream in(path, std::ios::binary);
  std::array<char, sizeof kSqliteMagic> header{};
  in.read(header.data(), header.size());
  if (in.gcount() != static_cast<std::streamsize>(header.size())) return FileState::not_sqlite;
  return std::memcmp(header.data(), kSqliteMagic, header.size()) == 0 ? FileState::sqlite
                                                                      : FileState::not_sqlite;
}

std::optional<FileId> file_id(const std::filesystem::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return std::nullopt;
  return FileId{static_cast<std::uint64_t>(info.st_dev), static_cast<std::uint64_t>(info.st_ino)};
}

std::optional<std::string> network_file_system_name(std::int64_t type) {
  for (const auto& [magic, name] : kNetworkFileSystems)
    if (magic == (type & 0xffffffff)) return name;
  return std::nullopt;
}

std::optional<std::string> network_file_system(const std::filesystem::path& directory) {
  struct statfs info {};
  if (::statfs(directory.c_str(), &info) != 0) return std::nullopt;
  return network_file_system_name(static_cast<std::int64_t>(info.f_type));
}

std::filesystem::path move_aside(const std::filesystem::path& path) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  auto aside = with_suffix(path, fmt::format(".corrupt-{}", now));
  for (int n = 2; std::filesystem::exists(aside); ++n)
    aside = with_suffix(path, fmt::format(".corrupt-{}-{}", now, n));
  std::error_code error;
  std::filesystem::rename(path, aside, error);
  if (error)
    throw CacheError(fmt::format("cannot move the damaged cache '{}' to '{}': {}", path.string(),
                                 aside.string(), error.message()));
  std::filesystem::rename(with_suffix(path, "-wal"), with_suffix(aside, "-wal"), error);
  std::filesystem::remove(with_suffix(path, "-shm"), error);
  return aside;
}

}  // namespace moejit
