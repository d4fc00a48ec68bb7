// safetensors writer in the reference layout (see safetensors.hpp). The JSON is written by hand because
// the format wants __metadata__ first and entries in offset order, which a sorted JSON map cannot give.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

#include "prefdiff/model_io/safetensors.hpp"

namespace prefdiff::model_io {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

void write_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  struct Item {
    const std::string* name;
    const at::Tensor* tensor;
    StDtype dtype;
    uint64_t nbytes;
  };
  std::vector<Item> items;
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    if (!seen.insert(name).second)
      throw ModelIoError("cannot write '" + path.string() + "': tensor name '" + name + "' appears twice");
    if (!t.defined()) throw ModelIoError("cannot write '" + path.string() + "': tensor '" + name + "' is undefined");
    items.push_back({&name, &t, scalar_type_to_st_dtype(t.scalar_type(), name),
                     static_cast<uint64_t>(t.numel()) * t.element_size()});
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    uint32_t ba = st_dtype_bits(a.dtype), bb = st_dtype_bits(b.dtype);
    if (ba != bb) return ba > bb;
    if (a.dtype != b.dtype) return a.dtype > b.dtype;
    return *a.name < *b.name;
  });

  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":" + nlohmann::json(metadata).dump();
    first = false;
  }
  uint64_t offset = 0;
  for (const Item& it : items) {
    if (!first) header += ",";
    first = false;
    header += nlohmann::json(*it.name).dump() + ":{\"dtype\":\"" + st_dtype_name(it.dtype) + "\",\"shape\":[";
    for (int64_t i = 0; i < it.tensor->dim(); ++i) {
      if (i) header += ',';
      header += std::to_string(it.tensor->size(i));
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + it.nbytes) + "]}";
    offset += it.nbytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw ModelIoError("cannot create '" + tmp.string() + "': " + std::strerror(errno));
    uint8_t len[8];
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const Item& it : items) {
      if (it.nbytes == 0) continue;
      at::Tensor c = it.tensor->detach().to(at::kCPU).contiguous();
      out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(it.nbytes));
    }
    out.flush();
    if (!out) throw ModelIoError("write to '" + tmp.string() + "' failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw ModelIoError("cannot rename '" + tmp.string() + "' to '" + path.string() + "': " + ec.message());
}

}  // namespace prefdiff::model_io
