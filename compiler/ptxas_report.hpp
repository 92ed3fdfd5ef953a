#pragma once
// The resource report ptxas prints with -v, parsed from the NVRTC log.
#include <string_view>

namespace moejit {

struct PtxasReport {
  int registers = 0;
  int spill_stores = 0;  // bytes
  int spill_loads = 0;   // bytes
  int static_smem = 0;   // bytes
  int stack_frame = 0;   // bytes
  bool found = false;    // false when the log held no report for the kernel

  bool spills() const { return spill_stores > 0 || spill_loads > 0; }
};

// Reads the report of the entry function `lowered_name` (or the first one when empty).
PtxasReport parse_ptxas_report(std::string_view log, std::string_view lowered_name = {});

}  // namespace moejit
