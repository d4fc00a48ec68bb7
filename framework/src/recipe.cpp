#include "prefdiff/host/recipe.hpp"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>
#include <sstream>
#include <tuple>

#include <toml++/toml.h>

#include "prefdiff/host/did_you_mean.hpp"
#include "prefdiff/host/host_services.hpp"
#include "prefdiff/host/recipe_schema.hpp"
#include "prefdiff/noise.h"
#include "prefdiff/objective.h"
#include "prefdiff/sdk.hpp"

namespace prefdiff {
namespace fs = std::filesystem;

std::string SourceLocation::str() const {
  std::string out = file.empty() ? "<recipe>" : file;
  if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
  return out;
}

std::string Diagnostic::str() const { return where.str() + ": error: " + message; }

namespace {

std::string summarize(const std::vector<Diagnostic>& diagnostics) {
  std::string out = std::to_string(diagnostics.size()) + " problem(s) in the recipe:";
  for (const Diagnostic& d : diagnostics) out += "\n  " + d.str();
  return out;
}

SourceLocation location_of(const toml::node& node) {
  SourceLocation where;
  const toml::source_region& source = node.source();
  if (source.path) where.file = *source.path;
  where.line = static_cast<int>(source.begin.line);
  where.column = static_cast<int>(source.begin.column);
  return where;
}

nlohmann::json to_json(const toml::node& node) {
  if (const auto* t = node.as_table()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [k, v] : *t) out[std::string(k.str())] = to_json(v);
    return out;
  }
  if (const auto* a = node.as_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& v : *a) out.push_back(to_json(v));
    return out;
  }
  if (const auto* v = node.as_string()) return v->get();
  if (const auto* v = node.as_integer()) return v->get();
  if (const auto* v = node.as_floating_point()) return v->get();
  if (const auto* v = node.as_boolean()) return v->get();
  // Dates and times: kept as text; no host key uses them.
  std::ostringstream text;
  node.visit([&](const auto& value) { text << value; });
  return text.str();
}

void insert_json(toml::table& table, const std::string& key, const nlohmann::json& value);

toml::array to_toml_array(const nlohmann::json& value) {
  toml::array out;
  for (const auto& item : value) {
    if (item.is_object()) {
      toml::table t;
      for (const auto& [k, v] : item.items()) insert_json(t, k, v);
      out.push_back(std::move(t));
    } else if (item.is_string()) {
      out.push_back(item.get<std::string>());
    } else if (item.is_boolean()) {
      out.push_back(item.get<bool>());
    } else if (item.is_number_integer()) {
      out.push_back(item.get<int64_t>());
    } else if (item.is_number()) {
      out.push_back(item.get<double>());
    } else if (item.is_array()) {
      out.push_back(to_toml_array(item));
    }
  }
  return out;
}

void insert_json(toml::table& table, const std::string& key, const nlohmann::json& value) {
  if (value.is_object()) {
    toml::table t;
    for (const auto& [k, v] : value.items()) insert_json(t, k, v);
    table.insert_or_assign(key, std::move(t));
  } else if (value.is_array()) {
    table.insert_or_assign(key, to_toml_array(value));
  } else if (value.is_string()) {
    table.insert_or_assign(key, value.get<std::string>());
  } else if (value.is_boolean()) {
    table.insert_or_assign(key, value.get<bool>());
  } else if (value.is_number_integer()) {
    table.insert_or_assign(key, value.get<int64_t>());
  } else if (value.is_number()) {
    table.insert_or_assign(key, value.get<double>());
  }
}

// Where each value was written, by dotted path ("objective.0.scale"). toml++ does not keep a node's
// source region when it is copied into the merged table, so locations are recorded per file first;
// a later file in the extends chain overwrites the locations of what it overrides.
using Locations = std::map<std::string, SourceLocation>;

void record_locations(const toml::node& node, const std::string& path, Locations& locations) {
  locations[path] = location_of(node);
  if (const auto* table = node.as_table()) {
    for (const auto& [k, v] : *table) record_locations(v, path.empty() ? std::string(k.str()) : path + "." + std::string(k.str()), locations);
  } else if (const auto* array = node.as_array()) {
    for (size_t i = 0; i < array->size(); ++i) record_locations((*array)[i], path + "." + std::to_string(i), locations);
  }
}

