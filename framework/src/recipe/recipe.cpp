#include "prefdiff/recipe/recipe.hpp"

#include <glob.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>
#include <sstream>
#include <tuple>

#include <toml++/toml.h>

#include "prefdiff/host/host_services.hpp"
#include "prefdiff/host/param_json.hpp"
#include "prefdiff/recipe/recipe_schema.hpp"
#include "prefdiff/instance/did_you_mean.hpp"

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

// The problems of one recipe in report order (extends chain, then line; problems without a line last),
// keeping only the first kMaxDiagnostics so that a recipe with millions of bad keys cannot exhaust memory.
class Problems {
 public:
  explicit Problems(const std::vector<std::string>& files) : files_(files) {}
  void add(Diagnostic d) {
    ++total_;
    Entry entry{key(d.where), total_, std::move(d)};
    if (kept_.size() < kMaxDiagnostics) {
      kept_.push_back(std::move(entry));
      std::push_heap(kept_.begin(), kept_.end(), less);
    } else if (less(entry, kept_.front())) {
      std::pop_heap(kept_.begin(), kept_.end(), less);
      kept_.back() = std::move(entry);
      std::push_heap(kept_.begin(), kept_.end(), less);
    }
  }
  bool empty() const { return total_ == 0; }
  size_t total() const { return total_; }
  // The kept problems in order, and a last line counting the ones left out.
  std::vector<Diagnostic> take() {
    std::sort_heap(kept_.begin(), kept_.end(), less);
    std::vector<Diagnostic> out;
    for (Entry& e : kept_) out.push_back(std::move(e.diagnostic));
    if (total_ > out.size())
      out.push_back({SourceLocation{files_.empty() ? std::string() : files_.back(), 0, 0},
                     "... and " + std::to_string(total_ - out.size()) + " more problem(s) not shown (" +
                         std::to_string(total_) + " in all); fix the ones above first"});
    kept_.clear();
    return out;
  }

 private:
  using Key = std::tuple<bool, size_t, int, int>;
  struct Entry {
    Key key;
    size_t sequence;
    Diagnostic diagnostic;
  };
  static bool less(const Entry& a, const Entry& b) { return std::tie(a.key, a.sequence) < std::tie(b.key, b.sequence); }
  Key key(const SourceLocation& where) const {
    const size_t rank = static_cast<size_t>(std::find(files_.begin(), files_.end(), where.file) - files_.begin());
    return {where.line == 0, rank, where.line, where.column};
  }
  const std::vector<std::string>& files_;
  std::vector<Entry> kept_;
  size_t total_ = 0;
};

SourceLocation location_of(const toml::node& node) {
  SourceLocation where;
  const toml::source_region& source = node.source();
  if (source.path) where.file = *source.path;
  where.line = static_cast<int>(source.begin.line);
  where.column = static_cast<int>(source.begin.column);
  return where;
}

nlohmann::json to_json(const toml::node& node);

// A TOML value as the resolver sees it, shown in messages as JSON text.
instance::Value given_value(const toml::node& node) {
  using instance::Value;
  Value out;
  if (const auto* v = node.as_string()) out = Value::string(v->get());
  else if (const auto* v = node.as_integer()) out = Value::whole(v->get());
  else if (const auto* v = node.as_floating_point()) out = Value::real(v->get());
  else if (const auto* v = node.as_boolean()) out = Value::flag(v->get());
  else if (const auto* a = node.as_array(); a != nullptr && (a->empty() || a->is_homogeneous(toml::node_type::string))) {
    std::vector<std::string> items;
    for (const auto& item : *a) items.push_back(item.as_string()->get());
    out = Value::strings(std::move(items));
  }
  out.shown = to_json(node).dump();
  return out;
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
      // A single [objective] table is entry 0 of the list form: objective.0.beta means objective.beta.
      const SectionSpec* section = i == 0 ? find_section(name) : nullptr;
      if (section != nullptr && section->allow_array && i + 2 < segments.size() && is_index(segments[i + 1])) {
        if (segments[i + 1] != "0") {
          diagnostics.push_back({where, "'" + name + "' is a single [" + name + "] table, so it has only entry 0; " + name +
                                            ".<index>.<key> addresses the entries of a [[" + name + "]] list. Write " +
                                            name + "." + segments.back() + " (or " + name + ".0." + segments.back() +
                                            "), or give the recipe several [[" + name + "]] tables"});
          return;
        }
        ++i;
      }
    } else {
      diagnostics.push_back({where, "'" + join_path(resolved) + "' is a value, not a table; cannot set '" + key + "'"});
      return;
    }
  }
  insert_json(*table, segments.back(), value);
  resolved.push_back(segments.back());
  sources[join_path(resolved)] = {where, raw};
}

