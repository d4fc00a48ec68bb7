#include "prefdiff/data/source_handle.hpp"

#include <stdexcept>

#include "prefdiff/data/hdf5_pairs_source.hpp"

namespace prefdiff::data {

SourceHandle::SourceHandle(const pd_plugin_descriptor* descriptor, const pd_host_services* host,
                           const std::vector<pd_param_value>& params) {
  if (descriptor == nullptr) throw std::invalid_argument("dataset source: null descriptor");
  id_ = descriptor->id != nullptr ? descriptor->id : "?";
  if (descriptor->kind != PD_KIND_DATASET)
    throw std::invalid_argument("plugin '" + id_ + "' is not a dataset source (kind " + std::to_string(descriptor->kind) + ")");
  functions_ = static_cast<const pd_dataset_functions*>(descriptor->functions);
  if (functions_ == nullptr || !PD_HAS_FIELD(functions_, pd_dataset_functions, read) || functions_->create == nullptr ||
      functions_->describe == nullptr || functions_->read == nullptr || functions_->destroy == nullptr)
    throw std::invalid_argument("dataset source '" + id_ + "' has an incomplete function table");
  prefdiff::sdk::ErrorBuffer error;
  pd_status status = functions_->create(host, params.data(), static_cast<uint32_t>(params.size()), &instance_, error.get());
  if (status != PD_OK)
    throw std::runtime_error("dataset source '" + id_ + "': " + error.message() + " [" + prefdiff::sdk::status_name(status) + "]");
  const pd_dataset_description* description = nullptr;
  status = functions_->describe(instance_, &description, error.get());
  if (status != PD_OK || description == nullptr) {
    functions_->destroy(instance_);
    throw std::runtime_error("dataset source '" + id_ + "': describe failed: " + error.message());
  }
  pair_count_ = description->pair_count;
  for (uint32_t i = 0; i < description->tensor_count; ++i) {
    const pd_tensor_info& t = description->tensors[i];
    prefdiff::sdk::TensorSpec spec;
    spec.name = t.name != nullptr ? t.name : "";
    spec.dtype = static_cast<pd_dtype>(t.dtype);
    spec.flags = t.flags;
    if (t.rank > PD_TENSOR_MAX_RANK || prefdiff::sdk::dtype_size(t.dtype) == 0) {
      functions_->destroy(instance_);
      throw std::runtime_error("dataset source '" + id_ + "': tensor '" + spec.name + "' has an invalid rank or dtype");
    }
    spec.shape.assign(t.shape, t.shape + t.rank);
    tensors_.push_back(spec);
  }
  if (PD_HAS_FIELD(description, pd_dataset_description, attribute_count))
    for (uint32_t i = 0; i < description->attribute_count; ++i) {
      const pd_dataset_attribute& a = description->attributes[i];
      attributes_.emplace_back(a.name != nullptr ? a.name : "", a.value != nullptr ? a.value : "");
    }
}

SourceHandle::~SourceHandle() {
  if (instance_ != nullptr) functions_->destroy(instance_);
}

const prefdiff::sdk::TensorSpec* SourceHandle::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::string SourceHandle::attribute(const std::string& name) const {
  for (const auto& a : attributes_)
    if (a.first == name) return a.second;
  return std::string();
}

std::string SourceHandle::label() const {
  const std::string location = attribute("location");
  return id_ + (location.empty() ? std::string() : " (" + location + ")");
}

void SourceHandle::read(const uint64_t* indices, size_t count, const uint8_t* empty_prompt, const std::vector<Output>& outputs) {
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
  const pd_status status = functions_->read(instance_, &request, error.get());
  if (status != PD_OK) throw std::runtime_error("dataset " + label() + ": " + error.message());
}

std::unique_ptr<SourceHandle> open_hdf5_pairs(const std::string& shards, const pd_host_services* host) {
  const pd_plugin_descriptor* descriptor = nullptr;
  prefdiff::sdk::ErrorBuffer error;
  if (hdf5_pairs_entry(PD_ABI_MAJOR, PD_ABI_MINOR, host, &descriptor, error.get()) != PD_OK)
    throw std::runtime_error("hdf5-pairs: " + error.message());
  pd_param_value value{};
  value.struct_size = sizeof(pd_param_value);
  value.type = PD_PARAM_STRING;
  value.name = "shards";
  value.string = shards.c_str();
  return std::make_unique<SourceHandle>(descriptor, host, std::vector<pd_param_value>{value});
}

}  // namespace prefdiff::data
