// libFuzzer target: arbitrary bytes as a cache file from elsewhere (import, verify) and as the
// user's own cache file (open, look up, scan). Nothing may crash: every rejection is a
// moejit::Error or a warning.
#include <cstdint>

#include "cache/import.hpp"
#include "cache/verify.hpp"
#include "compiler/error.hpp"
#include "fuzz_files.hpp"

namespace {

// Stands in for NVRTC: the binary compiles to itself, so the comparison and storing paths run.
moejit::CompiledKernel same_binary(const moejit::CacheEntry& e) {
  return {e.cubin, e.kernel_name, e.report, ""};
}

void ignore(const std::string&) {}

void import_both_ways(const std::filesystem::path& file) {
  for (const bool trust : {true, false}) {
    moejit::CacheStore local(":memory:", {.warn = ignore});
    try {
      moejit::import_cache(local, file, {.trust_binaries = trust, .rebuild = same_binary});
    } catch (const moejit::Error&) {
      // A rejected file is the expected outcome for most inputs.
    }
  }
}

void open_as_own_cache(const std::filesystem::path& file) {
  moejit::CacheStore store(file, {.warn = ignore});  // never throws for the file's sake
  (void)store.scan();
  (void)store.lookup(moejit::CacheKey{});
  (void)store.integrity_problems();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = moejit::fuzz::input_file("input.sqlite", data, size);
  import_both_ways(file);
  (void)moejit::verify_cache_file(file);
  try {
    open_as_own_cache(file);
  } catch (const moejit::Error&) {
    // scan() and integrity_problems() report a damaged in-memory stand-in by throwing.
  }
  moejit::fuzz::clear_scratch();
  return 0;
}
