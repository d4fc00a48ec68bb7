#include "h5_util.hpp"

#include <stdexcept>

namespace prefdiff::data::h5 {

void quiet() {
  thread_local bool done = false;
  if (!done) {
    H5::Exception::dontPrint();
    done = true;
  }
}

namespace {
herr_t collect(unsigned n, const H5E_error2_t* entry, void* data) {
  auto* messages = static_cast<std::vector<std::string>*>(data);
  if (n < 3 && entry->desc != nullptr && entry->desc[0] != '\0') messages->push_back(entry->desc);
  return 0;
}
}  // namespace

std::string error_detail() {
  std::vector<std::string> messages;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, &collect, &messages);
  std::string out;
  for (const std::string& m : messages) out += (out.empty() ? "" : "; ") + m;
  return out;
}

H5::DataType memory_type(pd_dtype dtype) {
  switch (dtype) {
    case PD_DTYPE_F16: {
      // IEEE binary16 little-endian: sign bit 15, exponent bits 10-14 (bias 15), mantissa bits 0-9.
      H5::FloatType type(H5::PredType::IEEE_F32LE);
      type.setFields(15, 10, 5, 0, 10);
      type.setSize(2);
      type.setEbias(15);
      return type;
    }
    case PD_DTYPE_F32: return H5::PredType::NATIVE_FLOAT;
    case PD_DTYPE_F64: return H5::PredType::NATIVE_DOUBLE;
    case PD_DTYPE_I64: return H5::PredType::NATIVE_INT64;
    case PD_DTYPE_U64: return H5::PredType::NATIVE_UINT64;
    case PD_DTYPE_U8: return H5::PredType::NATIVE_UINT8;
  }
  throw std::logic_error("memory_type: unknown pd_dtype");
}

uint32_t classify(const H5::DataType& type, std::string* name) {
  const H5T_class_t cls = type.getClass();
  const size_t size = type.getSize();
  std::string n;
  uint32_t result = 0;
  if (cls == H5T_FLOAT) {
    n = "float" + std::to_string(size * 8);
    result = size == 2 ? PD_DTYPE_F16 : size == 4 ? PD_DTYPE_F32 : size == 8 ? PD_DTYPE_F64 : 0;
  } else if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type.getId()) == H5T_SGN_2;
    n = std::string(is_signed ? "int" : "uint") + std::to_string(size * 8);
    if (size == 8) result = is_signed ? PD_DTYPE_I64 : PD_DTYPE_U64;
    if (size == 1 && !is_signed) result = PD_DTYPE_U8;
  } else if (cls == H5T_STRING) {
    n = "string";
  } else if (cls == H5T_COMPOUND) {
    n = "compound";
  } else {
    n = "HDF5 type class " + std::to_string(static_cast<int>(cls));
  }
  if (name != nullptr) *name = n;
  return result;
}

std::vector<int64_t> shape(const H5::DataSet& dataset) {
  H5::DataSpace space = dataset.getSpace();
  const int rank = space.getSimpleExtentNdims();
  std::vector<hsize_t> dims(static_cast<size_t>(rank > 0 ? rank : 0));
  if (rank > 0) space.getSimpleExtentDims(dims.data());
  return std::vector<int64_t>(dims.begin(), dims.end());
}

bool exists(const H5::H5Location& where, const std::string& path) {
  // H5Lexists needs every intermediate group to exist; check component by component.
  std::string partial;
  size_t start = path[0] == '/' ? 1 : 0;
  while (start <= path.size()) {
    const size_t slash = path.find('/', start);
    const std::string part = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    partial += "/" + part;
    if (H5Lexists(where.getId(), partial.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return true;
}

void write_string_attribute(H5::H5Object& object, const std::string& name, const std::string& value) {
  H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
  type.setCset(H5T_CSET_UTF8);
  H5::Attribute attribute = object.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
  attribute.write(type, value);
}

void write_int_attribute(H5::H5Object& object, const std::string& name, int64_t value) {
  H5::Attribute attribute = object.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR));
  attribute.write(H5::PredType::NATIVE_INT64, &value);
}

void write_double_attribute(H5::H5Object& object, const std::string& name, double value) {
  H5::Attribute attribute = object.createAttribute(name, H5::PredType::IEEE_F64LE, H5::DataSpace(H5S_SCALAR));
  attribute.write(H5::PredType::NATIVE_DOUBLE, &value);
}

void write_ints_attribute(H5::H5Object& object, const std::string& name, const std::vector<int64_t>& values) {
  const hsize_t n = values.size();
  H5::Attribute attribute = object.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace(1, &n));
  attribute.write(H5::PredType::NATIVE_INT64, values.data());
}

namespace {
H5::Attribute open_checked(const H5::H5Object& object, const std::string& name, H5T_class_t expected,
                           const char* expected_name) {
  if (!object.attrExists(name)) throw std::runtime_error("attribute '" + name + "' is missing");
  H5::Attribute attribute = object.openAttribute(name);
  if (attribute.getTypeClass() != expected) {
    std::string found;
    classify(attribute.getDataType(), &found);
    throw std::runtime_error("attribute '" + name + "' is " + found + ", expected " + expected_name);
  }
  return attribute;
}
}  // namespace

std::string read_string_attribute(const H5::H5Object& object, const std::string& name) {
  H5::Attribute attribute = open_checked(object, name, H5T_STRING, "a string");
  std::string value;
  attribute.read(attribute.getStrType(), value);
  return value;
}

int64_t read_int_attribute(const H5::H5Object& object, const std::string& name) {
  H5::Attribute attribute = open_checked(object, name, H5T_INTEGER, "an integer");
  if (attribute.getSpace().getSimpleExtentNpoints() != 1)
    throw std::runtime_error("attribute '" + name + "' must be a single integer");
  int64_t value = 0;
  attribute.read(H5::PredType::NATIVE_INT64, &value);
  return value;
}

double read_double_attribute(const H5::H5Object& object, const std::string& name) {
  H5::Attribute attribute = open_checked(object, name, H5T_FLOAT, "a float");
  if (attribute.getSpace().getSimpleExtentNpoints() != 1)
    throw std::runtime_error("attribute '" + name + "' must be a single float");
  double value = 0;
  attribute.read(H5::PredType::NATIVE_DOUBLE, &value);
  return value;
}

std::vector<int64_t> read_ints_attribute(const H5::H5Object& object, const std::string& name) {
  H5::Attribute attribute = open_checked(object, name, H5T_INTEGER, "integers");
  const hssize_t n = attribute.getSpace().getSimpleExtentNpoints();
  std::vector<int64_t> values(static_cast<size_t>(n));
  if (n > 0) attribute.read(H5::PredType::NATIVE_INT64, values.data());
  return values;
}

}  // namespace prefdiff::data::h5
