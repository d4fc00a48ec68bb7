// The registry of every plugin found on the plugin path, plus the components built into the host. Loading
// and checking one library is the plugin-instance layer's (prefdiff/instance/library.hpp).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "prefdiff/instance/library.hpp"

namespace prefdiff {

using instance::kind_name;
using instance::PluginLibrary;
using instance::PluginLoadError;

struct PluginProblem {
  std::string path;
  std::string message;
};

// What the host knows of a component built into it beyond its descriptor (plugins from files have none).
struct BuiltinTraits {
  // The source serves the model its pairs were made for (attribute "reference_model"): the backbone's
  // weights come from it, and [backbone] pretrained / config are refused.
  bool supplies_model = false;
  // Checks the source's paths before anything runs (cheap, no reads); one message per problem. Without it
  // every non-empty path parameter must exist.
  std::function<std::vector<std::string>(const instance::ParamSet&)> check_paths;
};

class PluginRegistry {
 public:
  // Search order: `extra` (recipe [plugins] paths, then the command line), PREFDIFF_PLUGIN_PATH
  // (colon-separated), the plugin folder next to the executable (<prefix>/lib/prefdiff/plugins, which is
  // also the build tree's), and the build tree's plugin folder compiled into the host.
  static std::vector<std::string> search_path(const std::vector<std::string>& extra = {});

  // Loads every *.so in each folder (or the file itself). Problems are collected, not thrown.
  void scan(const std::vector<std::string>& folders_or_files);
  // Adds one library; a second library with the same id is a problem naming both paths.
  void load(const std::string& path);
  // A component built into the host (e.g. the synthetic world's pair source), called through its entry
  // point in-process: listed, described, validated and instantiated like a plugin; its `path` says
  // "built-in".
  void add_builtin(pd_entry_fn entry, BuiltinTraits traits = {});

  const PluginLibrary* find(const std::string& id) const;
  // The traits of a built-in component, or nullptr for plugins loaded from files.
  const BuiltinTraits* builtin_traits(const std::string& id) const;
  std::vector<std::string> ids(pd_kind kind) const;
  const std::vector<PluginLibrary>& plugins() const { return plugins_; }
  const std::vector<PluginProblem>& problems() const { return problems_; }

 private:
  bool add(PluginLibrary plugin, const std::string& where);
  std::vector<PluginLibrary> plugins_;
  std::vector<std::pair<std::string, BuiltinTraits>> builtins_;
  std::vector<PluginProblem> problems_;
  std::vector<std::string> seen_files_;
};

}  // namespace prefdiff
