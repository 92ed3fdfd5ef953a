#include "cli/entry_json.hpp"

#include <fmt/format.h>

#include "cache/rebuild.hpp"

namespace moejit::cli {

nlohmann::json entry_json(const CacheEntry& e) {
  const PtxasReport& r = e.report;
  return {{"id", e.key.id()},
          {"key", e.key},
          {"config", e.config},
          {"config_name", e.config.name()},
          {"kernel_name", e.kernel_name},
          {"cubin_bytes", e.cubin.size()},
          {"cubin_fnv1a64", fmt::format("{:016x}", fnv1a64(e.cubin.data(), e.cubin.size()))},
          {"ptxas",
           {{"registers", r.registers},
            {"spill_stores", r.spill_stores},
            {"spill_loads", r.spill_loads},
            {"static_smem", r.static_smem},
            {"stack_frame", r.stack_frame}}},
          {"time_ms", e.tuned ? nlohmann::json(e.time_ms) : nlohmann::json(nullptr)},
          {"tuned", e.tuned},
          {"stale", !build_difference(e.key).empty()},
          {"created_unix", e.created_unix},
          {"moejit_version", e.moejit_version}};
}

}  // namespace moejit::cli
