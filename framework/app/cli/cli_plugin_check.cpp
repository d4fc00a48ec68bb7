// `prefdiff plugins check PATH|ID` and `prefdiff plugins eval ID [k=v ...] --margins h1,h2,...`: the
// SDK's conformance kit (prefdiff-plugin-check) run on a plugin of the host's plugin path, with its
// parameters validated as in a recipe. The kit runs as its own process, next to this executable: the
// host does not link it, and a plugin that crashes or calls exit() fails the check instead of the host.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <boost/dll/runtime_symbol_info.hpp>

#include "cli.hpp"
#include "prefdiff/host/host_services.hpp"
#include "prefdiff/host/param_json.hpp"
#include "prefdiff/recipe/recipe.hpp"

namespace prefdiff {
namespace {
namespace fs = std::filesystem;

// An id from the registry, or a path to a library loaded for this command alone.
PluginLibrary resolve(CliContext& context, const std::string& id_or_path) {
  std::error_code ec;
  if (fs::is_regular_file(id_or_path, ec)) return instance::load_library(id_or_path, host_services());
  if (const PluginLibrary* plugin = context.registry().find(id_or_path)) return *plugin;
  throw PluginLoadError(PD_ERR_INVALID_ARGUMENT, "'" + id_or_path + "' is neither a plugin file nor the id of a plugin "
                                                 "on the plugin path. HINT: `prefdiff plugins list`");
}

PluginLibrary objective_plugin(CliContext& context, const std::string& id_or_path) {
  PluginLibrary plugin = resolve(context, id_or_path);
  if (plugin.kind() != PD_KIND_OBJECTIVE)
    throw PluginLoadError(PD_ERR_INVALID_ARGUMENT, "'" + plugin.id() + "' is a " + kind_name(plugin.kind()) +
                                                       " plugin; the conformance kit checks objectives");
  if (plugin.path == "built-in")
    throw PluginLoadError(PD_ERR_INVALID_ARGUMENT, "'" + plugin.id() + "' is built into prefdiff; the kit checks plugin files");
  return plugin;
}

// The kit's tool: next to this executable (build tree and install prefix alike), else on PATH.
std::string kit_tool() {
  boost::dll::fs::error_code ec;
  const auto here = boost::dll::program_location(ec);
  if (!ec) {
    const fs::path next_to = fs::path(here.parent_path().string()) / "prefdiff-plugin-check";
    if (fs::exists(next_to)) return next_to.string();
  }
  return "prefdiff-plugin-check";
}

// The plugin judges its parameters itself, as when a recipe is validated: a refusal is an invalid
// command line (exit 3), not a failed check.
instance::ParamSet checked_params(const PluginLibrary& plugin, const std::vector<std::string>& arguments) {
  instance::ParamSet params = params_from_arguments(plugin, arguments);
  try {
    instance::ObjectiveInstance probe(plugin, params, host_services());
  } catch (const instance::PluginError& e) {
    throw RecipeError({Diagnostic{SourceLocation{"'" + plugin.id() + "'", 0, 0}, "refused its parameters: " +
                                      (e.plugin_message().empty() ? std::string(e.what()) : e.plugin_message())}});
  }
  return params;
}

// Runs the kit on `plugin` with the validated `params` (as --param key=value), passing its output through.
int run_kit(const PluginLibrary& plugin, const instance::ParamSet& params, const std::vector<std::string>& extra) {
  std::vector<std::string> args{kit_tool(), plugin.path};
  for (const auto& [name, value] : params.values()) {
    const nlohmann::json v = value_to_json(value);
    args.push_back("--param");
    args.push_back(name + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
  }
  args.insert(args.end(), extra.begin(), extra.end());
  std::fflush(stdout);
  const pid_t child = fork();
  if (child == 0) {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "error: cannot run the conformance kit '%s': %s. HINT: build or install prefdiff-plugin-check "
                 "next to prefdiff (it is part of the SDK)\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
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
    const PluginLibrary plugin = objective_plugin(context, check_target);
    const instance::ParamSet params = checked_params(plugin, check_params);
    if (run_kit(plugin, params, {}) != 0) context.exit_code = kExitPluginError;
  });

  static std::string eval_id;
  static std::vector<std::string> eval_params;
  static std::vector<double> margins;
  CLI::App* eval = plugins.add_subcommand(
      "eval", "Evaluate an objective on one batch with the given margins h; print JSON (loss, dloss_dh, diagnostics)");
  eval->add_option("plugin", eval_id, "Plugin id or path to its library")->required();
  eval->add_option("params", eval_params, "Parameters param=value");
  eval->add_option("--margins", margins, "Comma-separated margins h, e.g. -5,-1,0,0.5,3")
      ->required()
      ->delimiter(',');
  eval->callback([&] {
    const PluginLibrary plugin = objective_plugin(context, eval_id);
    const instance::ParamSet params = checked_params(plugin, eval_params);
    std::string list;
    for (double h : margins) {
      char text[64];
      const auto end = std::to_chars(text, text + sizeof(text), h).ptr;  // shortest exact form
      list += (list.empty() ? "" : ",") + std::string(text, end);
    }
    if (run_kit(plugin, params, {"--eval", "--margins", list}) != 0) context.exit_code = kExitPluginError;
  });
}

}  // namespace prefdiff