// Whether a path parameter names something that exists: a file or folder, or a glob (with {a,b}
// braces) that matches at least one. Cheap: no file is read.
bool path_exists(const std::string& pattern) {
  if (pattern.find_first_of("*?[{") == std::string::npos) {
    std::error_code ec;
    return fs::exists(pattern, ec);
  }
  glob_t matches{};
  const int status = ::glob(pattern.c_str(), GLOB_BRACE | GLOB_NOSORT, nullptr, &matches);
  const bool found = status == 0 && matches.gl_pathc > 0;
  globfree(&matches);
  return found;
}

struct Validator {
  PluginRegistry& registry;
  OverrideSources& override_sources;
  const Locations& locations;
  std::string recipe_path;
  Problems& problems;
  Components& components;

  SourceLocation where(const std::string& path) const {
    auto it = override_sources.find(path);
    if (it != override_sources.end()) return it->second.first;
    auto found = locations.find(path);
    return found != locations.end() ? found->second : SourceLocation{recipe_path, 0, 0};
  }

  struct Table {
    std::vector<instance::GivenParam> given;
    std::vector<SourceLocation> where;  // per given key
  };
  // The keys of a recipe table as given: values, where they were written, and the folder a relative
  // path is resolved against (the recipe that sets it; command-line values are taken as they are).
  Table given_values(const toml::table* table, const std::string& path) const {
    Table out;
    if (table == nullptr) return out;
    for (const auto& [k, v] : *table) {
      const std::string key(k.str()), key_path = path + "." + key;
      const SourceLocation at = where(key_path);
      auto raw = override_sources.find(key_path);
      const std::string base = at.line > 0 ? fs::path(at.file).parent_path().string() : std::string();
      out.given.push_back({key, given_value(v), raw != override_sources.end() ? raw->second.second : "", base});
      out.where.push_back(at);
    }
    return out;
  }

  instance::ParamSet resolve(const std::vector<ParamSpec>& schema, const Table& table, const std::vector<std::string>& reserved,
                             const std::string& owner) {
    std::vector<instance::ParamProblem> found;
    instance::ParamSet params = instance::resolve_params(schema, table.given, reserved, found);
    for (const instance::ParamProblem& p : found) problems.add({table.where[p.index], owner + " " + p.message});
    return params;
  }

  nlohmann::json plain_section(const SectionSpec& spec, const toml::table* table, const std::string& path) {
    return params_to_json(resolve(spec.keys, given_values(table, path), {}, "[" + spec.name + "]"));
  }

