#pragma once
// In-process compilation of generated CUDA source with NVRTC. Thread-safe: every call owns its
// nvrtcProgram, so candidates compile in parallel.
#include <string>
#include <vector>

#include "compiler/ptxas_report.hpp"

namespace moejit {

struct CompileRequest {
  std::string source;           // the rendered stub; includes resolve to the embedded templates
  std::string name_expression;  // e.g. "moejit::moe_lora_forward<moejit_cfg::Config>"
  std::string arch;             // "sm_90a", "sm_89", "sm_80", ...
  std::string key;              // cache key text, for error messages only
};

struct CompiledKernel {
  std::vector<char> cubin;
  std::string lowered_name;  // the mangled name to look up in the module
  PtxasReport report;
  std::string log;
};

// Throws CompileError with the NVRTC log, the options and the key when compilation fails.
CompiledKernel compile(const CompileRequest& request);

// The options compile() passes to NVRTC for `arch` (part of the cache key).
std::vector<std::string> compile_options(const std::string& arch);

// "13.0": the NVRTC library's version (part of the cache key).
std::string nvrtc_version();

// Throws InvalidArgument unless `arch` is "sm_<digits>" with an optional "a" suffix.
void validate_arch(const std::string& arch);

}  // namespace moejit
