// `prefdiff plugins check PATH|ID` and `prefdiff plugins eval ID [k=v ...] --margins h1,h2,...`: the
// SDK's conformance kit run on plugins loaded by the host (parameters validated as in a recipe).
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "prefdiff/conformance.hpp"
#include "prefdiff/host/cli.hpp"
#include "prefdiff/host/recipe.hpp"

namespace prefdiff {
namespace {

// An id from the registry, or a path to a library loaded for this command alone.
const LoadedPlugin& resolve(CliContext& context, const std::string& id_or_path, LoadedPlugin& scratch) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(id_or_path, ec)) {
    scratch = load_plugin_library(id_or_path);
    return scratch;
  }
  if (const LoadedPlugin* plugin = context.registry().find(id_or_path)) return *plugin;
  throw PluginLoadError("'" + id_or_path + "' is neither a plugin file nor the id of a plugin on the plugin path. "
                        "HINT: `prefdiff plugins list`");
}

// Parameters given as k=v on the command line, checked against the plugin's schema like a recipe table.
nlohmann::json params_from_args(const LoadedPlugin& plugin, const std::vector<std::string>& args) {
  std::vector<GivenValue> given;
  std::vector<Diagnostic> diagnostics;
  for (const std::string& arg : args) {
    const size_t eq = arg.find('=');
    const SourceLocation where{"argument '" + arg + "'", 0, 0};
    if (eq == std::string::npos || eq == 0) {
      diagnostics.push_back({where, "expected param=value, e.g. beta=5000"});
      continue;
    }
    const std::string raw = arg.substr(eq + 1);
    given.push_back({arg.substr(0, eq), parse_cli_value(raw), where, raw});
  }
  nlohmann::json params = resolve_params(plugin.params, given, {}, "'" + plugin.id() + "'", diagnostics);
  if (diagnostics.empty())
    if (auto refusal = try_instantiate(plugin, params))
      diagnostics.push_back({SourceLocation{"'" + plugin.id() + "'", 0, 0}, "refused its parameters: " + *refusal});
  if (!diagnostics.empty()) throw RecipeError(diagnostics);
  return params;
}

}  // namespace

void add_plugin_check_commands(CLI::App& plugins, CliContext& context) {
  static std::string check_target;
  static std::vector<std::string> check_params;
  CLI::App* check = plugins.add_subcommand(
      "check", "Run the conformance kit on an objective plugin (finite differences, extremes, batching, NaN, schema)");
  check->add_option("plugin", check_target, "Plugin id or path to its library")->required();
  check->add_option("params", check_params, "Parameters param=value (default: the schema's defaults)");
  check->callback([&] {
    LoadedPlugin scratch;
    const LoadedPlugin& plugin = resolve(context, check_target, scratch);
    if (plugin.kind() != PD_KIND_OBJECTIVE)
      throw PluginLoadError("'" + plugin.id() + "' is a " + kind_name(plugin.kind()) +
                            " plugin; the conformance kit checks objectives");
    const nlohmann::json params = params_from_args(plugin, check_params);
    std::vector<std::string> storage;
    const conformance::Report report =
        conformance::check_objective(*plugin.descriptor, to_param_values(plugin, params, storage));
    std::printf("%s", report.text().c_str());
    if (!report.passed()) context.exit_code = kExitPluginError;
  });

  static std::string eval_id;
  static std::vector<std::string> eval_params;
  static std::vector<double> margins;
  CLI::App* eval = plugins.add_subcommand(
      "eval", "Evaluate an objective on one batch with the given margins h; print JSON (loss, dloss_dh, diagnostics)");
  eval->add_option("plugin", eval_id, "Plugin id or path to its library")->required();
  eval->add_option("params", eval_params, "Parameters param=value");
  eval->add_option("--margins", margins, "Comma-separated margins h, e.g. -5,-1,0,0.5,3")->required()->delimiter(',');
  eval->callback([&] {
    LoadedPlugin scratch;
    const LoadedPlugin& plugin = resolve(context, eval_id, scratch);
    if (plugin.kind() != PD_KIND_OBJECTIVE)
      throw PluginLoadError("'" + plugin.id() + "' is a " + kind_name(plugin.kind()) + " plugin, not an objective");
    const nlohmann::json params = params_from_args(plugin, eval_params);
    std::vector<std::string> storage;
    std::printf("%s\n", conformance::evaluate_margins_json(*plugin.descriptor, to_param_values(plugin, params, storage),
                                                            margins)
                             .c_str());
  });
}

}  // namespace prefdiff