  nlohmann::json component(const SectionSpec& spec, const toml::table* table, const std::string& path,
                           const SourceLocation& table_where) {
    const Table all = given_values(table, path);
    Table host, plugin_table;
    for (size_t k = 0; k < all.given.size(); ++k) {
      Table& to = spec.key(all.given[k].name) != nullptr ? host : plugin_table;
      to.given.push_back(all.given[k]);
      to.where.push_back(all.where[k]);
    }
    std::vector<std::string> host_keys;
    for (const ParamSpec& k : spec.keys) host_keys.push_back(k.name);

    const size_t errors_before = problems.total();
    nlohmann::json resolved = params_to_json(resolve(spec.keys, host, {}, "[" + spec.name + "]"));
    if (problems.total() != errors_before || !resolved.contains("id")) return resolved;
    const std::string id = resolved["id"].get<std::string>();
    SourceLocation id_where = table_where;
    for (size_t k = 0; k < host.given.size(); ++k)
      if (host.given[k].name == "id") id_where = host.where[k];

    const pd_kind kind = *spec.component;
    const PluginLibrary* plugin = registry.find(id);
    if (plugin == nullptr) {
      const std::vector<std::string> known = registry.ids(kind);
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      problems.add({id_where, "[" + spec.name + "] unknown " + kind_name(kind) + " '" + id + "'" + did_you_mean(id, known) +
                                  " (available: " + (list.empty() ? "none found" : list) +
                                  "). HINT: `prefdiff plugins list` shows what is on the plugin path"});
      return resolved;
    }
    if (plugin->kind() != kind) {
      auto with_article = [](pd_kind k) {
        const std::string name = kind_name(k);
        return (name[0] == 'o' ? "an " : "a ") + name;
      };
      problems.add({id_where, "[" + spec.name + "] '" + id + "' is " + with_article(plugin->kind()) + " plugin, not " +
                                  with_article(kind)});
      return resolved;
    }
    const std::string owner = "[" + spec.name + "] '" + id + "'";
    instance::ParamSet params = resolve(plugin->params, plugin_table, host_keys, owner);
    const nlohmann::json plugin_values = params_to_json(params);
    for (const auto& [k, v] : plugin_values.items()) resolved[k] = v;
    if (problems.total() != errors_before) return resolved;
    // The plugin judges its parameters itself: the instance built here is the one training uses.
    try {
      if (kind == PD_KIND_OBJECTIVE)
        components.objectives.add(resolved.value("weight", 1.0),
                                  std::make_unique<instance::ObjectiveInstance>(*plugin, std::move(params), host_services()));
      else if (kind == PD_KIND_NOISE_INJECTOR)
        components.noise = std::make_unique<instance::NoiseInstance>(*plugin, std::move(params), host_services());
      else
        choose_data(*plugin, std::move(params), table_where);
    } catch (const instance::PluginError& e) {
      const std::string reason = e.plugin_message().empty() ? std::string(e.what()) : e.plugin_message();
      problems.add({table_where, owner + " refused its parameters: " + reason});
    }
    return resolved;
  }

  // Datasets are not opened here (that reads data), but the paths they name must exist.
  void choose_data(const PluginLibrary& plugin, instance::ParamSet params, const SourceLocation& table_where) {
    components.data = &plugin;
    components.data_traits = registry.builtin_traits(plugin.id());
    const std::string owner = "[data] '" + plugin.id() + "' ";
    if (components.data_traits != nullptr && components.data_traits->check_paths) {
      for (const std::string& problem : components.data_traits->check_paths(params)) problems.add({table_where, owner + problem});
    } else {
      for (const ParamSpec& spec : plugin.params) {
        const instance::Value* value = params.find(spec.name);
        if (!spec.is_path() || value == nullptr || value->kind != instance::Value::Kind::String) continue;
        const SourceLocation at = where("data." + spec.name);
        if (value->text.empty())
          problems.add({at.line > 0 ? at : table_where, owner + "key '" + spec.name + "' is empty: name the data, e.g. data." +
                                                            spec.name + "=\"/data/pairs/train-*.h5\""});
        else if (!path_exists(value->text))
          problems.add({at, owner + "key '" + spec.name + "': \"" + value->text + "\" matches no file. HINT: check the "
                                "path (a relative path is relative to the recipe file that sets it)"});
      }
    }
    components.data_params = std::move(params);
  }

  // [backbone]: exactly one source of weights, and the files it names exist.
  void check_backbone(const nlohmann::json& backbone) {
    const bool data_model = components.data_traits != nullptr && components.data_traits->supplies_model;
    for (const char* key : {"pretrained", "config"}) {
      if (!backbone.contains(key)) continue;
      const std::string value = backbone[key].get<std::string>();
      const SourceLocation at = where(std::string("backbone.") + key);
      if (data_model) {
        problems.add({at, std::string("[backbone] ") + key + " is set, but [data] '" + components.data->id() +
                              "' supplies the model its pairs were made for, and training starts from it; HINT: remove "
                              "backbone." + key + ", or use another [data] source"});
      } else if (!path_exists(value)) {
        problems.add({at, std::string("[backbone] ") + key + " = \"" + value + "\" does not exist. HINT: point backbone." +
                              key + " at " + (std::string(key) == "pretrained"
                                                  ? "a diffusers model folder (with unet/config.json)"
                                                  : "a UNet config.json") +
                              ", e.g. on the command line: backbone." + key + "=/path"});
      }
    }
    if (!data_model && !backbone.contains("pretrained") && !backbone.contains("config"))
      problems.add({where("backbone"), "[backbone] has no weights: set backbone.pretrained (a diffusers model folder) or "
                                       "backbone.config (a UNet config.json, random initialisation)"});
  }

};

}  // namespace

