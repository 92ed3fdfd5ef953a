#pragma once
// Strict reading of the JSON objects the cache writes: every field must be present with the
// expected JSON type, and every failure is an InvalidArgument naming the field by its dotted path
// ("spec.rank"), the value found and what was expected.
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "compiler/error.hpp"

namespace moejit {

class JsonFields {
 public:
  // `path` is the dotted name of `object` itself ("" at the top).
  JsonFields(const nlohmann::json& object, std::string path)
      : object_(object), path_(std::move(path)) {
    if (!object_.is_object())
      throw InvalidArgument(path_.empty() ? "JSON value" : argument(""), object_.dump(),
                            "a JSON object");
  }

  JsonFields child(const char* name) const {
    return JsonFields(require(name, nlohmann::json::value_t::object, "a JSON object"),
                      dotted(name));
  }
  std::string string(const char* name) const {
    return require(name, nlohmann::json::value_t::string, "a string").get<std::string>();
  }
  bool boolean(const char* name) const {
    return require(name, nlohmann::json::value_t::boolean, "true or false").get<bool>();
  }
  double number(const char* name) const {
    const auto& value = at(name);
    if (!value.is_number()) throw InvalidArgument(argument(name), value.dump(), "a number");
    return value.get<double>();
  }
  // An integer in [lowest, highest]; highest must be >= 0.
  std::int64_t integer(const char* name, std::int64_t lowest = std::numeric_limits<int>::min(),
                       std::int64_t highest = std::numeric_limits<int>::max()) const {
    const auto& value = at(name);
    const std::string expected =
        "an integer in [" + std::to_string(lowest) + ", " + std::to_string(highest) + "]";
    if (!value.is_number_integer()) throw InvalidArgument(argument(name), value.dump(), expected);
    // Non-negative numbers parse as unsigned; compare them unsigned so that huge ones cannot wrap.
    if (value.is_number_unsigned() &&
        value.get<std::uint64_t>() > static_cast<std::uint64_t>(highest))
      throw InvalidArgument(argument(name), value.dump(), expected);
    const auto number = value.get<std::int64_t>();
    if (number < lowest || number > highest)
      throw InvalidArgument(argument(name), value.dump(), expected);
    return number;
  }
  // "JSON field 'spec.rank'": the argument name for errors, also handed to the enum parsers.
  std::string argument(const char* name) const { return "JSON field '" + dotted(name) + "'"; }

 private:
  std::string dotted(const char* name) const {
    if (path_.empty()) return name;
    return *name ? path_ + "." + name : path_;
  }
  const nlohmann::json& at(const char* name) const {
    const auto found = object_.find(name);
    if (found == object_.end()) throw InvalidArgument(argument(name), "missing", "present");
    return *found;
  }
  const nlohmann::json& require(const char* name, nlohmann::json::value_t type,
                                const char* expected) const {
    const auto& value = at(name);
    if (value.type() != type) throw InvalidArgument(argument(name), value.dump(), expected);
    return value;
  }

  const nlohmann::json& object_;
  std::string path_;
};

}  // namespace moejit