// Tables merge key by key; anything else (values, arrays) in `over` replaces what `base` had.
void merge_into(toml::table& base, const toml::table& over) {
  for (const auto& [key, node] : over) {
    toml::node* existing = base.get(key);
    if (existing != nullptr && existing->is_table() && node.is_table()) {
      merge_into(*existing->as_table(), *node.as_table());
    } else {
      base.insert_or_assign(key, node);
    }
  }
}

// Parses `path` and its extends chain into `out` (base first, then this file over it).
void load_chain(const std::string& path, const SourceLocation& referenced_from, std::vector<std::string>& stack,
                std::vector<std::string>& files, toml::table& out, Locations& locations,
                std::vector<Diagnostic>& diagnostics) {
  std::error_code ec;
  const std::string canonical = fs::weakly_canonical(path, ec).string();
  if (std::find(stack.begin(), stack.end(), canonical) != stack.end()) {
    diagnostics.push_back({referenced_from, "extends cycle: " + path + " extends itself through the chain"});
    return;
  }
  if (!fs::is_regular_file(path, ec)) {
    diagnostics.push_back({referenced_from, "recipe file '" + path + "' does not exist"});
    return;
  }
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    SourceLocation where{path, static_cast<int>(e.source().begin.line), static_cast<int>(e.source().begin.column)};
    diagnostics.push_back({where, "TOML syntax error: " + std::string(e.description())});
    return;
  }
  stack.push_back(canonical);
  if (toml::node* extends = table.get("extends")) {
    if (const auto* base = extends->as_string()) {
      fs::path base_path(base->get());
      if (base_path.is_relative()) base_path = fs::path(path).parent_path() / base_path;
      load_chain(base_path.lexically_normal().string(), location_of(*extends), stack, files, out, locations,
                 diagnostics);
    } else {
      diagnostics.push_back({location_of(*extends), "'extends' must be a string: the path of a base recipe"});
    }
    table.erase("extends");
  }
  stack.pop_back();
  files.push_back(path);
  for (const auto& [k, v] : table) record_locations(v, std::string(k.str()), locations);
  merge_into(out, table);
}

