// prefdiff SDK, C++ layer for dataset sources (tier-1 kind PD_KIND_DATASET), over dataset.h.
//
// A source is a class plus one export macro:
//
//   class MySource final : public prefdiff::sdk::DatasetSource {
//    public:
//     static prefdiff::sdk::PluginInfo info();                          // id, version, schema, ...
//     MySource(const prefdiff::sdk::Params& params, const prefdiff::sdk::Host& host);
//     prefdiff::sdk::DatasetInfo describe() override;                   // called once, must not change
//     void read(const prefdiff::sdk::ReadRequest& request) override;    // fill the requested buffers
//   };
//   PREFDIFF_EXPORT_DATASET(MySource)
//
// The export layer checks every request before read() sees it (indices in range, known tensor names,
// buffers large enough), so a source only copies data. Exceptions become status codes, as in sdk.hpp.
#ifndef PREFDIFF_DATASET_SDK_HPP
#define PREFDIFF_DATASET_SDK_HPP

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "prefdiff/abi.h"
#include "prefdiff/dataset.h"
#include "prefdiff/sdk.hpp"

namespace prefdiff::sdk {

// Bytes per element of a pd_dtype, 0 for an unknown value.
inline size_t dtype_size(uint32_t dtype) {
  switch (dtype) {
    case PD_DTYPE_F16: return 2;
    case PD_DTYPE_F32: return 4;
    case PD_DTYPE_F64: return 8;
    case PD_DTYPE_I64: return 8;
    case PD_DTYPE_U64: return 8;
    case PD_DTYPE_U8: return 1;
  }
  return 0;
}

inline const char* dtype_name(uint32_t dtype) {
  switch (dtype) {
    case PD_DTYPE_F16: return "float16";
    case PD_DTYPE_F32: return "float32";
    case PD_DTYPE_F64: return "float64";
    case PD_DTYPE_I64: return "int64";
    case PD_DTYPE_U64: return "uint64";
    case PD_DTYPE_U8: return "uint8";
  }
  return "unknown";
}

// One tensor a source serves; `shape` is per pair (no leading pair axis).
struct TensorSpec {
  std::string name;
  pd_dtype dtype = PD_DTYPE_F32;
  std::vector<int64_t> shape;
  uint32_t flags = 0;  // PD_TENSOR_*

  size_t elements() const {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
  }
  size_t row_bytes() const { return elements() * dtype_size(dtype); }
};

// What describe() reports.
struct DatasetInfo {
  uint64_t pair_count = 0;
  std::vector<TensorSpec> tensors;
  std::vector<std::pair<std::string, std::string>> attributes;
};

// A checked request: indices are below pair_count, every buffer names a described tensor and holds
// count rows of it.
class ReadRequest {
 public:
  size_t count = 0;
  const uint64_t* indices = nullptr;
  const uint8_t* empty_prompt = nullptr;  // may be null: no caption dropout

  // The buffer for tensor `name` (count rows), or nullptr when the host did not ask for it.
  void* buffer(const std::string& name) const {
    for (const auto& b : buffers_)
      if (b.first == name) return b.second;
    return nullptr;
  }
  bool dropped(size_t i) const { return empty_prompt != nullptr && empty_prompt[i] != 0; }
  const std::vector<std::pair<std::string, void*>>& buffers() const { return buffers_; }
  void add_buffer(std::string name, void* data) { buffers_.emplace_back(std::move(name), data); }

 private:
  std::vector<std::pair<std::string, void*>> buffers_;
};

class DatasetSource {
 public:
  virtual ~DatasetSource() = default;
  virtual DatasetInfo describe() = 0;
  virtual void read(const ReadRequest& request) = 0;
};

namespace detail {

// The instance: the source plus the C view of its description.
struct DatasetBox {
  std::unique_ptr<DatasetSource> object;
  DatasetInfo info;
  std::vector<pd_tensor_info> tensors;
  std::vector<pd_dataset_attribute> attributes;
  pd_dataset_description description{};

