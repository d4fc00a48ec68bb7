// `prefdiff plugins list|describe|check|eval`.
#include <cstdio>
#include <iostream>

#include "cli.hpp"
#include "prefdiff/instance/did_you_mean.hpp"
#include "prefdiff/host/param_json.hpp"
#include "prefdiff/recipe/recipe.hpp"
#include "prefdiff/objective.h"

namespace prefdiff {
namespace {

void print_problems(const PluginRegistry& registry, CliContext& context) {
  for (const PluginProblem& problem : registry.problems()) {
    std::cerr << "error: " << problem.message << "\n";
    context.exit_code = kExitPluginError;
  }
}

const PluginLibrary& require_plugin(CliContext& context, const std::string& id) {
  PluginRegistry& registry = context.registry();
  if (const PluginLibrary* plugin = registry.find(id)) return *plugin;
  std::vector<std::string> ids;
  for (const PluginLibrary& p : registry.plugins()) ids.push_back(p.id());
  throw PluginLoadError(PD_ERR_INVALID_ARGUMENT, "no plugin with id '" + id + "' on the plugin path" + did_you_mean(id, ids) +
                        ". HINT: `prefdiff plugins list` shows what was found and where it looked");
}

std::string default_text(const instance::ParamSpec& k) {
  if (!k.default_value) return "(unset)";
  return value_to_json(*k.default_value).dump();
}

void list(CliContext& context) {
  PluginRegistry& registry = context.registry();
  std::printf("%-16s %-15s %-9s %-5s %s\n", "ID", "KIND", "VERSION", "ABI", "PATH");
  for (const PluginLibrary& p : registry.plugins())
    std::printf("%-16s %-15s %-9s %u.%-3u %s\n", p.id().c_str(), kind_name(p.kind()), p.descriptor->version,
                p.descriptor->abi_major, p.descriptor->abi_minor, p.path.c_str());
  if (registry.plugins().empty()) {
    std::printf("(no plugins found; searched:");
    for (const std::string& dir : PluginRegistry::search_path(context.plugin_paths)) std::printf(" %s", dir.c_str());
    std::printf(")\n");
  }
  print_problems(registry, context);
}

void describe(CliContext& context, const std::string& id) {
  const PluginLibrary& p = require_plugin(context, id);
  const pd_plugin_descriptor& d = *p.descriptor;
  std::printf("%s (%s) %s\n  %s\n", d.id, kind_name(p.kind()), d.version, d.summary ? d.summary : "");
  std::printf("  citation:        %s\n", d.citation ? d.citation : "");
  std::printf("  formula version: %s\n", d.formula_version ? d.formula_version : "");
  std::printf("  ABI:             %u.%u\n  path:            %s\n", d.abi_major, d.abi_minor, p.path.c_str());
  std::string caps;
  if (d.capabilities & PD_CAP_BATCH_COUPLED) caps += " batch-coupled";
  if (d.capabilities & PD_CAP_STATEFUL) caps += " stateful";
  if (d.capabilities & PD_CAP_REFERENCE_FREE) caps += " reference-free";
  if (d.capabilities & PD_CAP_NEEDS_ERROR_INNER_PRODUCTS) caps += " error-inner-products";
  std::printf("  capabilities:   %s\n", caps.empty() ? " none" : caps.c_str());
  if (p.kind() == PD_KIND_OBJECTIVE) {
    const auto* f = static_cast<const pd_objective_functions*>(d.functions);
    std::string names;
    for (uint32_t i = 0; i < f->diagnostic_count; ++i) names += std::string(" ") + f->diagnostic_names[i];
    std::printf("  diagnostics:    %s\n", names.empty() ? " none" : names.c_str());
  }
  std::printf("  parameters:\n");
  if (p.params.empty()) std::printf("    (none)\n");
  for (const instance::ParamSpec& k : p.params) {
    std::printf("    %-14s %-8s default %-12s %s\n", k.name.c_str(), instance::value_type_name(k.type), default_text(k).c_str(),
                k.describe_range().c_str());
    if (!k.doc.empty()) std::printf("        %s\n", k.doc.c_str());
    if (!k.range_note.empty()) std::printf("        note: %s\n", k.range_note.c_str());
  }
}

}  // namespace

void add_plugins_commands(CLI::App& app, CliContext& context) {
  CLI::App* plugins = app.add_subcommand("plugins", "List, describe, check and evaluate plugins");
  plugins->require_subcommand(1);
  plugins->add_subcommand("list", "Plugins on the plugin path: id, kind, version, ABI, path")->callback([&] { list(context); });

  static std::string describe_id;
  CLI::App* describe_cmd = plugins->add_subcommand("describe", "A plugin's summary, citation and parameter schema");
  describe_cmd->add_option("id", describe_id, "Plugin id")->required();
  describe_cmd->callback([&] { describe(context, describe_id); });

  add_plugin_check_commands(*plugins, context);
}

}  // namespace prefdiff
