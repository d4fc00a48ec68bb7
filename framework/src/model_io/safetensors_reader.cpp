// Memory-mapped safetensors reader: the header is validated before any tensor is touched, so every
// view below stays inside the mapping.
#include "prefdiff/model_io/safetensors.hpp"

#include <ATen/ATen.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace prefdiff::model_io {

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) munmap(addr, size);
  }
};

c10::ScalarType st_dtype_to_scalar_type(StDtype dtype, const std::string& tensor_name) {
  switch (dtype) {
    case StDtype::F64: return at::kDouble;
    case StDtype::F32: return at::kFloat;
    case StDtype::F16: return at::kHalf;
    case StDtype::BF16: return at::kBFloat16;
    case StDtype::I64: return at::kLong;
    case StDtype::I32: return at::kInt;
    case StDtype::I16: return at::kShort;
    case StDtype::I8: return at::kChar;
    case StDtype::U8: return at::kByte;
    case StDtype::BOOL: return at::kBool;
    case StDtype::F8_E5M2: return at::kFloat8_e5m2;
    case StDtype::F8_E4M3: return at::kFloat8_e4m3fn;
    default:
      throw ModelIoError("tensor '" + tensor_name + "' has dtype " + st_dtype_name(dtype) +
                         ", which prefdiff cannot load. HINT: convert the file to F32, F16 or BF16.");
  }
}

StDtype scalar_type_to_st_dtype(c10::ScalarType type, const std::string& tensor_name) {
  switch (type) {
    case at::kDouble: return StDtype::F64;
    case at::kFloat: return StDtype::F32;
    case at::kHalf: return StDtype::F16;
    case at::kBFloat16: return StDtype::BF16;
    case at::kLong: return StDtype::I64;
    case at::kInt: return StDtype::I32;
    case at::kShort: return StDtype::I16;
    case at::kChar: return StDtype::I8;
    case at::kByte: return StDtype::U8;
    case at::kBool: return StDtype::BOOL;
    case at::kFloat8_e5m2: return StDtype::F8_E5M2;
    case at::kFloat8_e4m3fn: return StDtype::F8_E4M3;
    default:
      throw ModelIoError("tensor '" + tensor_name + "' has dtype " + std::string(c10::toString(type)) +
                         ", which safetensors cannot store");
  }
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile f;
  f.path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ModelIoError("cannot open safetensors file '" + path.string() + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw ModelIoError("'" + path.string() + "' is not a regular file");
  }
  f.map_ = std::make_shared<Mapping>();
  f.map_->size = static_cast<size_t>(st.st_size);
  if (f.map_->size > 0) {
    f.map_->addr = mmap(nullptr, f.map_->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);
    if (f.map_->addr == MAP_FAILED) {
      f.map_->addr = nullptr;
      throw ModelIoError("cannot map '" + path.string() + "': " + std::strerror(err));
    }
  } else {
    ::close(fd);
  }
  const auto* bytes = static_cast<const uint8_t*>(f.map_->addr);
  f.header_ = parse_safetensors_header(bytes, f.map_->size, f.map_->size, path.string());
  for (size_t i = 0; i < f.header_.tensors.size(); ++i) f.index_[f.header_.tensors[i].name] = i;
  return f;
}

const TensorEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw ModelIoError("tensor '" + name + "' is not in '" + path_.string() + "'");
  return header_.tensors[it->second];
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(header_.tensors.size());
  for (const auto& t : header_.tensors) out.push_back(t.name);
  return out;
}

at::Tensor SafetensorsFile::view(const std::string& name) const {
  const TensorEntry& e = entry(name);
  c10::ScalarType type = st_dtype_to_scalar_type(e.dtype, name);
  auto* ptr = static_cast<uint8_t*>(map_->addr) + header_.data_start + e.begin;
  auto opts = at::TensorOptions().dtype(type).device(at::kCPU);
  size_t elem = c10::elementSize(type);
  if (e.end == e.begin) return at::empty(e.shape, opts);
  if (reinterpret_cast<uintptr_t>(ptr) % elem != 0) {
    // Third-party writers may leave the buffer unaligned; kernels assume natural alignment.
    at::Tensor t = at::empty(e.shape, opts);
    std::memcpy(t.data_ptr(), ptr, e.end - e.begin);
    return t;
  }
  std::shared_ptr<Mapping> keep = map_;
  return at::from_blob(ptr, e.shape, [keep](void*) mutable { keep.reset(); }, opts);
}

at::Tensor SafetensorsFile::load(const std::string& name, c10::ScalarType dtype) const {
  at::Tensor v = view(name);
  if (dtype == c10::ScalarType::Undefined || dtype == v.scalar_type()) return v.clone();
  return v.to(dtype);
}

NamedTensors SafetensorsFile::load_all() const {
  NamedTensors out;
  out.reserve(header_.tensors.size());
  for (const auto& t : header_.tensors) out.emplace_back(t.name, load(t.name));
  return out;
}

}  // namespace prefdiff::model_io
