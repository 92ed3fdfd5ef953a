#pragma once
// This build's side of a cache key (NVRTC version, template hash, generator version), and
// rebuilding an entry's CUBIN from its key and config, which is how a file from elsewhere is
// checked: NVRTC compiles the same source for the same target to the same code. Not to the same
// bytes: the names of internal-linkage symbols carry a tag unique to each compilation
// ("_INTERNAL_<hex>_16_moejit_kernel_cu_<hex>_<pid>"), which same_build() sets aside.
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

// True when the two CUBINs are byte for byte equal once NVRTC's per-compilation tags are masked.
// Tags of different lengths (e.g. process ids of 5 and 6 digits) shift the ELF layout, so such
// pairs compare unequal: a false "different", never a false "same".
bool same_build(const std::vector<char>& a, const std::vector<char>& b);

}  // namespace moejit
