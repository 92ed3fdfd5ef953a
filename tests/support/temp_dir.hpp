#pragma once
// A fresh directory under the system temp directory, removed with its contents on destruction, so
// that every test gets its own cache files.
#include <filesystem>
#include <string>

namespace moejit::test {

class TempDir {
 public:
  // Throws std::filesystem::filesystem_error naming the template when creation fails.
  explicit TempDir(const std::string& prefix = "moejit-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace moejit::test
