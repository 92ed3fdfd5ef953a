#include "compiler/ptxas_report.hpp"

#include <regex>
#include <string>

namespace moejit {
namespace {

int capture_int(const std::string& text, const std::regex& pattern) {
  std::smatch m;
  return std::regex_search(text, m, pattern) ? std::stoi(m[1].str()) : 0;
}

}  // namespace

PtxasReport parse_ptxas_report(std::string_view log, std::string_view lowered_name) {
  // The report for one function runs from its "Compiling entry function" line to the next one.
  const std::string text(log);
  const std::string marker = "Compiling entry function '";
  std::size_t begin = std::string::npos;
  for (std::size_t at = text.find(marker); at != std::string::npos;
       at = text.find(marker, at + 1)) {
    const std::size_t name_begin = at + marker.size();
    const std::size_t name_end = text.find('\'', name_begin);
    if (lowered_name.empty() ||
        text.compare(name_begin, name_end - name_begin, lowered_name) == 0) {
      begin = at;
      break;
    }
  }
  PtxasReport report;
  if (begin == std::string::npos) return report;
  const std::size_t end = text.find(marker, begin + 1);
  const std::string section = text.substr(begin, end == std::string::npos ? end : end - begin);

  static const std::regex kRegisters(R"(Used (\d+) registers)");
  static const std::regex kSpillStores(R"((\d+) bytes spill stores)");
  static const std::regex kSpillLoads(R"((\d+) bytes spill loads)");
  static const std::regex kStack(R"((\d+) bytes stack frame)");
  static const std::regex kSmem(R"((\d+) bytes smem)");
  report.registers = capture_int(section, kRegisters);
  report.spill_stores = capture_int(section, kSpillStores);
  report.spill_loads = capture_int(section, kSpillLoads);
  report.stack_frame = capture_int(section, kStack);
  report.static_smem = capture_int(section, kSmem);
  report.found = std::regex_search(section, kRegisters);
  return report;
}

}  // namespace moejit
