// Recipes: TOML files (toml++), `extends` chains merged key by key, `key.path=value` overrides, and
// validation of every host section and every plugin's table against its schema. All problems are
// collected and reported at once, each with file:line:column. Validating a recipe builds its plugin
// instances (objectives, noise injector); training uses those very instances.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/host/objective_set.hpp"
#include "prefdiff/host/plugin_registry.hpp"
#include "prefdiff/instance/noise_instance.hpp"

namespace prefdiff {

struct SourceLocation {
  std::string file;  // a recipe path, or "override 'k=v'"
  int line = 0;      // 0 when unknown
  int column = 0;
  std::string str() const;
};

struct Diagnostic {
  SourceLocation where;
  std::string message;
  std::string str() const;  // "file:line:col: error: message"
};

class RecipeError : public std::runtime_error {
 public:
  // `total`: the number of problems found, when more were found than `diagnostics` keeps.
  explicit RecipeError(std::vector<Diagnostic> diagnostics, size_t total = 0);
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }
  size_t total() const { return total_; }

 private:
  std::vector<Diagnostic> diagnostics_;
  size_t total_;
};

// At most this many problems are kept and printed; the rest are counted in one last line.
constexpr size_t kMaxDiagnostics = 100;

// The components a validated recipe built: the instances training uses.
struct Components {
  ObjectiveSet objectives;                          // one instance per [[objective]] entry, with its weight
  std::unique_ptr<instance::NoiseInstance> noise;  // the [noise] injector
  const PluginLibrary* data = nullptr;             // the [data] source: opened by training (opening reads data)
  instance::ParamSet data_params;
  const BuiltinTraits* data_traits = nullptr;      // when the source is built into the host
};

struct Recipe {
  std::string path;                    // the recipe file as given
  std::vector<std::string> files;      // the extends chain, base first
  std::vector<std::string> overrides;  // as given on the command line
  // Resolved values: every section with defaults filled; "objective" is always an array of tables.
  nlohmann::json values;
  std::shared_ptr<Components> components;

  const nlohmann::json& section(const std::string& name) const { return values.at(name); }
  std::string to_toml() const;  // the resolved recipe, loadable again
};

// Loads, merges, overrides and validates, and builds the plugin instances. `registry` is filled from the
// search path (recipe [plugins] paths first). Throws RecipeError listing every problem found.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides, PluginRegistry& registry);

// Parses a command-line value: TOML syntax (1e-3, true, "x", [..]) or, failing that, a bare string.
nlohmann::json parse_cli_value(const std::string& text);

// key=value words (command-line parameters of `plugins check|eval`) checked against a plugin's schema
// like a recipe table; `owner` names them in messages. Throws RecipeError listing every problem.
instance::ParamSet params_from_arguments(const PluginLibrary& plugin, const std::vector<std::string>& arguments);

}  // namespace prefdiff
