// Recipe values are JSON inside the host (nlohmann-json); the plugin-instance layer's values are plain
// C++. These convert between the two, keeping the JSON text of a given value for messages.
#pragma once

#include <nlohmann/json.hpp>

#include "prefdiff/instance/params.hpp"

namespace prefdiff {

instance::Value value_from_json(const nlohmann::json& value);
nlohmann::json value_to_json(const instance::Value& value);
nlohmann::json params_to_json(const instance::ParamSet& params);  // {name: value} in schema order
// A JSON object's keys as given parameters (no locations: programmatic callers, run folders).
std::vector<instance::GivenParam> given_from_json(const nlohmann::json& table);

}  // namespace prefdiff
