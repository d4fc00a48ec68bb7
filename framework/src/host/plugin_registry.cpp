#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include <boost/dll/runtime_symbol_info.hpp>

#include "prefdiff/host/host_services.hpp"
#include "prefdiff/host/plugin_registry.hpp"

namespace prefdiff {
namespace fs = std::filesystem;

std::vector<std::string> PluginRegistry::search_path(const std::vector<std::string>& extra) {
  std::vector<std::string> path(extra);
  if (const char* env = std::getenv("PREFDIFF_PLUGIN_PATH")) {
    std::string current;
    for (const char* c = env;; ++c) {
      if (*c == ':' || *c == '\0') {
        if (!current.empty()) path.push_back(current);
        current.clear();
        if (*c == '\0') break;
      } else {
        current += *c;
      }
    }
  }
  boost::dll::fs::error_code ec;
  const auto executable = boost::dll::program_location(ec);
  if (!ec) path.push_back((executable.parent_path().parent_path() / PREFDIFF_PLUGIN_INSTALL_SUBDIR).string());
  path.push_back(PREFDIFF_PLUGIN_BUILD_DIR);
  // The executable's folder and the build tree coincide when running from the build tree.
  std::vector<std::string> unique;
  for (const std::string& p : path) {
    std::error_code ec;
    const std::string key = fs::weakly_canonical(p, ec).string();
    bool seen = false;
    for (const std::string& u : unique) seen = seen || fs::weakly_canonical(u, ec).string() == key;
    if (!seen) unique.push_back(p);
  }
  return unique;
}

void PluginRegistry::scan(const std::vector<std::string>& folders_or_files) {
  for (const std::string& entry : folders_or_files) {
    std::error_code ec;
    if (fs::is_regular_file(entry, ec)) {
      load(entry);
      continue;
    }
    if (!fs::is_directory(entry, ec)) continue;  // absent default folders are normal
    std::vector<std::string> files;
    for (const auto& item : fs::directory_iterator(entry, ec))
      if (item.is_regular_file() && item.path().extension() == ".so") files.push_back(item.path().string());
    std::sort(files.begin(), files.end());  // deterministic order, hence deterministic duplicate reports
    for (const std::string& file : files) load(file);
  }
}

void PluginRegistry::load(const std::string& path) {
  std::error_code ec;
  const std::string canonical = fs::weakly_canonical(path, ec).string();
  for (const std::string& seen : seen_files_)
    if (seen == canonical) return;  // the same file reached through two search folders
  seen_files_.push_back(canonical);
  try {
    add(instance::load_library(canonical, host_services()), canonical);
  } catch (const PluginLoadError& e) {
    problems_.push_back({canonical, e.what()});
  }
}

bool PluginRegistry::add(PluginLibrary plugin, const std::string& where) {
  if (!plugin.schema_problems.empty()) {
    for (const std::string& problem : plugin.schema_problems) problems_.push_back({where, problem});
    return false;
  }
  if (const PluginLibrary* other = find(plugin.id())) {
    problems_.push_back({where, plugin.path == "built-in"
                                    ? "duplicate plugin id '" + plugin.id() + "': the built-in component clashes with " +
                                          other->path + "; rename or remove that plugin"
                                    : "duplicate plugin id '" + plugin.id() + "': already provided by " + other->path +
                                          "; remove one of the two from the plugin path"});
    return false;
  }
  plugins_.push_back(std::move(plugin));
  return true;
}

void PluginRegistry::add_builtin(pd_entry_fn entry, BuiltinTraits traits) {
  try {
    PluginLibrary component = instance::load_builtin(entry, host_services());
    const std::string id = component.id();
    if (add(std::move(component), "built-in")) builtins_.emplace_back(id, std::move(traits));
  } catch (const PluginLoadError& e) {
    problems_.push_back({"built-in", e.what()});
  }
}

const BuiltinTraits* PluginRegistry::builtin_traits(const std::string& id) const {
  for (const auto& [name, traits] : builtins_)
    if (name == id) return &traits;
  return nullptr;
}

const PluginLibrary* PluginRegistry::find(const std::string& id) const {
  for (const PluginLibrary& p : plugins_)
    if (p.id() == id) return &p;
  return nullptr;
}

std::vector<std::string> PluginRegistry::ids(pd_kind kind) const {
  std::vector<std::string> out;
  for (const PluginLibrary& p : plugins_)
    if (p.kind() == kind) out.push_back(p.id());
  return out;
}

}  // namespace prefdiff
