// prefdiff: the host command. Subcommands live in cli_*.cpp; exit codes in cli.hpp.
#include <cstdio>
#include <iostream>

#include "cli.hpp"
#include "prefdiff/host/log.hpp"
#include "prefdiff/recipe/recipe.hpp"
#include "prefdiff/host/version.hpp"
#include "prefdiff/torch_host/torch_info.hpp"
#include "prefdiff/instance/plugin_call.hpp"
#include "prefdiff/toy_world/source.hpp"
#include "prefdiff/data/cli.hpp"

namespace prefdiff {

PluginRegistry& CliContext::registry() {
  if (!scanned_) {
    toy::register_source(registry_);
    registry_.scan(plugin_paths);
    registry_.scan(PluginRegistry::search_path());
    scanned_ = true;
  }
  return registry_;
}

namespace {

void add_version_command(CLI::App& app) {
  app.add_subcommand("version", "Print prefdiff, LibTorch, CUDA and plugin ABI versions")->callback([] {
    std::printf("prefdiff %s (source %s)\n", prefdiff_version().c_str(), source_revision().c_str());
    std::printf("LibTorch %s\n", torch_version().c_str());
    std::printf("CUDA: %s\n", cuda_compiled() ? (cuda_available() ? "yes (compiled, GPU visible)" : "yes (compiled, no GPU visible)") : "no");
    std::printf("plugin ABI %s\n", abi_version().c_str());
  });
}

}  // namespace
}  // namespace prefdiff

int main(int argc, char** argv) {
  using namespace prefdiff;
  // A plugin that crashes or calls exit() is named on the way down (docs/quickstart.md, exit codes).
  instance::install_crash_reporter("prefdiff", kExitPluginError);
  CLI::App app{"prefdiff: align text-to-image diffusion models to pairwise preferences (Diffusion-DPO and robust variants)"};
  app.footer(
      "Exit codes: 0 ok, 1 runtime failure, 2 bad command line, 3 invalid recipe, 4 plugin load or check failure.\n"
      "Docs: docs/quickstart.md, docs/recipes.md, docs/plugin-guide.md");
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "Log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  CliContext context;
  app.add_option("--plugin-path", context.plugin_paths, "Extra plugin folder or library (repeatable; searched first)");
  app.parse_complete_callback([&] { log::set_level(log_level); });

  add_version_command(app);
  add_plugins_commands(app, context);
  add_recipe_commands(app, context);
  add_launch_command(app, context);
  add_eval_command(app, context);
  add_sweep_commands(app, context);
  add_export_command(app, context);
  data::add_cli(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {  // a command's own failure status (e.g. `data validate`: 1), not a usage error
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  } catch (const RecipeError& e) {
    for (const Diagnostic& d : e.diagnostics()) std::cerr << d.str() << "\n";
    std::cerr << e.total() << " problem(s); nothing was run.\n";
    return kExitRecipeInvalid;
  } catch (const PluginLoadError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitPluginError;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitFailure;
  }
  return context.exit_code;
}
