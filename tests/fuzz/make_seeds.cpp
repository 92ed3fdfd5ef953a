// Writes the seed corpus of import_fuzz: small sound caches (with tiny stand-in CUBINs, so that
// mutations reach the rows rather than spending themselves on kernel bytes).
#include <fmt/format.h>

#include <filesystem>
#include <iostream>

#include "cache/rebuild.hpp"
#include "cache/store.hpp"

namespace {

moejit::CacheEntry tiny_entry(int index, bool tuned) {
  moejit::CacheEntry entry;
  moejit::ProjectionSpec spec;
  spec.experts = 8;
  spec.top_k = 2;
  spec.in_features = 64 * (index + 1);
  spec.out_features = 128;
  spec.rank = 16;
  entry.key = moejit::current_key(moejit::DeviceIdentity::offline("sm_90a"), spec, 1024);
  entry.kernel_name = fmt::format("_Z6kernelILi{}EEvv", index);
  const std::string elf =
      "\x7f"
      "ELF" +
      entry.kernel_name;
  entry.cubin.assign(elf.begin(), elf.end());
  entry.tuned = tuned;
  entry.time_ms = tuned ? 0.5 + index : -1;
  return entry;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_seeds DIRECTORY\n";
    return 2;
  }
  const std::filesystem::path directory = argv[1];
  std::filesystem::create_directories(directory);
  const auto path = directory / "three-entries.sqlite";
  std::filesystem::remove(path);
  moejit::CacheStore store(path, {.standalone = true});
  for (int i = 0; i < 3; ++i) store.put(tiny_entry(i, i != 1));
  return 0;
}
