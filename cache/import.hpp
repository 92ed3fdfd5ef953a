#pragma once
// Importing a cache file from elsewhere. A CUBIN is machine code that will run on the GPU, so by
// default only the configs and timings are taken on trust: every binary is compiled again here,
// compared with the imported one (same_build), and the local build is what gets stored; an entry
// that this build cannot compile as it was compiled (another NVRTC, template or generator
// version) is dropped. --trust-binaries keeps the binaries as they are.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "cache/store.hpp"
#include "compiler/nvrtc_compiler.hpp"

namespace moejit {

struct ImportOptions {
  bool trust_binaries = false;
  // Compiles an entry here (default: rebuild_kernel); tests and the fuzzer substitute their own.
  std::function<CompiledKernel(const CacheEntry&)> rebuild;
  int threads = 0;  // parallel rebuilds; 0: one per core
};

struct ImportReport {
  int read = 0;                      // sound entries in the file
  int identical_binaries = 0;        // rebuilt here to the same bytes
  int rebuilt_binaries = 0;          // rebuilt here to other bytes: the local build is stored
  std::vector<std::string> notes;    // one line per rebuilt binary
  std::vector<std::string> dropped;  // one line per entry not imported, with the reason
  MergeCounts stored;                // how the kept entries fared against the local cache
};

// Reads `file` with CacheStore::open_untrusted (throws CacheError when it is unusable) and merges
// its entries into `local` by the merge rule (is_better).
ImportReport import_cache(CacheStore& local, const std::filesystem::path& file,
                          const ImportOptions& options);

}  // namespace moejit