bool valid_key_segment(const std::string& segment) {
  if (segment.empty()) return false;
  return std::all_of(segment.begin(), segment.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

bool is_index(const std::string& segment) {
  return !segment.empty() && std::all_of(segment.begin(), segment.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Locations of values set by overrides, keyed by the dotted path they set.
using OverrideSources = std::map<std::string, std::pair<SourceLocation, std::string>>;

std::string join_path(const std::vector<std::string>& segments) {
  std::string out;
  for (size_t i = 0; i < segments.size(); ++i) out += (i ? "." : "") + segments[i];
  return out;
}

void apply_override(toml::table& root, const std::string& text, OverrideSources& sources,
                    std::vector<Diagnostic>& diagnostics) {
  const SourceLocation where{"override '" + text + "'", 0, 0};
  const size_t equals = text.find('=');
  if (equals == std::string::npos || equals == 0) {
    diagnostics.push_back({where, "bad override syntax: expected key.path=value, e.g. optim.lr=1e-5"});
    return;
  }
  const std::string key = text.substr(0, equals);
  const std::string raw = text.substr(equals + 1);
  std::vector<std::string> segments;
  std::string segment;
  std::istringstream split(key);
  while (std::getline(split, segment, '.')) segments.push_back(segment);
  if (key.back() == '.') segments.push_back("");
  if (segments.size() < 2) {
    diagnostics.push_back({where, "bad override key '" + key + "': name a section and a key, e.g. optim.lr=1e-5"});
    return;
  }
  for (const std::string& s : segments)
    if (!valid_key_segment(s)) {
      diagnostics.push_back({where, "bad override key '" + key + "': segment '" + s +
                                        "' must be non-empty letters, digits, '_' or '-'"});
      return;
    }
  if (raw.empty()) {
    diagnostics.push_back({where, "override '" + key + "' has an empty value; write " + key + "=<value>"});
    return;
  }
  nlohmann::json value = parse_cli_value(raw);

  // Walk to the parent table, creating tables; arrays of tables are addressed by index.
  toml::table* table = &root;
  std::vector<std::string> resolved;
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    const std::string& name = segments[i];
    toml::node* node = table->get(name);
    resolved.push_back(name);
    if (node == nullptr) {  // a table the override creates: problems with it (e.g. a misspelt section) are its own
      table->insert_or_assign(name, toml::table{});
      node = table->get(name);
      sources[join_path(resolved)] = {where, raw};
    }
    if (auto* array = node->as_array()) {
      size_t index = 0;
      std::string index_text = "0";
      if (i + 2 < segments.size() && is_index(segments[i + 1])) {
        const std::string& digits = index_text = segments[i + 1];
        // An index too large for size_t is simply out of range (the diagnostic below names it).
        if (std::from_chars(digits.data(), digits.data() + digits.size(), index).ec != std::errc()) index = SIZE_MAX;
        ++i;
      } else if (array->size() != 1) {
        diagnostics.push_back({where, "'" + name + "' has " + std::to_string(array->size()) +
                                          " entries; address one as " + name + ".<index>.<key> (0-based)"});
        return;
      }
      if (index >= array->size() || !(*array)[index].is_table()) {
        diagnostics.push_back({where, "'" + name + "' has no table entry " + index_text + " (it has " +
                                          std::to_string(array->size()) + ")"});
        return;
      }
      resolved.push_back(std::to_string(index));
      table = (*array)[index].as_table();
    } else if (auto* child = node->as_table()) {
      table = child;
    } else {
      diagnostics.push_back({where, "'" + join_path(resolved) + "' is a value, not a table; cannot set '" + key + "'"});
      return;
    }
  }
  insert_json(*table, segments.back(), value);
  resolved.push_back(segments.back());
  sources[join_path(resolved)] = {where, raw};
}

struct Validator {
  PluginRegistry& registry;
  OverrideSources& override_sources;
  const Locations& locations;
  std::string recipe_path;
  std::vector<Diagnostic>& diagnostics;

  SourceLocation where(const std::string& path) const {
    auto it = override_sources.find(path);
    if (it != override_sources.end()) return it->second.first;
    auto found = locations.find(path);
    return found != locations.end() ? found->second : SourceLocation{recipe_path, 0, 0};
  }
  std::string raw_text(const std::string& path) const {
    auto it = override_sources.find(path);
    return it != override_sources.end() ? it->second.second : std::string();
  }
  std::vector<GivenValue> given_values(const toml::table& table, const std::string& path) const {
    std::vector<GivenValue> out;
    for (const auto& [k, v] : table) {
      const std::string key(k.str());
      out.push_back({key, to_json(v), where(path + "." + key), raw_text(path + "." + key)});
    }
    return out;
  }

  nlohmann::json plain_section(const SectionSpec& spec, const toml::table* table, const std::string& path) {
    std::vector<GivenValue> given;
    if (table != nullptr) given = given_values(*table, path);
    return resolve_params(spec.keys, given, {}, "[" + spec.name + "]", diagnostics);
  }

  nlohmann::json component(const SectionSpec& spec, const toml::table* table, const std::string& path,
                           const SourceLocation& table_where) {
    std::vector<GivenValue> given;
    if (table != nullptr) given = given_values(*table, path);
    std::vector<GivenValue> host_given, plugin_given;
    for (const GivenValue& g : given) (spec.key(g.key) != nullptr ? host_given : plugin_given).push_back(g);
    std::vector<std::string> host_keys;
    for (const KeySpec& k : spec.keys) host_keys.push_back(k.name);

    const size_t errors_before = diagnostics.size();
    nlohmann::json resolved = resolve_params(spec.keys, host_given, {}, "[" + spec.name + "]", diagnostics);
    if (diagnostics.size() != errors_before || !resolved.contains("id")) return resolved;
    const std::string id = resolved["id"].get<std::string>();
    SourceLocation id_where = table_where;
    for (const GivenValue& g : host_given)
      if (g.key == "id") id_where = g.where;

    const pd_kind kind = *spec.component;
    const LoadedPlugin* plugin = registry.find(id);
    if (plugin == nullptr) {
      const std::vector<std::string> known = registry.ids(kind);
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      diagnostics.push_back({id_where, "[" + spec.name + "] unknown " + kind_name(kind) + " '" + id + "'" +
                                           did_you_mean(id, known) + " (available: " +
                                           (list.empty() ? "none found" : list) +
                                           "). HINT: `prefdiff plugins list` shows what is on the plugin path"});
      return resolved;
    }
    if (plugin->kind() != kind) {
      auto with_article = [](pd_kind k) {
        const std::string name = kind_name(k);
        return (name[0] == 'o' ? "an " : "a ") + name;
      };
      diagnostics.push_back({id_where, "[" + spec.name + "] '" + id + "' is " + with_article(plugin->kind()) +
                                           " plugin, not " + with_article(kind)});
      return resolved;
    }
    const std::string owner = "[" + spec.name + "] '" + id + "'";
    nlohmann::json params = resolve_params(plugin->params, plugin_given, host_keys, owner, diagnostics);
    if (diagnostics.size() == errors_before) {
      if (auto refusal = try_instantiate(*plugin, params))
        diagnostics.push_back({table_where, owner + " refused its parameters: " + *refusal});
    }
    for (auto& [k, v] : params.items()) resolved[k] = v;
    return resolved;
  }
};

}  // namespace

RecipeError::RecipeError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error(summarize(diagnostics)), diagnostics_(std::move(diagnostics)) {}

nlohmann::json parse_cli_value(const std::string& text) {
  try {
    toml::table parsed = toml::parse("value = " + text);
    if (const toml::node* node = parsed.get("value")) return to_json(*node);
  } catch (const toml::parse_error&) {
  }
  return text;  // a bare word: a string
}

nlohmann::json resolve_params(const std::vector<KeySpec>& schema, const std::vector<GivenValue>& given,
                              const std::vector<std::string>& host_keys, const std::string& owner,
                              std::vector<Diagnostic>& diagnostics) {
  nlohmann::json out = nlohmann::json::object();
  std::vector<std::string> names(host_keys);
  for (const KeySpec& k : schema) names.push_back(k.name);
  for (const GivenValue& g : given) {
    if (std::find(host_keys.begin(), host_keys.end(), g.key) != host_keys.end()) continue;
    const KeySpec* spec = nullptr;
    for (const KeySpec& k : schema)
      if (k.name == g.key) spec = &k;
    if (spec == nullptr) {
      std::string known;
      for (const KeySpec& k : schema) known += (known.empty() ? "" : ", ") + k.name;
      diagnostics.push_back({g.where, owner + " unknown key '" + g.key + "'" + did_you_mean(g.key, names) +
                                          (known.empty() ? " (it takes no keys)" : " (known keys: " + known + ")")});
      continue;
    }
    nlohmann::json value = g.value;
    if (spec->type == ValueType::String && !value.is_string() && !g.raw_text.empty()) value = g.raw_text;
    if (auto problem = check_value(*spec, value)) {
      diagnostics.push_back({g.where, owner + " key '" + g.key + "': " + *problem});
      continue;
    }
    if (spec->type == ValueType::Float) value = value.get<double>();
    if (spec->bounds & PD_PARAM_PATH) {
      // Relative paths are relative to the recipe file that sets them (overrides: the working directory).
      auto resolve = [&](const std::string& p) {
        if (p.empty() || fs::path(p).is_absolute() || g.where.line == 0) return p;
        return (fs::path(g.where.file).parent_path() / p).lexically_normal().string();
      };
      if (value.is_string()) value = resolve(value.get<std::string>());
      if (value.is_array())
        for (auto& item : value) item = resolve(item.get<std::string>());
    }
    out[g.key] = value;
  }
  for (const KeySpec& k : schema)
    if (!out.contains(k.name) && !k.default_value.is_null()) out[k.name] = k.default_value;
  return out;
}

std::vector<pd_param_value> to_param_values(const LoadedPlugin& plugin, const nlohmann::json& params,
                                            std::vector<std::string>& storage) {
  storage.clear();
  storage.reserve(plugin.params.size());  // no reallocation: values point into these strings
  std::vector<pd_param_value> values;
  for (const KeySpec& spec : plugin.params) {
    if (!params.contains(spec.name)) continue;
    storage.emplace_back();
    values.push_back(to_param_value(spec, params.at(spec.name), storage.back()));
  }
  return values;
}

std::optional<std::string> try_instantiate(const LoadedPlugin& plugin, const nlohmann::json& params) {
  std::vector<std::string> storage;
  const std::vector<pd_param_value> values = to_param_values(plugin, params, storage);
  sdk::ErrorBuffer error;
  pd_instance* instance = nullptr;
  pd_status status = PD_OK;
  if (plugin.kind() == PD_KIND_OBJECTIVE) {
    const auto* functions = static_cast<const pd_objective_functions*>(plugin.descriptor->functions);
    status = functions->create(host_services(), values.data(), static_cast<uint32_t>(values.size()), &instance,
                               error.get());
    if (status == PD_OK && instance != nullptr) functions->destroy(instance);
  } else if (plugin.kind() == PD_KIND_NOISE_INJECTOR) {
    const auto* functions = static_cast<const pd_noise_functions*>(plugin.descriptor->functions);
    status = functions->create(host_services(), values.data(), static_cast<uint32_t>(values.size()), &instance,
                               error.get());
    if (status == PD_OK && instance != nullptr) functions->destroy(instance);
  }
  if (status == PD_OK) return std::nullopt;
  return error.message().empty() ? std::string(sdk::status_name(status)) : error.message();
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides, PluginRegistry& registry) {
  std::vector<Diagnostic> diagnostics;
  Recipe recipe;
  recipe.path = path;
  recipe.overrides = overrides;

  toml::table merged;
  Locations locations;
  std::vector<std::string> stack;
  load_chain(path, SourceLocation{path, 0, 0}, stack, recipe.files, merged, locations, diagnostics);
  if (!diagnostics.empty()) throw RecipeError(diagnostics);

  OverrideSources override_sources;
  for (const std::string& text : overrides) apply_override(merged, text, override_sources, diagnostics);

  Validator validator{registry, override_sources, locations, path, diagnostics};
  nlohmann::json values = nlohmann::json::object();

  // [plugins] first: it extends the search path for every component below.
  const SectionSpec& plugins_spec = *find_section("plugins");
  const toml::node* plugins_node = merged.get("plugins");
  values["plugins"] = validator.plain_section(plugins_spec, plugins_node ? plugins_node->as_table() : nullptr, "plugins");
  std::vector<std::string> extra;
  if (values["plugins"].contains("paths"))
    for (const auto& p : values["plugins"]["paths"]) extra.push_back(p.get<std::string>());
  registry.scan(PluginRegistry::search_path(extra));
  for (const PluginProblem& problem : registry.problems())
    diagnostics.push_back({SourceLocation{problem.path, 0, 0}, problem.message});

  for (const auto& [k, node] : merged) {
    const std::string name(k.str());
    const SectionSpec* spec = find_section(name);
    if (spec == nullptr) {
      diagnostics.push_back({validator.where(name), "unknown section [" + name + "]" + did_you_mean(name, section_names())});
      continue;
    }
    if (!node.is_table() && !(spec->allow_array && node.is_array()))
      diagnostics.push_back({validator.where(name), "'" + name + "' must be a table ([" + name + "])" +
                                                    (spec->allow_array ? " or an array of tables ([[" + name + "]])" : "")});
  }

  for (const SectionSpec& spec : recipe_sections()) {
    if (spec.name == "plugins") continue;
    const toml::node* node = merged.get(spec.name);
    const SourceLocation section_where = validator.where(spec.name);
    if (spec.allow_array) {
      nlohmann::json entries = nlohmann::json::array();
      if (node != nullptr && node->is_array()) {
        const toml::array& array = *node->as_array();
        if (array.empty()) diagnostics.push_back({section_where, "[[" + spec.name + "]] has no entries"});
        for (size_t i = 0; i < array.size(); ++i) {
          const std::string entry_path = spec.name + "." + std::to_string(i);
          if (!array[i].is_table()) {
            diagnostics.push_back({validator.where(entry_path), "[[" + spec.name + "]] entry " + std::to_string(i) + " must be a table"});
            continue;
          }
          entries.push_back(validator.component(spec, array[i].as_table(), entry_path, validator.where(entry_path)));
        }
      } else {
        entries.push_back(validator.component(spec, node ? node->as_table() : nullptr, spec.name, section_where));
      }
      values[spec.name] = entries;
    } else if (spec.component) {
      values[spec.name] = validator.component(spec, node ? node->as_table() : nullptr, spec.name, section_where);
    } else {
      values[spec.name] = validator.plain_section(spec, node ? node->as_table() : nullptr, spec.name);
    }
  }

  if (!diagnostics.empty()) {
    // File order, then problems without a line (e.g. a default plugin that is missing) last.
    // Files in extends order (base first); anything else (overrides, defaults) after them.
    auto file_rank = [&](const std::string& file) {
      return static_cast<size_t>(std::find(recipe.files.begin(), recipe.files.end(), file) - recipe.files.begin());
    };
    std::stable_sort(diagnostics.begin(), diagnostics.end(), [&](const Diagnostic& a, const Diagnostic& b) {
      return std::make_tuple(a.where.line == 0, file_rank(a.where.file), a.where.line, a.where.column) <
             std::make_tuple(b.where.line == 0, file_rank(b.where.file), b.where.line, b.where.column);
    });
    throw RecipeError(diagnostics);
  }
  recipe.values = std::move(values);
  return recipe;
}

std::string Recipe::to_toml() const {
  toml::table root;
  for (const auto& [k, v] : values.items()) insert_json(root, k, v);
  std::ostringstream out;
  out << root << "\n";
  return out.str();
}

}  // namespace prefdiff