  void build_description() {
    tensors.clear();
    for (const TensorSpec& t : info.tensors) {
      if (t.shape.size() > PD_TENSOR_MAX_RANK)
        throw Error(PD_ERR_INTERNAL, "tensor '" + t.name + "' has rank " + std::to_string(t.shape.size()) +
                                         ", more than PD_TENSOR_MAX_RANK");
      if (dtype_size(t.dtype) == 0) throw Error(PD_ERR_INTERNAL, "tensor '" + t.name + "' has an unknown dtype");
      pd_tensor_info c{};
      c.struct_size = sizeof(pd_tensor_info);
      c.dtype = t.dtype;
      c.name = t.name.c_str();
      c.rank = static_cast<uint32_t>(t.shape.size());
      c.flags = t.flags;
      for (size_t d = 0; d < t.shape.size(); ++d) c.shape[d] = t.shape[d];
      tensors.push_back(c);
    }
    attributes.clear();
    for (const auto& a : info.attributes) {
      pd_dataset_attribute c{};
      c.struct_size = sizeof(pd_dataset_attribute);
      c.name = a.first.c_str();
      c.value = a.second.c_str();
      attributes.push_back(c);
    }
    description.struct_size = sizeof(pd_dataset_description);
    description.tensor_count = static_cast<uint32_t>(tensors.size());
    description.pair_count = info.pair_count;
    description.tensors = tensors.data();
    description.attributes = attributes.data();
    description.attribute_count = static_cast<uint32_t>(attributes.size());
  }
  void on_created() {
    info = object->describe();
    build_description();
  }
};

template <typename Plugin>
struct DatasetExport : ExportCommon<Plugin, DatasetBox> {
  using Box = DatasetBox;
  using Common = ExportCommon<Plugin, Box>;
  using Common::storage;
  static pd_status describe(pd_instance* instance, const pd_dataset_description** description,
                            pd_error* error) noexcept {
    return guard(error, [&] {
      if (instance == nullptr || description == nullptr)
        throw Error(PD_ERR_INVALID_ARGUMENT, "describe: null instance or output");
      *description = &reinterpret_cast<Box*>(instance)->description;
    });
  }
  static pd_status read(pd_instance* instance, const pd_dataset_request* in, pd_error* error) noexcept {
    return guard(error, [&] {
      if (instance == nullptr || in == nullptr) throw Error(PD_ERR_INVALID_ARGUMENT, "read: null instance or request");
      if (!PD_HAS_FIELD(in, pd_dataset_request, buffers))
        throw Error(PD_ERR_INVALID_ARGUMENT, "read: request struct_size " + std::to_string(in->struct_size) +
                                                 " is smaller than the ABI 1.0 request");
      Box& box = *reinterpret_cast<Box*>(instance);
      ReadRequest request;
      request.count = static_cast<size_t>(in->count);
      request.indices = in->indices;
      request.empty_prompt = in->empty_prompt;
      if (request.count > 0 && in->indices == nullptr) throw Error(PD_ERR_INVALID_ARGUMENT, "read: null indices");
      if (in->buffer_count > 0 && in->buffers == nullptr) throw Error(PD_ERR_INVALID_ARGUMENT, "read: null buffers");
      for (size_t i = 0; i < request.count; ++i)
        if (in->indices[i] >= box.info.pair_count)
          throw Error(PD_ERR_INVALID_ARGUMENT, "read: pair index " + std::to_string(in->indices[i]) +
                                                   " is out of range; the dataset has " +
                                                   std::to_string(box.info.pair_count) + " pairs");
      for (uint32_t b = 0; b < in->buffer_count; ++b) {
        const pd_dataset_buffer& buffer = in->buffers[b];
        const std::string name = buffer.name != nullptr ? buffer.name : "";
        const TensorSpec* spec = nullptr;
        for (const TensorSpec& t : box.info.tensors)
          if (t.name == name) spec = &t;
        if (spec == nullptr) {
          std::string known;
          for (const TensorSpec& t : box.info.tensors) known += (known.empty() ? "" : ", ") + t.name;
          throw Error(PD_ERR_INVALID_ARGUMENT, "read: unknown tensor '" + name + "'; this source serves: " + known);
        }
        if (request.buffer(name) != nullptr)
          throw Error(PD_ERR_INVALID_ARGUMENT, "read: tensor '" + name + "' is requested twice");
        const uint64_t needed = static_cast<uint64_t>(spec->row_bytes()) * in->count;
        if (request.count > 0 && (buffer.data == nullptr || buffer.capacity < needed))
          throw Error(PD_ERR_BUFFER_TOO_SMALL, "read: buffer for '" + name + "' holds " +
                                                   std::to_string(buffer.data == nullptr ? 0 : buffer.capacity) +
                                                   " bytes, " + std::to_string(needed) + " needed");
        if (request.count > 0) request.add_buffer(name, buffer.data);
      }
      if (request.count > 0) box.object->read(request);
    });
  }
  static pd_status entry(uint32_t host_major, uint32_t /*host_minor*/, const pd_host_services* /*services*/,
                         const pd_plugin_descriptor** descriptor, pd_error* error) noexcept {
    return guard(error, [&] {
      require_abi_major(host_major);
      static pd_dataset_functions functions{};
      static bool built = false;
      if (!built) {
        storage().build(Plugin::info(), PD_KIND_DATASET, &functions);
        functions.struct_size = sizeof(pd_dataset_functions);
        functions.create = &Common::create;
        functions.destroy = &Common::destroy;
        functions.describe = &describe;
        functions.read = &read;
        built = true;
      }
      *descriptor = &storage().descriptor;
    });
  }
};

}  // namespace detail
}  // namespace prefdiff::sdk

#define PREFDIFF_EXPORT_DATASET(PluginClass)                                                                \
  extern "C" PD_EXPORT pd_status prefdiff_plugin_entry(uint32_t host_major, uint32_t host_minor,            \
                                                       const pd_host_services* host,                        \
                                                       const pd_plugin_descriptor** descriptor,             \
                                                       pd_error* error) {                                   \
    return ::prefdiff::sdk::detail::DatasetExport<PluginClass>::entry(host_major, host_minor, host,        \
                                                                       descriptor, error);                 \
  }

#endif  // PREFDIFF_DATASET_SDK_HPP
