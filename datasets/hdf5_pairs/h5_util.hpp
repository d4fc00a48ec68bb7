// Small HDF5 helpers shared by the shard writer, reader and validator (private to hdf5_pairs).
#ifndef PREFDIFF_DATA_H5_UTIL_HPP
#define PREFDIFF_DATA_H5_UTIL_HPP

#include <H5Cpp.h>

#include <cstdint>
#include <string>
#include <vector>

#include "prefdiff/dataset.h"

namespace prefdiff::data::h5 {

// Turns off HDF5's automatic error printing for the calling thread (the setting is per thread in a
// thread-safe HDF5); our errors carry the detail instead.
void quiet();

// The innermost messages of the calling thread's HDF5 error stack, e.g. "truncated file: eof = ...".
std::string error_detail();

// The memory type for a pd_dtype (binary16 as HDF5 describes it, the same layout h5py writes).
H5::DataType memory_type(pd_dtype dtype);

// What a stored type is, as a pd_dtype; 0 when it is none of them. `name` gets a readable name.
uint32_t classify(const H5::DataType& type, std::string* name);

// Shape of a dataset.
std::vector<int64_t> shape(const H5::DataSet& dataset);

bool exists(const H5::H5Location& where, const std::string& path);

// Attributes: writing.
void write_string_attribute(H5::H5Object& object, const std::string& name, const std::string& value);
void write_int_attribute(H5::H5Object& object, const std::string& name, int64_t value);
void write_double_attribute(H5::H5Object& object, const std::string& name, double value);
void write_ints_attribute(H5::H5Object& object, const std::string& name, const std::vector<int64_t>& values);

// Attributes: reading. Throw H5::Exception or std::runtime_error on a wrong class; callers add the file name.
std::string read_string_attribute(const H5::H5Object& object, const std::string& name);
int64_t read_int_attribute(const H5::H5Object& object, const std::string& name);
double read_double_attribute(const H5::H5Object& object, const std::string& name);
std::vector<int64_t> read_ints_attribute(const H5::H5Object& object, const std::string& name);

}  // namespace prefdiff::data::h5

#endif  // PREFDIFF_DATA_H5_UTIL_HPP
