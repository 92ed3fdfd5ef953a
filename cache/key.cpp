#include "cache/key.hpp"

#include <fmt/format.h>
#include <bit>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>

#include "cache/json_fields.hpp"
#include "compiler/error.hpp"

namespace moejit {
namespace {

// Values are written up to the end of their line; escaping '\\', '\n' and '=' keeps each value on
// its line and makes the text decodable, so different field lists never give equal text.
std::string escaped(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '=')
      out += "\\=";
    else
      out += c;
  }
  return out;
}

class KeyText {
 public:
  template <class Value>
  KeyText& add(std::string_view field, const Value& value) {
    fmt::format_to(std::back_inserter(text_), "{}={}\n", field, escaped(fmt::format("{}", value)));
    return *this;
  }
  std::string str() && { return std::move(text_); }

 private:
  std::string text_;
};

}  // namespace

DeviceIdentity DeviceIdentity::offline(const std::string& arch) {
  return DeviceIdentity{.name = "offline", .arch = arch, .sm_count = 0, .driver_version = 0};
}

std::string CacheKey::text() const {
  const ProjectionSpec& s = spec;
  KeyText t;
  t.add("device.name", device.name).add("device.arch", device.arch);
  t.add("device.sm_count", device.sm_count).add("device.driver_version", device.driver_version);
  t.add("nvrtc_version", nvrtc_version).add("template_hash", template_hash);
  t.add("generator_version", generator_version);
  t.add("spec.op", to_string(s.op)).add("spec.experts", s.experts).add("spec.top_k", s.top_k);
  t.add("spec.in_features", s.in_features).add("spec.out_features", s.out_features);
  t.add("spec.rank", s.rank).add("spec.act", to_string(s.act)).add("spec.lora", to_string(s.lora));
  t.add("spec.index", to_string(s.index)).add("spec.weights", to_string(s.weights));
  t.add("spec.layout", to_string(s.layout)).add("spec.b_storage", to_string(s.b_storage));
  t.add("spec.grouped_in", s.grouped_in).add("spec.grouped_out", s.grouped_out);
  t.add("spec.has_bias", s.has_bias).add("spec.quant_blocksize", s.quant_blocksize);
  t.add("spec.double_quant", s.double_quant).add("token_bucket", token_bucket);
  return std::move(t).str();
}

std::string CacheKey::id() const {
  const std::string canonical = text();
  return fmt::format("{:016x}", fnv1a64(canonical.data(), canonical.size()));
}

std::int64_t token_bucket(std::int64_t tokens) {
  constexpr std::int64_t kLargest = std::int64_t{1} << 62;
  if (tokens < 0 || tokens > kLargest)
    throw InvalidArgument("tokens", std::to_string(tokens), "0 <= tokens <= 2^62");
  if (tokens <= 1) return 1;
  return static_cast<std::int64_t>(std::bit_ceil(static_cast<std::uint64_t>(tokens)));
}

std::uint64_t fnv1a64(const void* data, std::size_t size) {
  constexpr std::uint64_t kOffsetBasis = 0xcbf29ce484222325ULL;
  constexpr std::uint64_t kPrime = 0x100000001b3ULL;
  std::uint64_t hash = kOffsetBasis;
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * kPrime;
  return hash;
}

void to_json(nlohmann::json& j, const ProjectionSpec& s) {
  j = nlohmann::json{{"op", to_string(s.op)},
                     {"experts", s.experts},
                     {"top_k", s.top_k},
                     {"in_features", s.in_features},
                     {"out_features", s.out_features},
                     {"rank", s.rank},
                     {"act", to_string(s.act)},
                     {"lora", to_string(s.lora)},
                     {"index", to_string(s.index)},
                     {"weights", to_string(s.weights)},
                     {"layout", to_string(s.layout)},
                     {"b_storage", to_string(s.b_storage)},
                     {"grouped_in", s.grouped_in},
                     {"grouped_out", s.grouped_out},
                     {"has_bias", s.has_bias},
                     {"quant_blocksize", s.quant_blocksize},
                     {"double_quant", s.double_quant}};
}

void to_json(nlohmann::json& j, const DeviceIdentity& d) {
  j = nlohmann::json{{"name", d.name},
                     {"arch", d.arch},
                     {"sm_count", d.sm_count},
                     {"driver_version", d.driver_version}};
}

void to_json(nlohmann::json& j, const CacheKey& k) {
  j = nlohmann::json{{"device", k.device},
                     {"nvrtc_version", k.nvrtc_version},
                     {"template_hash", k.template_hash},
                     {"generator_version", k.generator_version},
                     {"spec", k.spec},
                     {"token_bucket", k.token_bucket}};
}

namespace {

ProjectionSpec read_spec(const JsonFields& f) {
  auto integer = [&](const char* name) { return static_cast<int>(f.integer(name)); };
  ProjectionSpec s;
  s.op = parse_op(f.string("op"), f.argument("op"));
  s.experts = integer("experts");
  s.top_k = integer("top_k");
  s.in_features = integer("in_features");
  s.out_features = integer("out_features");
  s.rank = integer("rank");
  s.act = parse_dtype(f.string("act"), f.argument("act"));
  s.lora = parse_dtype(f.string("lora"), f.argument("lora"));
  s.index = parse_index_type(f.string("index"), f.argument("index"));
  s.weights = parse_weight_format(f.string("weights"), f.argument("weights"));
  s.layout = parse_weight_layout(f.string("layout"), f.argument("layout"));
  s.b_storage = parse_b_storage(f.string("b_storage"), f.argument("b_storage"));
  s.grouped_in = f.boolean("grouped_in");
  s.grouped_out = f.boolean("grouped_out");
  s.has_bias = f.boolean("has_bias");
  s.quant_blocksize = integer("quant_blocksize");
  s.double_quant = f.boolean("double_quant");
  return s;
}

DeviceIdentity read_device(const JsonFields& f) {
  return DeviceIdentity{.name = f.string("name"),
                        .arch = f.string("arch"),
                        .sm_count = static_cast<int>(f.integer("sm_count")),
                        .driver_version = static_cast<int>(f.integer("driver_version"))};
}

}  // namespace

void from_json(const nlohmann::json& j, ProjectionSpec& s) {
  s = read_spec(JsonFields(j, ""));
}

void from_json(const nlohmann::json& j, DeviceIdentity& d) {
  d = read_device(JsonFields(j, ""));
}

void from_json(const nlohmann::json& j, CacheKey& k) {
  const JsonFields f(j, "");
  k.device = read_device(f.child("device"));
  k.nvrtc_version = f.string("nvrtc_version");
  k.template_hash = f.string("template_hash");
  k.generator_version = static_cast<int>(f.integer("generator_version"));
  k.spec = read_spec(f.child("spec"));
  k.token_bucket = f.integer("token_bucket", 0, std::numeric_limits<std::int64_t>::max());
}

}  // namespace moejit
