// libFuzzer target: arbitrary bytes as a Hugging Face config.json. Every rejection must be an
// InvalidArgument naming the file or a field; anything else is a finding.
#include <cstdint>
#include <string_view>

#include "cli/hf_config.hpp"
#include "compiler/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto model = moejit::cli::parse_hf_config(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/config.json");
    // What parses must describe a layer the warm path accepts.
    if (model.layer.experts < 1 || model.layer.top_k < 1 ||
        model.layer.top_k > model.layer.experts || model.layer.hidden % 8 != 0 ||
        model.layer.intermediate % 8 != 0)
      __builtin_trap();
  } catch (const moejit::InvalidArgument&) {
  }
  return 0;
}
