#pragma once
// A private scratch directory per fuzzing process, for targets that must see their input as a file.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace moejit::fuzz {

inline const std::filesystem::path& scratch_directory() {
  static const std::filesystem::path directory = [] {
    auto path =
        std::filesystem::temp_directory_path() / ("moejit-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
    return path;
  }();
  return directory;
}

// Writes the input to `name` in the scratch directory, replacing what was there.
inline std::filesystem::path input_file(const char* name, const std::uint8_t* data,
                                        std::size_t size) {
  const auto path = scratch_directory() / name;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Removes everything a run left in the scratch directory (moved-aside files, WAL, journals).
inline void clear_scratch() {
  std::error_code ignored;
  for (const auto& file : std::filesystem::directory_iterator(scratch_directory(), ignored))
    std::filesystem::remove_all(file.path(), ignored);
}

}  // namespace moejit::fuzz
