// Calling a dataset-source plugin through the C ABI: one RAII instance, its description in C++ types,
// every call named.
#include "prefdiff/instance/data_source.hpp"

#include <stdexcept>

#include "prefdiff/instance/plugin_call.hpp"
#include "create_instance.hpp"

namespace prefdiff::instance {

DataSource::DataSource(const PluginLibrary& plugin, ParamSet params, const pd_host_services* host)
    : plugin_(plugin), params_(std::move(params)), plugin_label_(plugin.label()), id_(plugin.id()) {
  if (plugin.kind() != PD_KIND_DATASET)
    throw PluginError(PD_ERR_INVALID_ARGUMENT, plugin.label() + " is not a dataset source");
  functions_ = static_cast<const pd_dataset_functions*>(plugin.descriptor->functions);
  instance_ = create_instance(*functions_, host, params_, plugin_label_, "dataset source", id_);
  prefdiff::sdk::ErrorBuffer error;
  const pd_dataset_description* description = nullptr;
  pd_status status = call_plugin(plugin_label_, "describe()",
                       [&] { return functions_->describe(instance_, &description, error.get()); });
  auto fail = [&](const std::string& message) {
    call_plugin(plugin_label_, "destroy()", [&] { functions_->destroy(instance_); });
    instance_ = nullptr;
    throw PluginError(PD_ERR_INVALID_ARGUMENT, "dataset source '" + id_ + "': " + message);
  };
  if (status != PD_OK || description == nullptr) fail("describe failed: " + error.message());
  pair_count_ = description->pair_count;
  for (uint32_t i = 0; i < description->tensor_count; ++i) {
    const pd_tensor_info& t = description->tensors[i];
    prefdiff::sdk::TensorSpec spec;
    spec.name = t.name != nullptr ? t.name : "";
    spec.dtype = static_cast<pd_dtype>(t.dtype);
    spec.flags = t.flags;
    if (t.rank > PD_TENSOR_MAX_RANK || prefdiff::sdk::dtype_size(t.dtype) == 0)
      fail("tensor '" + spec.name + "' has an invalid rank or dtype");
    spec.shape.assign(t.shape, t.shape + t.rank);
    tensors_.push_back(spec);
  }
  if (PD_HAS_FIELD(description, pd_dataset_description, attribute_count))
    for (uint32_t i = 0; i < description->attribute_count; ++i) {
      const pd_dataset_attribute& a = description->attributes[i];
      attributes_.emplace_back(a.name != nullptr ? a.name : "", a.value != nullptr ? a.value : "");
    }
}

DataSource::~DataSource() {
  if (instance_ == nullptr) return;
  try {
    call_plugin(plugin_label_, "destroy()", [&] { functions_->destroy(instance_); });
  } catch (const PluginError&) {
  }
}

const prefdiff::sdk::TensorSpec* DataSource::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::string DataSource::attribute(const std::string& name) const {
  for (const auto& a : attributes_)
    if (a.first == name) return a.second;
  return std::string();
}

std::string DataSource::label() const {
  const std::string location = attribute("location");
  return id_ + (location.empty() ? std::string() : " (" + location + ")");
}

void DataSource::read(const uint64_t* indices, size_t count, const uint8_t* empty_prompt, const std::vector<Output>& outputs) {
  std::vector<pd_dataset_buffer> buffers(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    buffers[i].struct_size = sizeof(pd_dataset_buffer);
    buffers[i].name = outputs[i].name.c_str();
    buffers[i].data = outputs[i].data;
    buffers[i].capacity = outputs[i].capacity;
  }
  pd_dataset_request request{};
  request.struct_size = sizeof(pd_dataset_request);
  request.buffer_count = static_cast<uint32_t>(buffers.size());
  request.count = count;
  request.indices = indices;
  request.empty_prompt = empty_prompt;
  request.buffers = buffers.data();
  prefdiff::sdk::ErrorBuffer error;
  const pd_status status =
      call_plugin(plugin_label_, "read()", [&] { return functions_->read(instance_, &request, error.get()); });
  if (status != PD_OK) throw PluginError(status, "dataset " + label() + ": " + error.message(), error.message());
}

}  // namespace prefdiff::instance
