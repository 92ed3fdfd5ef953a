#include "cache/import.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "cache/rebuild.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

std::string describe(const CacheEntry& e) {
  return fmt::format("entry {} ({} {} {})", e.key.id().substr(0, 12), e.key.spec.describe(),
                     e.key.device.arch, e.config.name());
}

// Why the entry cannot be compiled at all (a value outside the contract), or empty.
std::string invalid_fields(const CacheEntry& e) {
  try {
    e.key.spec.validate();
    e.config.validate();
    validate_arch(e.key.device.arch);
  } catch (const Error& error) {
    return error.what();
  }
  return {};
}

struct Rebuild {
  const CacheEntry* entry = nullptr;
  std::optional<CompiledKernel> kernel;
  std::string error;
};

// The binary depends on the arch, the spec and the config only: one compile serves every token
// bucket and device of that arch.
std::string rebuild_key(const CacheEntry& e) {
  return nlohmann::json{{"arch", e.key.device.arch}, {"spec", e.key.spec}, {"config", e.config}}
      .dump();
}

std::map<std::string, Rebuild> rebuild_all(const std::vector<CacheEntry>& entries,
                                           const ImportOptions& options) {
  std::map<std::string, Rebuild> rebuilds;
  for (const CacheEntry& e : entries) rebuilds.try_emplace(rebuild_key(e), Rebuild{&e});
  std::vector<Rebuild*> jobs;
  for (auto& [key, rebuild] : rebuilds) jobs.push_back(&rebuild);
  const std::function<CompiledKernel(const CacheEntry&)> compile =
      options.rebuild ? options.rebuild : rebuild_kernel;
  std::atomic<std::size_t> next{0};
  const auto work = [&] {
    for (std::size_t i; (i = next++) < jobs.size();) {
      try {
        jobs[i]->kernel = compile(*jobs[i]->entry);
      } catch (const Error& error) {
        jobs[i]->error = error.what();
      }
    }
  };
  const unsigned threads =
      options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::jthread> pool;
  for (unsigned t = 1; t < std::min<std::size_t>(threads, jobs.size()); ++t)
    pool.emplace_back(work);
  work();
  return rebuilds;
}

// Replaces every binary with the one compiled here and drops the entries that do not compile.
std::vector<CacheEntry> with_local_binaries(std::vector<CacheEntry> entries,
                                            const ImportOptions& options, ImportReport& report) {
  const auto rebuilds = rebuild_all(entries, options);
  std::vector<CacheEntry> kept;
  for (CacheEntry& e : entries) {
    const Rebuild& rebuild = rebuilds.at(rebuild_key(e));
    if (!rebuild.kernel) {
      report.dropped.push_back(
          fmt::format("{}: does not compile here: {}", describe(e), rebuild.error));
      continue;
    }
    if (same_build(rebuild.kernel->cubin, e.cubin) &&
        rebuild.kernel->lowered_name == e.kernel_name) {
      ++report.identical_binaries;
    } else {
      ++report.rebuilt_binaries;
      report.notes.push_back(
          fmt::format("{}: the imported binary differs from the one compiled here", describe(e)));
    }
    // What runs is always what this machine compiled; the comparison only tells the user.
    e.cubin = rebuild.kernel->cubin;
    e.kernel_name = rebuild.kernel->lowered_name;
    e.report = rebuild.kernel->report;
    kept.push_back(std::move(e));
  }
  return kept;
}

}  // namespace

ImportReport import_cache(CacheStore& local, const std::filesystem::path& file,
                          const ImportOptions& options) {
  ScanResult scanned = CacheStore::open_untrusted(file).scan();
  ImportReport report;
  report.read = static_cast<int>(scanned.entries.size());
  for (const DamagedRow& row : scanned.damaged)
    report.dropped.push_back(fmt::format("entry {}: {}", row.id, row.reason));
  std::vector<CacheEntry> candidates;
  for (CacheEntry& e : scanned.entries) {
    std::string why = invalid_fields(e);
    if (why.empty() && !options.trust_binaries)
      if (const auto difference = build_difference(e.key); !difference.empty())
        why = fmt::format(
            "built by another moejit build ({}), so it cannot be checked here; "
            "--trust-binaries keeps it",
            difference);
    if (why.empty())
      candidates.push_back(std::move(e));
    else
      report.dropped.push_back(fmt::format("{}: {}", describe(e), why));
  }
  if (!options.trust_binaries)
    candidates = with_local_binaries(std::move(candidates), options, report);
  report.stored = local.merge(candidates);
  return report;
}

}  // namespace moejit
