// Loads one tier-1 plugin library with dlopen and validates what it answers. Every refusal names the
// file, what is wrong and what to do (LLVM/ggml-style loader messages).
#include "prefdiff/instance/library.hpp"

#include <dlfcn.h>

#include <cstddef>
#include <cstring>
#include <fstream>

#include "prefdiff/dataset.h"
#include "prefdiff/instance/plugin_call.hpp"
#include "prefdiff/noise.h"
#include "prefdiff/objective.h"
#include "prefdiff/sdk.hpp"

namespace prefdiff::instance {
namespace {

bool looks_like_elf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "\x7f" "ELF", 4) == 0;
}

[[noreturn]] void refuse(const std::string& path, const std::string& what, pd_status status = PD_ERR_ABI_MISMATCH) {
  throw PluginLoadError(status, "plugin " + path + ": " + what);
}

// Minimum size of the per-kind function table (the ABI 1.0 layout).
size_t minimum_functions_size(pd_kind kind) {
  switch (kind) {
    case PD_KIND_OBJECTIVE: return offsetof(pd_objective_functions, evaluate) + sizeof(void*);
    case PD_KIND_NOISE_INJECTOR: return offsetof(pd_noise_functions, decide) + sizeof(void*);
    case PD_KIND_DATASET: return offsetof(pd_dataset_functions, read) + sizeof(void*);
  }
  return sizeof(uint32_t);
}

// The first function the host calls that the table leaves NULL, or nullptr when all are there.
const char* missing_function(const pd_plugin_descriptor& d) {
  switch (static_cast<pd_kind>(d.kind)) {
    case PD_KIND_OBJECTIVE: {
      const auto* f = static_cast<const pd_objective_functions*>(d.functions);
      if (f->create == nullptr) return "create";
      if (f->destroy == nullptr) return "destroy";
      if (f->evaluate == nullptr) return "evaluate";
      if (f->diagnostic_count > 0 && f->diagnostic_names == nullptr) return "diagnostic_names";
      for (uint32_t i = 0; i < f->diagnostic_count; ++i)
        if (f->diagnostic_names[i] == nullptr) return "diagnostic_names[i]";
      if ((d.capabilities & PD_CAP_STATEFUL) != 0) {
        if (!PD_HAS_FIELD(f, pd_objective_functions, load_state)) return "save_state/load_state (table too small)";
        if (f->save_state == nullptr) return "save_state (PD_CAP_STATEFUL is set)";
        if (f->load_state == nullptr) return "load_state (PD_CAP_STATEFUL is set)";
      }
      return nullptr;
    }
    case PD_KIND_NOISE_INJECTOR: {
      const auto* f = static_cast<const pd_noise_functions*>(d.functions);
      if (f->create == nullptr) return "create";
      if (f->destroy == nullptr) return "destroy";
      if (f->decide == nullptr) return "decide";
      return nullptr;
    }
    case PD_KIND_DATASET: {
      const auto* f = static_cast<const pd_dataset_functions*>(d.functions);
      if (f->create == nullptr) return "create";
      if (f->destroy == nullptr) return "destroy";
      if (f->describe == nullptr) return "describe";
      if (f->read == nullptr) return "read";
      return nullptr;
    }
  }
  return nullptr;
}

PluginLibrary validate(const std::string& path, const pd_plugin_descriptor* descriptor) {
  if (descriptor == nullptr) refuse(path, "its entry point returned no descriptor");
  const size_t minimum = offsetof(pd_plugin_descriptor, functions) + sizeof(void*);
  if (descriptor->struct_size < minimum)
    refuse(path, "descriptor too small: struct_size " + std::to_string(descriptor->struct_size) + " bytes, ABI " +
                     std::to_string(PD_ABI_MAJOR) + ".0 needs at least " + std::to_string(minimum) +
                     ". Rebuild the plugin against the current SDK headers");
  if (descriptor->abi_major != PD_ABI_MAJOR)
    refuse(path, "ABI major mismatch: plugin built for ABI " + std::to_string(descriptor->abi_major) + "." +
                     std::to_string(descriptor->abi_minor) + ", this host speaks ABI " + std::to_string(PD_ABI_MAJOR) +
                     "." + std::to_string(PD_ABI_MINOR) + ". Rebuild the plugin against prefdiff SDK ABI " +
                     std::to_string(PD_ABI_MAJOR) + ".x");
  const pd_kind kind = static_cast<pd_kind>(descriptor->kind);
  if (kind != PD_KIND_OBJECTIVE && kind != PD_KIND_NOISE_INJECTOR && kind != PD_KIND_DATASET)
    refuse(path, "unknown plugin kind " + std::to_string(descriptor->kind) +
                     " (known: 1 objective, 2 noise-injector, 3 dataset)");
  if (descriptor->id == nullptr || *descriptor->id == '\0') refuse(path, "descriptor has an empty id");
  for (const char* c = descriptor->id; *c; ++c)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
      refuse(path, std::string("invalid id '") + descriptor->id + "': use lowercase letters, digits, '-' and '_'");
  if (descriptor->functions == nullptr) refuse(path, "descriptor has no function table");
  const uint32_t functions_size = *static_cast<const uint32_t*>(descriptor->functions);
  if (functions_size < minimum_functions_size(kind))
    refuse(path, std::string(kind_name(kind)) + " function table too small: struct_size " +
                     std::to_string(functions_size) + ", needs at least " +
                     std::to_string(minimum_functions_size(kind)) + ". Rebuild against the current SDK");
  if (const char* missing = missing_function(*descriptor))
    refuse(path, std::string(kind_name(kind)) + " '" + descriptor->id + "' leaves '" + missing +
                     "' NULL in its function table; the host would crash calling it. Set every function of the "
                     "table (the SDK's PREFDIFF_EXPORT_* macros do), then rebuild the plugin");

  PluginLibrary plugin;
  plugin.path = path;
  plugin.descriptor = descriptor;
  if (descriptor->param_count > 0 && descriptor->params == nullptr)
    refuse(path, "descriptor declares parameters but has no schema table");
  for (uint32_t i = 0; i < descriptor->param_count; ++i) {
    const pd_param_spec& spec = descriptor->params[i];
    if (spec.struct_size < offsetof(pd_param_spec, choices) || spec.name == nullptr || *spec.name == '\0')
      refuse(path, "parameter " + std::to_string(i) + " of the schema is malformed (struct_size or name)");
    ParamSpec key = spec_from_plugin(spec);
    if (key.name == "id" || key.name == "weight")
      plugin.schema_problems.push_back("plugin " + path + ": parameter '" + key.name +
                                       "' clashes with a key the host reserves in the plugin's table");
    if (auto problem = check_default(key))
      plugin.schema_problems.push_back("plugin " + path + ": parameter '" + key.name + "': " + *problem);
    plugin.params.push_back(std::move(key));
  }
  return plugin;
}

