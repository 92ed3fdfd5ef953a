#include "compiler/nvrtc_compiler.hpp"

#include <fmt/format.h>
#include <nvrtc.h>

#include <memory>
#include <regex>

#include "compiler/error.hpp"
#include "templates/embedded.hpp"

namespace moejit {
namespace {

struct ProgramDeleter {
  void operator()(nvrtcProgram program) const { nvrtcDestroyProgram(&program); }
};
using Program = std::unique_ptr<std::remove_pointer_t<nvrtcProgram>, ProgramDeleter>;

std::string program_log(nvrtcProgram program) {
  std::size_t size = 0;
  if (nvrtcGetProgramLogSize(program, &size) != NVRTC_SUCCESS || size == 0) return {};
  std::string log(size, '\0');
  nvrtcGetProgramLog(program, log.data());
  while (!log.empty() && log.back() == '\0') log.pop_back();
  return log;
}

void check(nvrtcResult result, const char* call, const CompileRequest& request) {
  if (result != NVRTC_SUCCESS)
    throw CompileError(
        fmt::format("{} failed: {} (key: {})", call, nvrtcGetErrorString(result), request.key));
}

}  // namespace

void validate_arch(const std::string& arch) {
  static const std::regex kArch(R"(sm_\d{2,3}a?)");
  if (!std::regex_match(arch, kArch))
    throw InvalidArgument("arch", "'" + arch + "'",
                          "sm_<compute capability>, e.g. sm_90a or sm_80");
}

std::vector<std::string> compile_options(const std::string& arch) {
  return {"-arch=" + arch, "-std=c++17", "-Xptxas=-v", "-default-device", "-DMOEJIT_NVRTC=1"};
}

std::string nvrtc_version() {
  int major = 0, minor = 0;
  nvrtcVersion(&major, &minor);
  return fmt::format("{}.{}", major, minor);
}

CompiledKernel compile(const CompileRequest& request) {
  validate_arch(request.arch);
  std::vector<const char*> header_texts, header_names;
  // NVRTC wants NUL-terminated strings; the embedded texts are string literals, so they are.
  for (const auto& file : templates::files()) {
    header_texts.push_back(file.text.data());
    header_names.push_back(file.name.data());
  }
  nvrtcProgram raw = nullptr;
  check(nvrtcCreateProgram(&raw, request.source.c_str(), "moejit_kernel.cu",
                           static_cast<int>(header_texts.size()), header_texts.data(),
                           header_names.data()),
        "nvrtcCreateProgram", request);
  Program program(raw);
  check(nvrtcAddNameExpression(raw, request.name_expression.c_str()), "nvrtcAddNameExpression",
        request);

  const std::vector<std::string> options = compile_options(request.arch);
  std::vector<const char*> option_ptrs;
  for (const auto& o : options) option_ptrs.push_back(o.c_str());
  const nvrtcResult result =
      nvrtcCompileProgram(raw, static_cast<int>(option_ptrs.size()), option_ptrs.data());
  CompiledKernel out;
  out.log = program_log(raw);
  if (result != NVRTC_SUCCESS)
    throw CompileError(fmt::format(
        "NVRTC failed to compile {} ({}).\nkey: {}\noptions: {}\nlog:\n{}", request.name_expression,
        nvrtcGetErrorString(result), request.key, fmt::join(options, " "), out.log));

  const char* lowered = nullptr;
  check(nvrtcGetLoweredName(raw, request.name_expression.c_str(), &lowered), "nvrtcGetLoweredName",
        request);
  out.lowered_name = lowered;
  std::size_t cubin_size = 0;
  check(nvrtcGetCUBINSize(raw, &cubin_size), "nvrtcGetCUBINSize", request);
  out.cubin.resize(cubin_size);
  check(nvrtcGetCUBIN(raw, out.cubin.data()), "nvrtcGetCUBIN", request);
  out.report = parse_ptxas_report(out.log, out.lowered_name);
  return out;
}

}  // namespace moejit
