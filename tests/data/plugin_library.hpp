// Loads a tier-1 plugin library from the build tree the way the host does (dlopen + the one entry point),
// so these tests exercise the shipped .so files, not their sources.
#ifndef PREFDIFF_TESTS_DATA_PLUGIN_LIBRARY_HPP
#define PREFDIFF_TESTS_DATA_PLUGIN_LIBRARY_HPP

#include <dlfcn.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "prefdiff/abi.h"
#include "prefdiff/sdk.hpp"

namespace prefdiff::test {

class PluginLibrary {
 public:
  explicit PluginLibrary(const std::string& file, const pd_host_services* host = nullptr) {
    const std::string path = std::string(PREFDIFF_TEST_PLUGIN_DIR) + "/" + file;
    handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) throw std::runtime_error("dlopen " + path + ": " + dlerror());
    auto entry = reinterpret_cast<pd_entry_fn>(dlsym(handle_, PREFDIFF_ENTRY_SYMBOL));
    if (entry == nullptr) throw std::runtime_error(path + " has no " PREFDIFF_ENTRY_SYMBOL);
    prefdiff::sdk::ErrorBuffer error;
    if (entry(PD_ABI_MAJOR, PD_ABI_MINOR, host, &descriptor_, error.get()) != PD_OK)
      throw std::runtime_error(path + ": entry failed: " + error.message());
  }
  // Never unloaded, like the host: descriptors and instances stay valid.
  const pd_plugin_descriptor* descriptor() const { return descriptor_; }
  template <typename Table>
  const Table* functions() const { return static_cast<const Table*>(descriptor_->functions); }

 private:
  void* handle_ = nullptr;
  const pd_plugin_descriptor* descriptor_ = nullptr;
};

// Parameter values that own their strings.
class ParamList {
 public:
  ParamList& number(const std::string& name, double value, uint32_t type = PD_PARAM_FLOAT) {
    items_.push_back({name, std::string(), value, type});
    return *this;
  }
  ParamList& integer(const std::string& name, long long value) { return number(name, static_cast<double>(value), PD_PARAM_INT); }
  ParamList& string(const std::string& name, const std::string& value) {
    items_.push_back({name, value, 0.0, PD_PARAM_STRING});
    return *this;
  }
  // Fills the schema defaults for absent parameters, as the host does.
  std::vector<pd_param_value> values(const pd_plugin_descriptor* descriptor) {
    for (uint32_t i = 0; i < descriptor->param_count; ++i) {
      const pd_param_spec& spec = descriptor->params[i];
      bool given = false;
      for (const Item& item : items_) given = given || item.name == spec.name;
      if (!given && (spec.bounds & PD_PARAM_OPTIONAL) == 0)
        items_.push_back({spec.name, spec.default_string != nullptr ? spec.default_string : "", spec.default_number, spec.type});
    }
    std::vector<pd_param_value> out;
    for (const Item& item : items_) {
      pd_param_value v{};
      v.struct_size = sizeof v;
      v.type = item.type;
      v.name = item.name.c_str();
      v.number = item.number;
      v.string = item.type == PD_PARAM_STRING ? item.text.c_str() : nullptr;
      out.push_back(v);
    }
    return out;
  }

 private:
  struct Item {
    std::string name, text;
    double number;
    uint32_t type;
  };
  std::vector<Item> items_;
};

}  // namespace prefdiff::test

#endif  // PREFDIFF_TESTS_DATA_PLUGIN_LIBRARY_HPP
