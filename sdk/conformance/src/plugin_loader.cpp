// Standalone loading of a tier-1 plugin with dlopen. Libraries are never closed: descriptors and
// function tables point into them for the life of the process.
#include <dlfcn.h>

#include <string>

#include "prefdiff/conformance.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff::conformance {

LoadedPlugin load_plugin(const std::string& path, const pd_host_services* host) {
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    throw PluginError(PD_ERR_IO, "cannot load plugin '" + path + "': " + (why != nullptr ? why : "unknown dlopen error") +
                                     ". HINT: give the path of the .so file; a missing dependency is named above.");
  }
  dlerror();
  void* symbol = dlsym(handle, PREFDIFF_ENTRY_SYMBOL);
  if (symbol == nullptr)
    throw PluginError(PD_ERR_ABI_MISMATCH, "'" + path + "' does not export '" PREFDIFF_ENTRY_SYMBOL
                                           "': is it a prefdiff tier-1 plugin? (built with prefdiff_add_plugin() and "
                                           "PREFDIFF_EXPORT_OBJECTIVE, or exporting the entry point by hand)");
  pd_entry_fn entry = reinterpret_cast<pd_entry_fn>(symbol);

  sdk::ErrorBuffer error;
  const pd_plugin_descriptor* descriptor = nullptr;
  const pd_status status = entry(PD_ABI_MAJOR, PD_ABI_MINOR, host, &descriptor, error.get());
  if (status != PD_OK)
    throw PluginError(status, "plugin '" + path + "' refused to load (" + sdk::status_name(status) +
                                  "): " + (error.message().empty() ? std::string("no message") : error.message()));
  if (descriptor == nullptr)
    throw PluginError(PD_ERR_INTERNAL, "plugin '" + path + "' returned PD_OK but no descriptor");
  if (descriptor->struct_size < offsetof(pd_plugin_descriptor, functions) + sizeof(descriptor->functions))
    throw PluginError(PD_ERR_ABI_MISMATCH, "plugin '" + path + "' has a descriptor of " +
                                               std::to_string(descriptor->struct_size) + " bytes, smaller than ABI " +
                                               std::to_string(PD_ABI_MAJOR) + ".0's " +
                                               std::to_string(sizeof(pd_plugin_descriptor)) + "; is it a legacy plugin?");
  if (descriptor->abi_major != PD_ABI_MAJOR)
    throw PluginError(PD_ERR_ABI_MISMATCH, "plugin '" + path + "' speaks prefdiff ABI major " +
                                               std::to_string(descriptor->abi_major) + ", this kit speaks " +
                                               std::to_string(PD_ABI_MAJOR) + "; rebuild it against this SDK");
  LoadedPlugin loaded;
  loaded.path = path;
  loaded.handle = handle;
  loaded.descriptor = descriptor;
  return loaded;
}

}  // namespace prefdiff::conformance
