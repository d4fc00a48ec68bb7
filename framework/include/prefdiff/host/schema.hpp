// Typed key schemas: the host's own recipe sections and every plugin's parameters share one
// representation, so both are validated, documented and defaulted the same way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/abi.h"

namespace prefdiff {

enum class ValueType { Float, Int, Bool, String, StringList };

const char* value_type_name(ValueType type);

struct KeySpec {
  std::string name;
  ValueType type = ValueType::Float;
  std::string doc;
  nlohmann::json default_value;      // null: no default (optional key)
  double min = 0.0;
  double max = 0.0;
  uint32_t bounds = 0;               // PD_PARAM_* flags from abi.h
  std::vector<std::string> choices;  // String: allowed values (empty = any)
  std::string range_note;            // why the range is what it is

  // "[0, 0.5)", "(0, inf)", "one of a|b|c", or "" when unconstrained.
  std::string describe_range() const;
};

// The host-side view of a plugin's pd_param_spec.
KeySpec key_spec_from_plugin(const pd_param_spec& spec);

// Checks a JSON value against the spec. Returns an error message (without the key's location) or
// nullopt. Integers are accepted where floats are expected.
std::optional<std::string> check_value(const KeySpec& spec, const nlohmann::json& value);

// Converts a checked JSON value to the ABI's pd_param_value; `string_storage` keeps strings alive.
pd_param_value to_param_value(const KeySpec& spec, const nlohmann::json& value, std::string& string_storage);

// Sanity of a schema itself: default inside its range and choices (used by plugin checks).
std::optional<std::string> check_default(const KeySpec& spec);

}  // namespace prefdiff
