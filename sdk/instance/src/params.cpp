#include "prefdiff/instance/params.hpp"

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "prefdiff/instance/did_you_mean.hpp"

namespace prefdiff::instance {

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

std::string shortest(double v) {
  char text[64];
  const auto result = std::to_chars(text, text + sizeof(text), v);
  return std::string(text, result.ptr);
}

std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
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

Value Value::real(double value) {
  Value v;
  v.kind = Kind::Float;
  v.number = value;
  return v;
}
Value Value::whole(int64_t value) {
  Value v;
  v.kind = Kind::Int;
  v.integer = value;
  v.number = static_cast<double>(value);
  return v;
}
Value Value::flag(bool value) {
  Value v;
  v.kind = Kind::Bool;
  v.boolean = value;
  v.number = value ? 1.0 : 0.0;
  return v;
}
Value Value::string(std::string value) {
  Value v;
  v.kind = Kind::String;
  v.text = std::move(value);
  return v;
}
Value Value::strings(std::vector<std::string> values) {
  Value v;
  v.kind = Kind::StringList;
  v.list = std::move(values);
  return v;
}
Value Value::other(std::string shown) {
  Value v;
  v.kind = Kind::Other;
  v.shown = std::move(shown);
  return v;
}

std::string Value::show() const {
  if (!shown.empty()) return shown;
  switch (kind) {
    case Kind::Float: return shortest(number);
    case Kind::Int: return std::to_string(integer);
    case Kind::Bool: return boolean ? "true" : "false";
    case Kind::String: return quoted(text);
    case Kind::StringList: {
      std::vector<std::string> items;
      for (const std::string& s : list) items.push_back(quoted(s));
      return "[" + join(items, ",") + "]";
    }
    case Kind::Other: break;
  }
  return "?";
}

Value parse_value_text(const std::string& text) {
  if (text == "true" || text == "false") return Value::flag(text == "true");
  if (!text.empty()) {
    errno = 0;
    char* end = nullptr;
    const long long integer = std::strtoll(text.c_str(), &end, 10);
    if (*end == '\0' && errno == 0) return Value::whole(integer);
    errno = 0;
    const double number = std::strtod(text.c_str(), &end);
    if (*end == '\0' && errno == 0) return Value::real(number);
  }
  return Value::string(text);
}

std::string ParamSpec::describe_range() const {
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

ParamSpec spec_from_plugin(const pd_param_spec& spec) {
  ParamSpec key;
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
      if (!optional) key.default_value = Value::whole(static_cast<int64_t>(spec.default_number));
      break;
    case PD_PARAM_BOOL:
      key.type = ValueType::Bool;
      if (!optional) key.default_value = Value::flag(spec.default_number != 0.0);
      break;
    case PD_PARAM_STRING:
      key.type = ValueType::String;
      key.choices = split_choices(spec.choices);
      if (!optional) key.default_value = Value::string(spec.default_string != nullptr ? spec.default_string : "");
      break;
    default:
      key.type = ValueType::Float;
      if (!optional) key.default_value = Value::real(spec.default_number);
      break;
  }
  return key;
}

std::optional<std::string> check_value(const ParamSpec& spec, const Value& value) {
  auto wrong_type = [&] { return "expected " + std::string(value_type_name(spec.type)) + ", got " + value.show(); };
  using Kind = Value::Kind;
  switch (spec.type) {
    case ValueType::Float:
    case ValueType::Int: {
      const bool numeric = value.kind == Kind::Int || (spec.type == ValueType::Float && value.kind == Kind::Float);
      if (!numeric) return wrong_type();
      const double v = value.number;
      if (!std::isfinite(v)) return "must be finite, got " + value.show();
      const bool below = (spec.bounds & PD_PARAM_HAS_MIN) &&
                         ((spec.bounds & PD_PARAM_MIN_EXCLUSIVE) ? v <= spec.min : v < spec.min);
      const bool above = (spec.bounds & PD_PARAM_HAS_MAX) &&
                         ((spec.bounds & PD_PARAM_MAX_EXCLUSIVE) ? v >= spec.max : v > spec.max);
      if (below || above) {
        std::string message = value.show() + " is out of range; allowed " + spec.describe_range();
        if (!spec.range_note.empty()) message += " (" + spec.range_note + ")";
        return message;
      }
      return std::nullopt;
    }
    case ValueType::Bool:
      if (value.kind != Kind::Bool) return wrong_type();
      return std::nullopt;
    case ValueType::String:
      if (value.kind != Kind::String) return wrong_type();
      if (!spec.choices.empty()) {
        for (const std::string& c : spec.choices)
          if (c == value.text) return std::nullopt;
        return "'" + value.text + "' is not allowed; expected " + spec.describe_range();
      }
      return std::nullopt;
    case ValueType::StringList:
      if (value.kind != Kind::StringList) {
        if (value.kind == Kind::Other && !value.shown.empty() && value.shown[0] == '[')
          return "expected an array of strings, got " + value.shown;
        return wrong_type();
      }
      return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::string> check_default(const ParamSpec& spec) {
  if (!spec.default_value) return std::nullopt;
  if (auto problem = check_value(spec, *spec.default_value)) return "default " + *problem;
  return std::nullopt;
}

const Value* ParamSet::find(const std::string& name) const {
  for (const auto& [key, value] : values_)
    if (key == name) return &value;
  return nullptr;
}

void ParamSet::set(const std::string& name, Value value) {
  for (auto& [key, existing] : values_)
    if (key == name) {
      existing = std::move(value);
      return;
    }
  values_.emplace_back(name, std::move(value));
}

ParamSet resolve_params(const std::vector<ParamSpec>& schema, const std::vector<GivenParam>& given,
                        const std::vector<std::string>& reserved, std::vector<ParamProblem>& problems) {
  namespace fs = std::filesystem;
  std::vector<std::string> names(reserved);
  std::string known;
  for (const ParamSpec& k : schema) {
    names.push_back(k.name);
    known += (known.empty() ? "" : ", ") + k.name;
  }
  std::vector<std::optional<Value>> chosen(schema.size());
  for (size_t index = 0; index < given.size(); ++index) {
    const GivenParam& g = given[index];
    if (std::find(reserved.begin(), reserved.end(), g.name) != reserved.end()) continue;
    size_t s = 0;
    while (s < schema.size() && schema[s].name != g.name) ++s;
    if (s == schema.size()) {
      problems.push_back({index, "unknown key '" + g.name + "'" + did_you_mean(g.name, names) +
                                     (known.empty() ? " (it takes no keys)" : " (known keys: " + known + ")")});
      continue;
    }
    const ParamSpec& spec = schema[s];
    Value value = g.value;
    if (spec.type == ValueType::String && value.kind != Value::Kind::String && !g.raw_text.empty())
      value = Value::string(g.raw_text);  // a string key takes the command-line text as typed
    if (auto problem = check_value(spec, value)) {
      problems.push_back({index, "key '" + g.name + "': " + *problem});
      continue;
    }
    if (spec.type == ValueType::Float && value.kind == Value::Kind::Int) {
      value = Value::real(value.number);
    }
    if (spec.is_path()) {
      // Relative paths are relative to the file that sets them (command-line values: the working directory).
      auto resolve = [&](const std::string& p) {
        if (p.empty() || fs::path(p).is_absolute() || g.base_dir.empty()) return p;
        return (fs::path(g.base_dir) / p).lexically_normal().string();
      };
      if (value.kind == Value::Kind::String) value = Value::string(resolve(value.text));
      if (value.kind == Value::Kind::StringList)
        for (std::string& item : value.list) item = resolve(item);
    }
    value.shown.clear();
    chosen[s] = std::move(value);
  }
  ParamSet out;
  for (size_t s = 0; s < schema.size(); ++s) {
    if (chosen[s]) out.set(schema[s].name, std::move(*chosen[s]));
    else if (schema[s].default_value) out.set(schema[s].name, *schema[s].default_value);
  }
  return out;
}

}  // namespace prefdiff::instance
