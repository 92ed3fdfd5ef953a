#include "cli/cache_option.hpp"

namespace moejit::cli {

void add_cache_option(CLI::App& command, std::string& path) {
  command.add_option("--cache", path,
                     "SQLite cache file (default: $MOEJIT_CACHE, else "
                     "$XDG_CACHE_HOME/moejit/cache.sqlite, else ~/.cache/moejit/cache.sqlite)");
}

std::filesystem::path resolve_cache_path(const std::string& path) {
  return path.empty() ? default_cache_path() : std::filesystem::path(path);
}

std::optional<CacheStore> open_existing(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  return CacheStore(path);
}

}  // namespace moejit::cli
