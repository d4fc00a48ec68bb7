#include "prefdiff/host/schema.hpp"

#include <cmath>
#include <sstream>

namespace prefdiff {

const char* value_type_name(ValueType type) {
  switch (type) {
    case ValueType::Float: return "float";
    case ValueType::Int: return "integer";
    case ValueType::Bool: return "boolean";
    case ValueType::String: return "string";
    case ValueType::StringList: return "array of strings";
  }
  return "?";
}

namespace {

std::string format_number(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream out;
  out.precision(15);
  out << v;
  return out.str();
}

std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? separator : "") + items[i];
  return out;
}

std::vector<std::string> split_choices(const char* choices) {
  std::vector<std::string> out;
  if (choices == nullptr) return out;
  std::string current;
  for (const char* c = choices; *c; ++c) {
    if (*c == '|') {
      out.push_back(current);
      current.clear();
    } else {
      current += *c;
    }
  }
  out.push_back(current);
  return out;
}

}  // namespace

std::string KeySpec::describe_range() const {
  if (type == ValueType::String && !choices.empty()) return "one of " + join(choices, ", ");
  if ((bounds & (PD_PARAM_HAS_MIN | PD_PARAM_HAS_MAX)) == 0) return "";
  const bool has_min = bounds & PD_PARAM_HAS_MIN, has_max = bounds & PD_PARAM_HAS_MAX;
  std::string out = (has_min && !(bounds & PD_PARAM_MIN_EXCLUSIVE)) ? "[" : "(";
  out += has_min ? format_number(min) : "-inf";
  out += ", ";
  out += has_max ? format_number(max) : "inf";
  out += (has_max && !(bounds & PD_PARAM_MAX_EXCLUSIVE)) ? "]" : ")";
  return out;
}

KeySpec key_spec_from_plugin(const pd_param_spec& spec) {
  KeySpec key;
  key.name = spec.name != nullptr ? spec.name : "";
  key.doc = spec.doc != nullptr ? spec.doc : "";
  key.min = spec.min;
  key.max = spec.max;
  key.bounds = spec.bounds;
  key.range_note = spec.range_note != nullptr ? spec.range_note : "";
  const bool optional = spec.bounds & PD_PARAM_OPTIONAL;
  switch (spec.type) {
    case PD_PARAM_INT:
      key.type = ValueType::Int;
      if (!optional) key.default_value = static_cast<long long>(spec.default_number);
      break;
    case PD_PARAM_BOOL:
      key.type = ValueType::Bool;
      if (!optional) key.default_value = spec.default_number != 0.0;
      break;
    case PD_PARAM_STRING:
      key.type = ValueType::String;
      key.choices = split_choices(spec.choices);
      if (!optional) key.default_value = spec.default_string != nullptr ? spec.default_string : "";
      break;
    default:
      key.type = ValueType::Float;
      if (!optional) key.default_value = spec.default_number;
      break;
  }
  return key;
}

std::optional<std::string> check_value(const KeySpec& spec, const nlohmann::json& value) {
  auto wrong_type = [&] {
    return "expected " + std::string(value_type_name(spec.type)) + ", got " + value.dump();
  };
  switch (spec.type) {
    case ValueType::Float:
    case ValueType::Int: {
      if (spec.type == ValueType::Int ? !value.is_number_integer() : !value.is_number()) return wrong_type();
      const double v = value.get<double>();
      if (!std::isfinite(v)) return "must be finite, got " + value.dump();
      const bool below = (spec.bounds & PD_PARAM_HAS_MIN) &&
                         ((spec.bounds & PD_PARAM_MIN_EXCLUSIVE) ? v <= spec.min : v < spec.min);
      const bool above = (spec.bounds & PD_PARAM_HAS_MAX) &&
                         ((spec.bounds & PD_PARAM_MAX_EXCLUSIVE) ? v >= spec.max : v > spec.max);
      if (below || above) {
        std::string message = value.dump() + " is out of range; allowed " + spec.describe_range();
        if (!spec.range_note.empty()) message += " (" + spec.range_note + ")";
        return message;
      }
      return std::nullopt;
    }
    case ValueType::Bool:
      if (!value.is_boolean()) return wrong_type();
      return std::nullopt;
    case ValueType::String:
      if (!value.is_string()) return wrong_type();
      if (!spec.choices.empty()) {
        const std::string s = value.get<std::string>();
        for (const std::string& c : spec.choices)
          if (c == s) return std::nullopt;
        return "'" + s + "' is not allowed; expected " + spec.describe_range();
      }
      return std::nullopt;
    case ValueType::StringList:
      if (!value.is_array()) return wrong_type();
      for (const auto& item : value)
        if (!item.is_string()) return "expected an array of strings, got element " + item.dump();
      return std::nullopt;
  }
  return std::nullopt;
}

pd_param_value to_param_value(const KeySpec& spec, const nlohmann::json& value, std::string& string_storage) {
  pd_param_value out{};
  out.struct_size = sizeof(pd_param_value);
  out.name = spec.name.c_str();
  switch (spec.type) {
    case ValueType::Float: out.type = PD_PARAM_FLOAT; out.number = value.get<double>(); break;
    case ValueType::Int: out.type = PD_PARAM_INT; out.number = value.get<double>(); break;
    case ValueType::Bool: out.type = PD_PARAM_BOOL; out.number = value.get<bool>() ? 1.0 : 0.0; break;
    case ValueType::String:
    case ValueType::StringList:
      out.type = PD_PARAM_STRING;
      string_storage = value.is_string() ? value.get<std::string>() : value.dump();
      out.string = string_storage.c_str();
      break;
  }
  return out;
}

std::optional<std::string> check_default(const KeySpec& spec) {
  if (spec.default_value.is_null()) return std::nullopt;
  if (auto problem = check_value(spec, spec.default_value)) return "default " + *problem;
  return std::nullopt;
}

}  // namespace prefdiff
