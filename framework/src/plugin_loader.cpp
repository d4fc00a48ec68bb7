// Loads one tier-1 plugin library with Boost.DLL and validates what it answers. Every refusal names
// the file, what is wrong and what to do (LLVM/ggml-style loader messages).
#include <dlfcn.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>

#include <boost/dll/shared_library.hpp>

#include "prefdiff/host/host_services.hpp"
#include "prefdiff/host/plugin_registry.hpp"
#include "prefdiff/dataset.h"
#include "prefdiff/noise.h"
#include "prefdiff/objective.h"
#include "prefdiff/sdk.hpp"

namespace prefdiff {
namespace {

// Loaded libraries live until the process exits: descriptors and instances point into them.
std::vector<std::unique_ptr<boost::dll::shared_library>>& libraries() {
  static std::vector<std::unique_ptr<boost::dll::shared_library>> all;
  return all;
}
std::mutex& libraries_mutex() {
  static std::mutex m;
  return m;
}

bool looks_like_elf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "\x7f" "ELF", 4) == 0;
}

// Minimum size of the per-kind function table (the ABI 1.0 layout).
size_t minimum_functions_size(pd_kind kind) {
  switch (kind) {
    case PD_KIND_OBJECTIVE: return offsetof(pd_objective_functions, evaluate) + sizeof(void*);
    case PD_KIND_NOISE_INJECTOR: return offsetof(pd_noise_functions, decide) + sizeof(void*);
    case PD_KIND_DATASET: return offsetof(pd_dataset_functions, read) + sizeof(void*);
    default: return sizeof(uint32_t);
  }
}

[[noreturn]] void refuse(const std::string& path, const std::string& what) {
  throw PluginLoadError("plugin " + path + ": " + what);
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

const KeySpec* LoadedPlugin::param(const std::string& name) const {
  for (const KeySpec& p : params)
    if (p.name == name) return &p;
  return nullptr;
}

LoadedPlugin load_plugin_library(const std::string& path) {
  std::ifstream probe(path);
  if (!probe) refuse(path, "cannot be opened (does the file exist and is it readable?)");
  if (!looks_like_elf(path))
    refuse(path, "is not a shared library (no ELF header); remove it from the plugin path or rebuild it with "
                 "prefdiff_add_plugin()");

  auto library = std::make_unique<boost::dll::shared_library>();
  boost::dll::fs::error_code ec;
  dlerror();  // clear, so the message below is this load's
  library->load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
  if (ec || !library->is_loaded()) {
    const char* reason = dlerror();
    refuse(path, std::string("could not be loaded: ") + (reason != nullptr ? reason : ec.message()) +
                     ". HINT: check its dependencies with `ldd " + path + "`");
  }
  if (!library->has(PREFDIFF_ENTRY_SYMBOL))
    refuse(path, std::string("exports no '") + PREFDIFF_ENTRY_SYMBOL +
                     "' entry point: is it a prefdiff plugin? Build it against the SDK with one "
                     "PREFDIFF_EXPORT_* macro (see docs/plugin-guide.md)");
  auto entry = library->get<std::remove_pointer_t<pd_entry_fn>>(PREFDIFF_ENTRY_SYMBOL);

  const pd_plugin_descriptor* descriptor = nullptr;
  sdk::ErrorBuffer error;
  const pd_status status = entry(PD_ABI_MAJOR, PD_ABI_MINOR, host_services(), &descriptor, error.get());
  if (status == PD_ERR_ABI_MISMATCH)
    refuse(path, "ABI mismatch: " + error.message() + ". Rebuild the plugin against prefdiff SDK ABI " +
                     std::to_string(PD_ABI_MAJOR) + ".x");
  if (status != PD_OK)
    refuse(path, std::string("its entry point failed (") + sdk::status_name(status) + "): " + error.message());
  if (descriptor == nullptr) refuse(path, "its entry point returned no descriptor");

  const size_t minimum = offsetof(pd_plugin_descriptor, functions) + sizeof(void*);
  if (descriptor->struct_size < minimum)
    refuse(path, "descriptor too small: struct_size " + std::to_string(descriptor->struct_size) +
                     " bytes, ABI " + std::to_string(PD_ABI_MAJOR) + ".0 needs at least " + std::to_string(minimum) +
                     ". Rebuild the plugin against the current SDK headers");
  if (descriptor->abi_major != PD_ABI_MAJOR)
    refuse(path, "ABI major mismatch: plugin built for ABI " + std::to_string(descriptor->abi_major) + "." +
                     std::to_string(descriptor->abi_minor) + ", this host speaks ABI " + std::to_string(PD_ABI_MAJOR) +
                     "." + std::to_string(PD_ABI_MINOR) + ". Rebuild the plugin against prefdiff SDK ABI " +
                     std::to_string(PD_ABI_MAJOR) + ".x");
  const pd_kind kind = static_cast<pd_kind>(descriptor->kind);
  if (kind != PD_KIND_OBJECTIVE && kind != PD_KIND_NOISE_INJECTOR && kind != PD_KIND_DATASET)
    refuse(path, "unknown plugin kind " + std::to_string(descriptor->kind) + " (known: 1 objective, 2 noise-injector, 3 dataset)");
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

  LoadedPlugin plugin;
  plugin.path = path;
  plugin.descriptor = descriptor;
  if (descriptor->param_count > 0 && descriptor->params == nullptr)
    refuse(path, "descriptor declares parameters but has no schema table");
  for (uint32_t i = 0; i < descriptor->param_count; ++i) {
    const pd_param_spec& spec = descriptor->params[i];
    if (spec.struct_size < offsetof(pd_param_spec, choices) || spec.name == nullptr || *spec.name == '\0')
      refuse(path, "parameter " + std::to_string(i) + " of the schema is malformed (struct_size or name)");
    KeySpec key = key_spec_from_plugin(spec);
    if (key.name == "id" || key.name == "weight")
      refuse(path, "parameter '" + key.name + "' clashes with a key the host reserves in the plugin's table");
    if (auto problem = check_default(key)) refuse(path, "parameter '" + key.name + "': " + *problem);
    plugin.params.push_back(std::move(key));
  }

  std::lock_guard<std::mutex> lock(libraries_mutex());
  libraries().push_back(std::move(library));
  return plugin;
}

}  // namespace prefdiff
