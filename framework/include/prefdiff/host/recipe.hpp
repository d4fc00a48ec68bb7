// Recipes: TOML files (toml++), `extends` chains merged key by key, `key.path=value` overrides, and
// validation of every host section and every plugin's table against its schema. All problems are
// collected and reported at once, each with file:line:column.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/host/plugin_registry.hpp"

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
  explicit RecipeError(std::vector<Diagnostic> diagnostics);
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

struct Recipe {
  std::string path;                    // the recipe file as given
  std::vector<std::string> files;      // the extends chain, base first
  std::vector<std::string> overrides;  // as given on the command line
  // Resolved values: every section with defaults filled; "objective" is always an array of tables.
  nlohmann::json values;

  const nlohmann::json& section(const std::string& name) const { return values.at(name); }
  std::string to_toml() const;  // the resolved recipe, loadable again
};

// Loads, merges, overrides and validates. `registry` is filled from the search path (recipe
// [plugins] paths first). Throws RecipeError listing every problem found.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides, PluginRegistry& registry);

// One key of a table as given: by a recipe file (with its location) or on the command line.
struct GivenValue {
  std::string key;
  nlohmann::json value;
  SourceLocation where;
  std::string raw_text;  // command-line text when given as k=v (a string-typed key takes it verbatim)
};

// Checks given keys against a schema (unknown keys with did-you-mean, types, ranges), fills defaults,
// and returns the resolved table. `host_keys` are accepted and skipped (e.g. id, weight). `owner`
// names the table in messages, e.g. "[objective] 'alpha-dpo'".
nlohmann::json resolve_params(const std::vector<KeySpec>& schema, const std::vector<GivenValue>& given,
                              const std::vector<std::string>& host_keys, const std::string& owner,
                              std::vector<Diagnostic>& diagnostics);

// Parses a command-line value: TOML syntax (1e-3, true, "x", [..]) or, failing that, a bare string.
nlohmann::json parse_cli_value(const std::string& text);

// Lets the plugin itself judge its parameters: create() then destroy() an instance. Returns the
// plugin's own message on refusal. Datasets are not instantiated (that would touch data).
std::optional<std::string> try_instantiate(const LoadedPlugin& plugin, const nlohmann::json& params);

// The ABI view of resolved params; `storage` keeps the strings alive.
std::vector<pd_param_value> to_param_values(const LoadedPlugin& plugin, const nlohmann::json& params,
                                            std::vector<std::string>& storage);

}  // namespace prefdiff
