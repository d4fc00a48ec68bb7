#include "prefdiff/host/param_json.hpp"

#include <algorithm>
#include <cstdint>

namespace prefdiff {

instance::Value value_from_json(const nlohmann::json& value) {
  using instance::Value;
  Value out;
  if (value.is_string()) out = Value::string(value.get<std::string>());
  else if (value.is_boolean()) out = Value::flag(value.get<bool>());
  else if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) out = Value::real(value.get<double>());
  else if (value.is_number_integer()) out = Value::whole(value.get<int64_t>());
  else if (value.is_number()) out = Value::real(value.get<double>());
  else if (value.is_array() && std::all_of(value.begin(), value.end(), [](const nlohmann::json& v) { return v.is_string(); }))
    out = Value::strings(value.get<std::vector<std::string>>());
  out.shown = value.dump();
  return out;
}

nlohmann::json value_to_json(const instance::Value& value) {
  using Kind = instance::Value::Kind;
  switch (value.kind) {
    case Kind::Float: return value.number;
    case Kind::Int: return value.integer;
    case Kind::Bool: return value.boolean;
    case Kind::String: return value.text;
    case Kind::StringList: return value.list;
    case Kind::Other: break;
  }
  return nlohmann::json();
}

nlohmann::json params_to_json(const instance::ParamSet& params) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, value] : params.values()) out[name] = value_to_json(value);
  return out;
}

std::vector<instance::GivenParam> given_from_json(const nlohmann::json& table) {
  std::vector<instance::GivenParam> given;
  for (const auto& [key, value] : table.items()) given.push_back({key, value_from_json(value), "", ""});
  return given;
}

}  // namespace prefdiff