const pd_plugin_descriptor* call_entry(const std::string& path, pd_entry_fn entry, const pd_host_services* host) {
  const pd_plugin_descriptor* descriptor = nullptr;
  sdk::ErrorBuffer error;
  const std::string who = "plugin library " + path;
  pd_status status = PD_OK;
  try {
    status = call_plugin(who, "its entry point", [&] {
      return entry(PD_ABI_MAJOR, PD_ABI_MINOR, host, &descriptor, error.get());
    });
  } catch (const PluginError& e) {
    refuse(path, std::string("its entry point failed: ") + e.what(), PD_ERR_INTERNAL);
  }
  if (status == PD_ERR_ABI_MISMATCH)
    refuse(path, "ABI mismatch: " + error.message() + ". Rebuild the plugin against prefdiff SDK ABI " +
                     std::to_string(PD_ABI_MAJOR) + ".x");
  if (status != PD_OK)
    refuse(path, std::string("its entry point failed (") + sdk::status_name(status) + "): " + error.message(), status);
  return descriptor;
}

}  // namespace

const char* kind_name(pd_kind kind) {
  switch (kind) {
    case PD_KIND_OBJECTIVE: return "objective";
    case PD_KIND_NOISE_INJECTOR: return "noise-injector";
    case PD_KIND_DATASET: return "dataset";
  }
  return "unknown";
}

const ParamSpec* PluginLibrary::param(const std::string& name) const {
  for (const ParamSpec& p : params)
    if (p.name == name) return &p;
  return nullptr;
}

std::string PluginLibrary::label() const {
  return std::string(kind_name(kind())) + " '" + id() + "' (" + path + ")";
}

PluginLibrary load_library(const std::string& given_path, const pd_host_services* host) {
  // A bare file name is a file in the working directory when there is one, else left to dlopen's search.
  std::string path = given_path;
  const bool bare = path.find('/') == std::string::npos;
  if (bare && std::ifstream(path)) path = "./" + path;
  if (!bare || path != given_path) {
    if (!std::ifstream(path))
      refuse(given_path, "cannot be opened (does the file exist and is it readable?)", PD_ERR_IO);
    if (!looks_like_elf(path))
      refuse(given_path, "is not a shared library (no ELF header); remove it from the plugin path or rebuild it with "
                         "prefdiff_add_plugin()", PD_ERR_IO);
  }
  dlerror();  // clear, so the message below is this load's
  void* handle = nullptr;
  {
    // Load-time constructors run inside dlopen: a crash or exit() there names this file.
    const std::string who = "plugin library " + given_path;
    PluginCallScope scope(who, "dlopen (its load-time constructors)");
    handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  }
  if (handle == nullptr) {
    const char* reason = dlerror();
    refuse(given_path, std::string("could not be loaded: ") + (reason != nullptr ? reason : "unknown dlopen error") +
                           ". HINT: check its dependencies with `ldd " + given_path + "`",
           PD_ERR_IO);
  }
  dlerror();
  void* symbol = dlsym(handle, PREFDIFF_ENTRY_SYMBOL);
  if (symbol == nullptr)
    refuse(given_path, std::string("exports no '") + PREFDIFF_ENTRY_SYMBOL +
                           "' entry point: is it a prefdiff plugin? Build it against the SDK with one "
                           "PREFDIFF_EXPORT_* macro (see docs/plugin-guide.md)");
  return validate(given_path, call_entry(given_path, reinterpret_cast<pd_entry_fn>(symbol), host));
}

PluginLibrary load_builtin(pd_entry_fn entry, const pd_host_services* host) {
  return validate("built-in", call_entry("built-in", entry, host));
}

ParamSet resolve_or_throw(const PluginLibrary& plugin, const std::vector<GivenParam>& given) {
  std::vector<ParamProblem> problems;
  ParamSet params = resolve_params(plugin.params, given, {}, problems);
  if (problems.empty()) return params;
  std::string message = plugin.label() + ":";
  for (const ParamProblem& p : problems) message += (problems.size() > 1 ? "\n  " : " ") + p.message;
  throw std::invalid_argument(message);
}

}  // namespace prefdiff::instance
