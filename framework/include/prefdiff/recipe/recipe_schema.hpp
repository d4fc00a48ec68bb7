// The host's recipe sections and their keys (see docs/recipes.md, generated from the same table by
// `prefdiff recipe schema`).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "prefdiff/abi.h"
#include "prefdiff/instance/params.hpp"

namespace prefdiff {

using instance::ParamSpec;
using instance::ValueType;

struct SectionSpec {
  std::string name;
  std::string doc;
  std::vector<ParamSpec> keys;          // host-owned keys of the section
  std::optional<pd_kind> component;   // set: the section names a plugin by `id`; its params live here too
  bool allow_array = false;           // [[objective]]: several weighted entries

  const ParamSpec* key(const std::string& key_name) const;
};

const std::vector<SectionSpec>& recipe_sections();
const SectionSpec* find_section(const std::string& name);
std::vector<std::string> section_names();

}  // namespace prefdiff
