#include "cli/filter_flags.hpp"

namespace moejit::cli {

void add_filter_flags(CLI::App& command, FilterFlags& f) {
  const char* group = "Entry filters";
  command.add_option("--arch", f.arch, "only entries for this target, e.g. sm_90a")->group(group);
  command
      .add_option("--device", f.device,
                  "only entries of this device name ('offline' for builds without a GPU)")
      ->group(group);
  auto* tuned = command.add_flag("--tuned", f.tuned, "only tuned entries")->group(group);
  command.add_flag("--untuned", f.untuned, "only untuned entries")->group(group)->excludes(tuned);
  auto* stale = command
                    .add_flag("--stale", f.stale,
                              "only entries of another NVRTC, template or generator version")
                    ->group(group);
  command.add_flag("--current", f.current, "only entries this build compiles")
      ->group(group)
      ->excludes(stale);
  command.add_option("--experts", f.experts, "only this number of experts E")->group(group);
  command.add_option("--in-features", f.in_features, "only this K")->group(group);
  command.add_option("--out-features", f.out_features, "only this N")->group(group);
  command.add_option("--rank", f.rank, "only this LoRA rank")->group(group);
  command.add_option("--older-than", f.older_than_days, "only entries created at least DAYS ago")
      ->group(group)
      ->check(CLI::NonNegativeNumber);
}

EntryFilter FilterFlags::filter() const {
  EntryFilter filter;
  if (!arch.empty()) filter.arch = arch;
  if (!device.empty()) filter.device = device;
  if (tuned || untuned) filter.tuned = tuned;
  if (stale || current) filter.stale = stale;
  filter.experts = experts;
  filter.in_features = in_features;
  filter.out_features = out_features;
  filter.rank = rank;
  if (older_than_days)
    filter.older_than_seconds = static_cast<std::int64_t>(*older_than_days * 86400);
  return filter;
}

}  // namespace moejit::cli
