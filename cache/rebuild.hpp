#pragma once
// This build's side of a cache key (NVRTC version, template hash, generator version), and
// rebuilding an entry's CUBIN from its key and config, which is how a file from elsewhere is
// checked: NVRTC compiles the same source for the same target to the same bytes.
#include <cstdint>
#include <string>

#include "cache/store.hpp"
#include "compiler/nvrtc_compiler.hpp"

namespace moejit {

// The key of (spec, token bucket) on `device` for kernels compiled by this build.
CacheKey current_key(const DeviceIdentity& device, const ProjectionSpec& spec,
                     std::int64_t token_bucket);

// Empty when this build compiles `key` exactly as it was compiled; otherwise which of NVRTC,
// templates and generator differ ("template hash 1234abcd, this build's 5678ef01").
std::string build_difference(const CacheKey& key);

// Compiles the entry's source for its key's arch with this build. Throws InvalidArgument for a
// spec, config or arch that cannot be compiled, CompileError when NVRTC fails.
CompiledKernel rebuild_kernel(const CacheEntry& entry);

}  // namespace moejit
