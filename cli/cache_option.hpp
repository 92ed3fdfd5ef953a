#pragma once
// The --cache option every subcommand shares, and opening the cache without creating it.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <optional>
#include <string>

#include "cache/store.hpp"

namespace moejit::cli {

// Adds `--cache PATH` to `command`, stored in `path` (empty: default_cache_path()).
void add_cache_option(CLI::App& command, std::string& path);

// `path`, or default_cache_path() when it is empty.
std::filesystem::path resolve_cache_path(const std::string& path);

// The store at `path`, or nullopt when there is no file there: reading commands must not create
// an empty database as a side effect.
std::optional<CacheStore> open_existing(const std::filesystem::path& path);

}  // namespace moejit::cli
