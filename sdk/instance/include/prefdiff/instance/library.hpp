// Loading one tier-1 plugin library (dlopen + the one entry point) and checking everything it answers:
// the descriptor, the ABI version, the kind, the id, the parameter schema, and every function pointer the
// host will call. One loader and one wording of load errors for the host and the conformance kit.
// Libraries are never unloaded: descriptors and instances point into them.
#ifndef PREFDIFF_INSTANCE_LIBRARY_HPP
#define PREFDIFF_INSTANCE_LIBRARY_HPP

#include <stdexcept>
#include <string>
#include <vector>

#include "prefdiff/abi.h"
#include "prefdiff/instance/params.hpp"

namespace prefdiff::instance {

// A refused library. `status`: PD_ERR_IO when the file cannot be loaded, PD_ERR_ABI_MISMATCH when it is
// not a usable prefdiff plugin, or the status its entry point returned.
class PluginLoadError : public std::runtime_error {
 public:
  PluginLoadError(pd_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  pd_status status() const noexcept { return status_; }

 private:
  pd_status status_;
};

const char* kind_name(pd_kind kind);  // "objective", "noise-injector", "dataset"

// A plugin library that loaded and answered with a valid descriptor.
struct PluginLibrary {
  std::string path;  // the file, or "built-in" for a component linked into the host
  const pd_plugin_descriptor* descriptor = nullptr;
  std::vector<ParamSpec> params;  // the descriptor's schema, host-side
  // What is wrong with the schema without making calls unsafe (a default outside its own range, a name
  // the host reserves), each as "plugin <path>: parameter 'x': ...". The host refuses such a plugin; the
  // conformance kit reports it as a failed check.
  std::vector<std::string> schema_problems;

  std::string id() const { return descriptor->id; }
  pd_kind kind() const { return static_cast<pd_kind>(descriptor->kind); }
  const ParamSpec* param(const std::string& name) const;
  // "objective 'dpo' (/path/libprefdiff_objective_dpo.so)": how messages name the plugin.
  std::string label() const;
};

// Loads one library and validates its descriptor. Throws PluginLoadError naming the file and the fix
// for: a file that is not a shared library, a missing entry symbol, an entry point that fails or throws,
// an ABI major mismatch, a descriptor or function table too small, a required function that is NULL, a
// malformed schema entry. `host` is handed to the entry point (the plugin may keep it for its whole life).
PluginLibrary load_library(const std::string& path, const pd_host_services* host);

// The same checks for a component linked into the host (its entry point called in-process).
PluginLibrary load_builtin(pd_entry_fn entry, const pd_host_services* host);

// The plugin's parameters from `given`, throwing std::invalid_argument that lists every problem (tools
// and tests; recipes collect the problems with their locations instead).
ParamSet resolve_or_throw(const PluginLibrary& plugin, const std::vector<GivenParam>& given);

}  // namespace prefdiff::instance

#endif  // PREFDIFF_INSTANCE_LIBRARY_HPP