RecipeError::RecipeError(std::vector<Diagnostic> diagnostics, size_t total)
    : std::runtime_error(summarize(diagnostics)),
      diagnostics_(std::move(diagnostics)),
      total_(std::max(total, diagnostics_.size())) {}

nlohmann::json parse_cli_value(const std::string& text) {
  try {
    toml::table parsed = toml::parse("value = " + text);
    if (const toml::node* node = parsed.get("value")) return to_json(*node);
  } catch (const toml::parse_error&) {
  }
  return text;  // a bare word: a string
}

instance::ParamSet params_from_arguments(const PluginLibrary& plugin, const std::vector<std::string>& arguments) {
  std::vector<instance::GivenParam> given;
  std::vector<SourceLocation> where;
  std::vector<Diagnostic> diagnostics;
  for (const std::string& arg : arguments) {
    const size_t eq = arg.find('=');
    const SourceLocation at{"argument '" + arg + "'", 0, 0};
    if (eq == std::string::npos || eq == 0) {
      diagnostics.push_back({at, "expected param=value, e.g. beta=5000"});
      continue;
    }
    const std::string raw = arg.substr(eq + 1);
    given.push_back({arg.substr(0, eq), value_from_json(parse_cli_value(raw)), raw, ""});
    where.push_back(at);
  }
  std::vector<instance::ParamProblem> problems;
  instance::ParamSet params = instance::resolve_params(plugin.params, given, {}, problems);
  for (const instance::ParamProblem& p : problems) diagnostics.push_back({where[p.index], "'" + plugin.id() + "' " + p.message});
  if (!diagnostics.empty()) throw RecipeError(diagnostics);
  return params;
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides, PluginRegistry& registry) {
  std::vector<Diagnostic> early;
  Recipe recipe;
  recipe.path = path;
  recipe.overrides = overrides;
  recipe.components = std::make_shared<Components>();

  toml::table merged;
  Locations locations;
  std::vector<std::string> stack;
  load_chain(path, SourceLocation{path, 0, 0}, stack, recipe.files, merged, locations, early);
  if (!early.empty()) throw RecipeError(early);

  OverrideSources override_sources;
  for (const std::string& text : overrides) apply_override(merged, text, override_sources, early);
  Problems problems(recipe.files);
  for (Diagnostic& d : early) problems.add(std::move(d));

  Validator validator{registry, override_sources, locations, path, problems, *recipe.components};
  nlohmann::json values = nlohmann::json::object();

  // [plugins] first: it extends the search path for every component below.
  const SectionSpec& plugins_spec = *find_section("plugins");
  const toml::node* plugins_node = merged.get("plugins");
  values["plugins"] = validator.plain_section(plugins_spec, plugins_node ? plugins_node->as_table() : nullptr, "plugins");
  std::vector<std::string> extra;
  if (values["plugins"].contains("paths"))
    for (const auto& p : values["plugins"]["paths"]) extra.push_back(p.get<std::string>());
  registry.scan(PluginRegistry::search_path(extra));
  for (const PluginProblem& problem : registry.problems()) problems.add({SourceLocation{problem.path, 0, 0}, problem.message});

  for (const auto& [k, node] : merged) {
    const std::string name(k.str());
    const SectionSpec* spec = find_section(name);
    if (spec == nullptr) {
      problems.add({validator.where(name), "unknown section [" + name + "]" + did_you_mean(name, section_names())});
      continue;
    }
    if (!node.is_table() && !(spec->allow_array && node.is_array()))
      problems.add({validator.where(name), "'" + name + "' must be a table ([" + name + "])" +
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
        if (array.empty()) problems.add({section_where, "[[" + spec.name + "]] has no entries"});
        for (size_t i = 0; i < array.size(); ++i) {
          const std::string entry_path = spec.name + "." + std::to_string(i);
          if (!array[i].is_table()) {
            problems.add({validator.where(entry_path), "[[" + spec.name + "]] entry " + std::to_string(i) + " must be a table"});
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
  if (recipe.components->data != nullptr) validator.check_backbone(values["backbone"]);

  if (!problems.empty()) {
    const size_t total = problems.total();
    throw RecipeError(problems.take(), total);
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
