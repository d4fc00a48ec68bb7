// The `prefdiff` command: shared state of the subcommands and the documented exit codes.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "prefdiff/host/plugin_registry.hpp"

namespace prefdiff {

// Exit codes (docs/cli.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,        // a runtime failure (I/O, a plugin call failing, ...)
  kExitUsage = 2,          // bad command line
  kExitRecipeInvalid = 3,  // the recipe or an override is invalid (all problems printed)
  kExitPluginError = 4,    // a plugin failed to load, or failed its conformance checks
};

struct CliContext {
  std::vector<std::string> plugin_paths;  // --plugin-path, before the default search path
  int exit_code = kExitOk;

  // Scans --plugin-path, then the default search path (PREFDIFF_PLUGIN_PATH, install prefix, build tree).
  PluginRegistry& registry();

 private:
  PluginRegistry registry_;
  bool scanned_ = false;
};

void add_plugins_commands(CLI::App& app, CliContext& context);
void add_plugin_check_commands(CLI::App& plugins, CliContext& context);  // plugins check/eval
void add_recipe_commands(CLI::App& app, CliContext& context);  // recipe validate/show/schema, train
void add_launch_command(CLI::App& app, CliContext& context);   // launch --nproc N -- ...
void add_eval_command(CLI::App& app, CliContext& context);     // eval RUN_DIR (toy world)
void add_sweep_commands(CLI::App& app, CliContext& context);   // sweep FILE, sweep report DIR
void add_export_command(CLI::App& app, CliContext& context);   // export RUN -o DIR [--merge-lora]

}  // namespace prefdiff
