#pragma once
// Cache keys: every field that can change which kernel is best or what it computes.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "compiler/problem.hpp"

namespace moejit {

// The machine a kernel was compiled and tuned for. An offline build (no GPU) has only the target
// arch: name "offline", sm_count 0, driver_version 0.
struct DeviceIdentity {
  std::string name;  // e.g. "NVIDIA H100 80GB HBM3"
  std::string arch;  // NVRTC target, e.g. "sm_90a"
  int sm_count = 0;
  int driver_version = 0;  // e.g. 13000

  static DeviceIdentity offline(const std::string& arch);
  bool is_offline() const { return sm_count == 0; }
  bool operator==(const DeviceIdentity&) const = default;
};

struct CacheKey {
  DeviceIdentity device;
  std::string nvrtc_version;  // "13.0"
  std::string template_hash;  // templates::bundle_hash()
  int generator_version = 0;  // kGeneratorVersion
  ProjectionSpec spec;
  std::int64_t token_bucket = 0;  // token_bucket(tokens)

  // Canonical text: "field=value" pairs in a fixed order joined by '\n', so two different keys
  // never produce the same text.
  std::string text() const;
  // 16 hex digits of a hash of text(): the entry's id in listings and `moejit show`.
  std::string id() const;
  bool operator==(const CacheKey&) const = default;
};

// Tokens rounded up to a power of two (minimum 1), so that a new T does not retune.
std::int64_t token_bucket(std::int64_t tokens);

void to_json(nlohmann::json& j, const ProjectionSpec& s);
void from_json(const nlohmann::json& j, ProjectionSpec& s);
void to_json(nlohmann::json& j, const DeviceIdentity& d);
void from_json(const nlohmann::json& j, DeviceIdentity& d);
void to_json(nlohmann::json& j, const CacheKey& k);
void from_json(const nlohmann::json& j, CacheKey& k);

// 64-bit FNV-1a, used for key ids and CUBIN checksums (integrity, not security).
std::uint64_t fnv1a64(const void* data, std::size_t size);

}  // namespace moejit
