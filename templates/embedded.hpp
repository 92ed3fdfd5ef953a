#pragma once
// The device templates, embedded into the binary at build time (see embed.cmake).
#include <span>
#include <string_view>

namespace moejit::templates {

struct EmbeddedFile {
  std::string_view name;  // include name, e.g. "moejit/forward.cuh"
  std::string_view text;
};

// Every embedded header, sorted by name.
std::span<const EmbeddedFile> files();

// SHA-256 over the names and contents of every embedded header; part of every cache key, so that
// editing a template invalidates the kernels compiled from the old text.
std::string_view bundle_hash();

}  // namespace moejit::templates
