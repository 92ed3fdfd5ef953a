#include "cache/rebuild.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <regex>
#include <vector>

#include "compiler/source.hpp"
#include "templates/embedded.hpp"

namespace moejit {

CacheKey current_key(const DeviceIdentity& device, const ProjectionSpec& spec,
                     std::int64_t token_bucket) {
  return CacheKey{device, nvrtc_version(), std::string(templates::bundle_hash()), kGeneratorVersion,
                  spec,   token_bucket};
}

std::string build_difference(const CacheKey& key) {
  const CacheKey here = current_key(key.device, key.spec, key.token_bucket);
  std::vector<std::string> differences;
  if (key.nvrtc_version != here.nvrtc_version)
    differences.push_back(
        fmt::format("NVRTC {}, this build's {}", key.nvrtc_version, here.nvrtc_version));
  if (key.template_hash != here.template_hash)
    differences.push_back(fmt::format("template hash {:.8}, this build's {:.8}", key.template_hash,
                                      here.template_hash));
  if (key.generator_version != here.generator_version)
    differences.push_back(fmt::format("generator version {}, this build's {}",
                                      key.generator_version, here.generator_version));
  return fmt::format("{}", fmt::join(differences, "; "));
}

CompiledKernel rebuild_kernel(const CacheEntry& entry) {
  entry.key.spec.validate();
  entry.config.validate();
  const KernelSource source = render_kernel_source(entry.key.spec, entry.config);
  return compile({source.source, source.name_expression, entry.key.device.arch, entry.key.text()});
}

namespace {

std::string without_compilation_tags(const std::vector<char>& bytes) {
  static const std::regex kTag(
      "[0-9]+_INTERNAL_[0-9a-f]+_[0-9]+_[A-Za-z0-9_]*?_cu_[0-9a-f]+_[0-9]+");
  return std::regex_replace(std::string(bytes.begin(), bytes.end()), kTag, "#");
}

}  // namespace

bool same_build(const std::vector<char>& a, const std::vector<char>& b) {
  return a == b ||
         (a.size() == b.size() && without_compilation_tags(a) == without_compilation_tags(b));
}

}  // namespace moejit
