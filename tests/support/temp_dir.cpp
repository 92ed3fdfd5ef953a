#include "tests/support/temp_dir.hpp"

#include <stdlib.h>

#include <cerrno>
#include <system_error>
#include <vector>

namespace moejit::test {

TempDir::TempDir(const std::string& prefix) {
  const std::string pattern =
      (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  if (!mkdtemp(name.data()))  // atomic and unique, unlike picking a name and creating it
    throw std::filesystem::filesystem_error("mkdtemp", pattern,
                                            std::error_code(errno, std::generic_category()));
  path_ = name.data();
}

TempDir::~TempDir() {
  std::error_code ignored;  // a destructor must not throw; a leftover temp dir is harmless
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace moejit::test
