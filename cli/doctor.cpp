// `moejit doctor`: what moejit sees on this machine: GPUs, driver, NVRTC, templates and cache.
#include <fmt/format.h>

#include "autotune/cuda_driver.hpp"
#include "cli/cache_option.hpp"
#include "cli/commands.hpp"
#include "compiler/error.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "compiler/source.hpp"
#include "templates/embedded.hpp"

namespace moejit::cli {
namespace {

std::string driver_text(int version) {
  return fmt::format("{}.{} ({})", version / 1000, version % 1000 / 10, version);
}

// Returns the driver version of the first GPU, or 0 when there is none.
int print_gpus() {
  std::string why_not;
  if (cuda::try_api(&why_not) == nullptr) {
    fmt::print("GPU:        no GPU: {}\n", why_not);
    return 0;
  }
  int driver = 0;
  for (int ordinal = 0; ordinal < cuda::device_count(); ++ordinal) {
    const cuda::DeviceInfo d = cuda::query_device(ordinal);
    fmt::print(
        "GPU {}:      {}, compute capability {}.{} ({}), {} SMs, shared memory opt-in {} KiB, "
        "memory {:.1f} GiB\n",
        d.ordinal, d.name, d.cc_major, d.cc_minor, d.arch(), d.sm_count, d.smem_optin_bytes / 1024,
        static_cast<double>(d.total_memory) / (1 << 30));
    driver = d.driver_version;
  }
  return driver;
}

// A broken cache is reported, not thrown: the rest of the report is still worth reading.
bool print_cache(const std::string& cache) {
  try {
    const auto path = resolve_cache_path(cache);
    const auto store = open_existing(path);
    if (!store) {
      fmt::print("cache:      {} (not created yet)\n", path.string());
      return true;
    }
    const ScanResult scanned = store->scan();
    fmt::print("cache:      {}, {} entries, {:.1f} KiB, schema {}, journal {}\n", path.string(),
               scanned.entries.size(), static_cast<double>(store->size_bytes()) / 1024,
               store->schema_version(), store->journal_mode());
    if (!store->fallback().empty()) fmt::print("            in memory: {}\n", store->fallback());
    if (!scanned.damaged.empty())
      fmt::print("            {} damaged entries (`moejit verify` for details)\n",
                 scanned.damaged.size());
    return true;
  } catch (const Error& e) {
    fmt::print("cache:      error: {}\n", e.what());
    return false;
  }
}

int run_doctor(const std::string& cache) {
  fmt::print("moejit:     {} (generator version {})\n", MOEJIT_VERSION, kGeneratorVersion);
  const int driver = print_gpus();
  fmt::print("driver:     {}\n", driver > 0 ? driver_text(driver) : "-");
  fmt::print("NVRTC:      {}\n", nvrtc_version());
  fmt::print("templates:  {} ({} files)\n", templates::bundle_hash(), templates::files().size());
  return print_cache(cache) ? 0 : 1;
}

}  // namespace

Command add_doctor(CLI::App& app) {
  CLI::App* command = app.add_subcommand("doctor", "Report GPUs, driver, NVRTC, templates, cache");
  auto cache = std::make_shared<std::string>();
  add_cache_option(*command, *cache);
  return {command, [cache] { return run_doctor(*cache); }};
}

}  // namespace moejit::cli
