// Tier-1 plugin loading (Boost.DLL) and the registry of everything found on the plugin path.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "prefdiff/abi.h"
#include "prefdiff/host/schema.hpp"

namespace prefdiff {

// A plugin library that loaded and answered with a valid descriptor. Libraries are never unloaded.
struct LoadedPlugin {
  std::string path;
  const pd_plugin_descriptor* descriptor = nullptr;
  std::vector<KeySpec> params;  // the descriptor's schema, host-side

  std::string id() const { return descriptor->id; }
  pd_kind kind() const { return static_cast<pd_kind>(descriptor->kind); }
  const KeySpec* param(const std::string& name) const;
};

class PluginLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

const char* kind_name(pd_kind kind);  // "objective", "noise-injector", "dataset"

// Loads one library and validates its descriptor. Throws PluginLoadError naming the file and the fix
// for: a file that is not a shared library, a missing entry symbol, an ABI major mismatch, a descriptor
// or function table too small, an invalid schema.
LoadedPlugin load_plugin_library(const std::string& path);

struct PluginProblem {
  std::string path;
  std::string message;
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
  // A component built into the host (e.g. the synthetic "toy-world" data source): listed, described and
  // validated like a plugin; its `path` says "built-in".
  void add_builtin(LoadedPlugin component);

  const LoadedPlugin* find(const std::string& id) const;
  std::vector<std::string> ids(pd_kind kind) const;
  const std::vector<LoadedPlugin>& plugins() const { return plugins_; }
  const std::vector<PluginProblem>& problems() const { return problems_; }

 private:
  std::vector<LoadedPlugin> plugins_;
  std::vector<PluginProblem> problems_;
  std::vector<std::string> seen_files_;
};

}  // namespace prefdiff
