// Typed parameter schemas and the one resolver. The host's recipe sections and every plugin's
// parameters share this representation, so both are validated, documented and defaulted the same way:
// a value as given (a TOML value, a command-line word) is checked against its ParamSpec (type, range,
// choices), absent keys get their defaults, and the result converts to the ABI's pd_param_value.
// C++17 standard library only.
#ifndef PREFDIFF_INSTANCE_PARAMS_HPP
#define PREFDIFF_INSTANCE_PARAMS_HPP

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "prefdiff/abi.h"

namespace prefdiff::instance {

enum class ValueType { Float, Int, Bool, String, StringList };

const char* value_type_name(ValueType type);  // "float", "integer", "boolean", "string", "array of strings"

// A value as given or as resolved. `shown` is how messages show it (the host passes JSON text, e.g.
// "0.5" or "\"abc\""); when empty, show() formats it.
struct Value {
  enum class Kind { Float, Int, Bool, String, StringList, Other };
  Kind kind = Kind::Other;
  double number = 0.0;            // Float (also Int and Bool, as pd_param_value carries them)
  int64_t integer = 0;            // Int
  bool boolean = false;           // Bool
  std::string text;               // String
  std::vector<std::string> list;  // StringList
  std::string shown;

  static Value real(double value);
  static Value whole(int64_t value);
  static Value flag(bool value);
  static Value string(std::string value);
  static Value strings(std::vector<std::string> values);
  static Value other(std::string shown);  // a table, a mixed array, a date: never valid for a parameter
  std::string show() const;
};

// A command-line word as a value: an integer, a float, true/false, else the word as a string.
Value parse_value_text(const std::string& text);

struct ParamSpec {
  std::string name;
  ValueType type = ValueType::Float;
  std::string doc;
  std::optional<Value> default_value;  // none: an optional key, absent unless given
  double min = 0.0;
  double max = 0.0;
  uint32_t bounds = 0;                 // PD_PARAM_* flags from abi.h
  std::vector<std::string> choices;    // String: allowed values (empty = any)
  std::string range_note;              // why the range is what it is

  // "[0, 0.5)", "(0, inf)", "one of a, b, c", or "" when unconstrained.
  std::string describe_range() const;
  bool is_path() const { return (bounds & PD_PARAM_PATH) != 0; }
};

// The host-side view of a plugin's pd_param_spec, and of a whole descriptor's schema.
ParamSpec spec_from_plugin(const pd_param_spec& spec);

// Checks a value against the spec. Returns the problem (without the key's name) or nullopt. Integers
// are accepted where floats are expected.
std::optional<std::string> check_value(const ParamSpec& spec, const Value& value);
// Sanity of a schema itself: the default inside its range and choices.
std::optional<std::string> check_default(const ParamSpec& spec);

// One key as given. `raw_text`: the command-line text when given as key=value (a string-typed key takes
// it verbatim); `base_dir`: the folder of the file that set it, against which a relative PATH value is
// resolved ("" keeps it as given, e.g. for command-line values: relative to the working directory).
struct GivenParam {
  std::string name;
  Value value;
  std::string raw_text;
  std::string base_dir;
};

// A problem with given[index]: "unknown key 'x'; did you mean 'y'? (known keys: ...)" or
// "key 'x': expected float, got ...". Callers put the table's name in front.
struct ParamProblem {
  size_t index;
  std::string message;
};

// Resolved parameters of one component, in schema order: every given key checked, defaults filled in.
class ParamSet {
 public:
  ParamSet() = default;
  ParamSet(const ParamSet& other) : values_(other.values_) {}
  ParamSet& operator=(const ParamSet& other) {
    values_ = other.values_;
    return *this;
  }

  const std::vector<std::pair<std::string, Value>>& values() const { return values_; }
  const Value* find(const std::string& name) const;
  void set(const std::string& name, Value value);  // replaces or appends
  bool empty() const { return values_.empty(); }

  // The ABI view for create(): one pd_param_value per value, pointing into this set (keep it alive and
  // unchanged while the view is used). StringList values are host-only and have no ABI view.
  const std::vector<pd_param_value>& abi() const {
    abi_.clear();
    for (const auto& [name, value] : values_) {
      pd_param_value out{};
      out.struct_size = sizeof(pd_param_value);
      out.name = name.c_str();
      out.number = value.number;
      if (value.kind == Value::Kind::Float) out.type = PD_PARAM_FLOAT;
      else if (value.kind == Value::Kind::Int) out.type = PD_PARAM_INT;
      else if (value.kind == Value::Kind::Bool) out.type = PD_PARAM_BOOL;
      else if (value.kind == Value::Kind::String) out.type = PD_PARAM_STRING, out.string = value.text.c_str();
      else continue;  // host-only values (string lists)
      abi_.push_back(out);
    }
    return abi_;
  }

 private:
  std::vector<std::pair<std::string, Value>> values_;
  mutable std::vector<pd_param_value> abi_;
};

// The one resolver: checks `given` against `schema` (unknown keys with did-you-mean, types, ranges,
// choices), skips `reserved` keys (e.g. a component table's id and weight), resolves PATH values against
// their base_dir, and fills defaults. Problems are appended; the returned set holds what was valid.
ParamSet resolve_params(const std::vector<ParamSpec>& schema, const std::vector<GivenParam>& given,
                        const std::vector<std::string>& reserved, std::vector<ParamProblem>& problems);

}  // namespace prefdiff::instance

#endif  // PREFDIFF_INSTANCE_PARAMS_HPP
