#include "prefdiff/data/shard_file.hpp"

#include <H5Cpp.h>

#include <cmath>
#include <unordered_map>

#include "h5_util.hpp"
#include "prefdiff/dataset_sdk.hpp"

namespace prefdiff::data {

namespace {

// A dataset read by rows, with its spaces cached so a row read is one selection and one H5Dread.
struct RowDataset {
  H5::DataSet dataset;
  H5::DataType memory;
  H5::DataSpace file_space;
  std::vector<hsize_t> dims;  // full shape
  size_t row_bytes = 0;
  bool present = false;

  void bind(H5::DataSet d, pd_dtype dtype) {
    dataset = std::move(d);
    memory = h5::memory_type(dtype);
    file_space = dataset.getSpace();
    const int rank = file_space.getSimpleExtentNdims();
    dims.assign(static_cast<size_t>(rank), 0);
    file_space.getSimpleExtentDims(dims.data());
    row_bytes = prefdiff::sdk::dtype_size(dtype);
    for (size_t i = 1; i < dims.size(); ++i) row_bytes *= dims[i];
    present = true;
  }
  void read(uint64_t first, uint64_t rows, void* out) {
    std::vector<hsize_t> start(dims.size(), 0), count(dims);
    start[0] = first;
    count[0] = rows;
    file_space.selectHyperslab(H5S_SELECT_SET, count.data(), start.data());
    H5::DataSpace memory_space(static_cast<int>(count.size()), count.data());
    dataset.read(out, memory, memory_space, file_space);
  }
};

}  // namespace

struct ShardFile::Impl {
  ShardInfo info;
  H5::H5File file;
  RowDataset tensors[7];
  std::vector<uint64_t> pair_ids;
  std::vector<int64_t> prompts;
  std::vector<std::vector<double>> meta;
  std::vector<std::string>* problems = nullptr;

  void problem(const std::string& object, const std::string& message) {
    problems->push_back(shard_problem(info.path, object, message));
  }

  // Opens `name` if present and checks dtype (one of `allowed`) and rank; returns the dtype or 0.
  uint32_t check_dataset(const std::string& name, std::initializer_list<pd_dtype> allowed, size_t rank,
                         bool required, std::vector<int64_t>* shape_out, H5::DataSet* out) {
    if (!h5::exists(file, name)) {
      if (required) problem(name, "missing. HINT: the shard is incomplete or not a prefdiff pair shard; re-run the import");
      return 0;
    }
    H5::DataSet dataset = file.openDataSet(name);
    std::string found;
    const uint32_t dtype = h5::classify(dataset.getDataType(), &found);
    bool ok = false;
    std::string expected;
    for (pd_dtype a : allowed) {
      ok = ok || dtype == static_cast<uint32_t>(a);
      expected += (expected.empty() ? "" : " or ") + std::string(prefdiff::sdk::dtype_name(a));
    }
    if (!ok) {
      problem(name, "dtype is " + found + ", the format requires " + expected + " (format version " +
                        std::to_string(kFormatVersion) + ", see docs/data-format.md)");
      return 0;
    }
    const std::vector<int64_t> shape = h5::shape(dataset);
    if (shape.size() != rank) {
      problem(name, "rank is " + std::to_string(shape.size()) + " (shape " + shape_string(shape) + "), the format requires rank " +
                        std::to_string(rank));
      return 0;
    }
    *shape_out = shape;
    *out = dataset;
    return dtype;
  }

  void expect_shape(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& expected,
                    const std::string& why) {
    if (shape != expected)
      problem(name, "shape is " + shape_string(shape) + ", expected " + shape_string(expected) + " (" + why + ")");
  }

  void check_attributes() {
    H5::Group root = file.openGroup("/");
    ShardAttributes& a = info.attributes;
    auto text = [&](const char* name, std::string& out) {
      try {
        out = h5::read_string_attribute(root, name);
      } catch (const std::exception& e) {
        problem("attribute", e.what());
      }
    };
    std::string format;
    text("format", format);
    if (!format.empty() && format != kFormatName)
      problem("attribute 'format'", "is '" + format + "', expected '" + kFormatName + "': not a prefdiff pair shard");
    try {
      a.format_version = h5::read_int_attribute(root, "format_version");
      if (a.format_version != kFormatVersion)
        problem("attribute 'format_version'", "is " + std::to_string(a.format_version) + ", this reader supports " +
                                                  std::to_string(kFormatVersion) +
                                                  ". HINT: use the prefdiff version that wrote it, or re-import");
    } catch (const std::exception& e) {
      problem("attribute", e.what());
    }
    text("backbone_family", a.backbone_family);
    try {
      a.latent_shape = h5::read_ints_attribute(root, "latent_shape");
      bool positive = a.latent_shape.size() == 3;
      for (int64_t d : a.latent_shape) positive = positive && d > 0;
      if (!positive) problem("attribute 'latent_shape'", "is " + shape_string(a.latent_shape) + ", expected three positive sizes C, h, w");
    } catch (const std::exception& e) {
      problem("attribute", e.what());
    }
    try {
      a.latent_scale_factor = h5::read_double_attribute(root, "latent_scale_factor");
      if (!(a.latent_scale_factor > 0.0) || !std::isfinite(a.latent_scale_factor))
        problem("attribute 'latent_scale_factor'", "is " + std::to_string(a.latent_scale_factor) + ", expected a positive number");
    } catch (const std::exception& e) {
      problem("attribute", e.what());
    }
    text("vae_id", a.vae_id);
    text("text_encoder_id", a.text_encoder_id);
    text("text_encoder_2_id", a.text_encoder_2_id);
    text("encoder", a.encoder);
    text("source_dataset", a.source_dataset);
    text("source_split", a.source_split);
    text("writer", a.writer);
  }

  void check_datasets() {
    const size_t before = problems->size();
    ShardLayout& layout = info.layout;
    const std::vector<int64_t>& latent_shape = info.attributes.latent_shape;
    H5::DataSet d;
    std::vector<int64_t> shape;
    int64_t n = -1;

    // Latents fix N and the latent dtype; everything per pair is checked against them.
    uint32_t dtype_w = check_dataset(path::kLatentW, {PD_DTYPE_F16, PD_DTYPE_F32}, 4, true, &shape, &d);
    if (dtype_w != 0) {
      n = shape[0];
      layout.latent_dtype = static_cast<pd_dtype>(dtype_w);
      if (latent_shape.size() == 3)
        expect_shape(path::kLatentW, shape, {n, latent_shape[0], latent_shape[1], latent_shape[2]}, "attribute latent_shape");
      tensors[static_cast<int>(ShardTensor::kLatentW)].bind(d, layout.latent_dtype);
    }
    auto per_pair = [&](const char* name, ShardTensor slot, std::initializer_list<pd_dtype> allowed,
                        std::vector<int64_t> row_shape, bool required, bool same_dtype_as_latent) -> bool {
      const uint32_t dtype = check_dataset(name, allowed, row_shape.size() + 1, required, &shape, &d);
      if (dtype == 0) return false;
      if (same_dtype_as_latent && dtype_w != 0 && dtype != dtype_w) {
        problem(name, std::string("dtype is ") + prefdiff::sdk::dtype_name(dtype) + " but " + path::kLatentW + " is " +
                          prefdiff::sdk::dtype_name(dtype_w) + "; all latent tensors must share one dtype");
        return false;
      }
      if (n >= 0) {
        row_shape.insert(row_shape.begin(), n);
        if (shape != row_shape) {
          problem(name, "shape is " + shape_string(shape) + ", expected " + shape_string(row_shape) + " (one row per pair of " +
                            path::kLatentW + ")");
          return false;
        }
      }
      if (static_cast<int>(slot) >= 0) tensors[static_cast<int>(slot)].bind(d, static_cast<pd_dtype>(dtype));
      return true;
    };
    const std::vector<int64_t> latent_row = latent_shape.size() == 3 ? latent_shape : std::vector<int64_t>{};
    if (latent_row.size() == 3) {
      per_pair(path::kLatentL, ShardTensor::kLatentL, {PD_DTYPE_F16, PD_DTYPE_F32}, latent_row, true, true);
      const bool w_std = h5::exists(file, path::kLatentWStd), l_std = h5::exists(file, path::kLatentLStd);
      if (w_std != l_std)
        problem(w_std ? path::kLatentLStd : path::kLatentWStd, "missing while its partner exists; store both stds or neither");
      layout.latent_std = w_std && l_std &&
                          per_pair(path::kLatentWStd, ShardTensor::kLatentWStd, {PD_DTYPE_F16, PD_DTYPE_F32}, latent_row, false, true) &&
                          per_pair(path::kLatentLStd, ShardTensor::kLatentLStd, {PD_DTYPE_F16, PD_DTYPE_F32}, latent_row, false, true);
    }
    RowDataset prompt_rows, pair_id_rows;
    if (per_pair(path::kPrompt, static_cast<ShardTensor>(-1), {PD_DTYPE_I64}, {}, true, false)) prompt_rows.bind(d, PD_DTYPE_I64);
    if (per_pair(path::kPairId, static_cast<ShardTensor>(-1), {PD_DTYPE_U64}, {}, true, false)) pair_id_rows.bind(d, PD_DTYPE_U64);
    layout.time_ids = h5::exists(file, path::kTimeIds) && per_pair(path::kTimeIds, ShardTensor::kTimeIds, {PD_DTYPE_F32}, {2, 6}, false, false);

    std::vector<RowDataset> meta_rows;
    if (h5::exists(file, path::kMetaGroup)) {
      H5::Group group = file.openGroup(path::kMetaGroup);
      for (hsize_t i = 0; i < group.getNumObjs(); ++i) {
        const std::string name = group.getObjnameByIdx(i);
        const std::string full = std::string(path::kMetaGroup) + "/" + name;
        if (per_pair(full.c_str(), static_cast<ShardTensor>(-1), {PD_DTYPE_F64, PD_DTYPE_I64}, {}, false, false)) {
          layout.meta_columns.push_back(name);
          meta_rows.emplace_back();
          meta_rows.back().bind(d, PD_DTYPE_F64);  // HDF5 converts int64 columns to double on read
        }
      }
    }
    if (h5::exists(file, path::kTextGroup)) {
      H5::Group group = file.openGroup(path::kTextGroup);
      for (hsize_t i = 0; i < group.getNumObjs(); ++i) {
        const std::string name = group.getObjnameByIdx(i);
        const std::string full = std::string(path::kTextGroup) + "/" + name;
        if (!h5::exists(file, full)) continue;
        H5::DataSet text = file.openDataSet(full);
        if (text.getTypeClass() != H5T_STRING) {
          problem(full, "is not a string column");
        } else if (n >= 0 && h5::shape(text) != std::vector<int64_t>{n}) {
          problem(full, "shape is " + shape_string(h5::shape(text)) + ", expected " + std::to_string(n));
        } else {
          layout.text_columns.push_back(name);
        }
      }
    }

    // Prompt table.
    int64_t p = -1;
    if (check_dataset(path::kEmbeds, {PD_DTYPE_F16}, 3, true, &shape, &d) != 0) {
      p = shape[0];
      layout.embed_tokens = shape[1];
      layout.embed_dim = shape[2];
      tensors[static_cast<int>(ShardTensor::kEmbeds)].bind(d, PD_DTYPE_F16);
      if (p < 1) problem(path::kEmbeds, "holds no prompts; every shard needs at least the empty prompt");
    }
    layout.pooled_dim = 0;
    if (h5::exists(file, path::kPooled) && check_dataset(path::kPooled, {PD_DTYPE_F16}, 2, false, &shape, &d) != 0) {
      if (p >= 0 && shape[0] != p) {
        problem(path::kPooled, "has " + std::to_string(shape[0]) + " rows, " + path::kEmbeds + " has " + std::to_string(p));
      } else {
        layout.pooled_dim = shape[1];
        tensors[static_cast<int>(ShardTensor::kPooled)].bind(d, PD_DTYPE_F16);
      }
    }
    if (!h5::exists(file, path::kText)) {
      problem(path::kText, "missing. HINT: the shard is incomplete; re-run the import");
    } else {
      H5::DataSet text = file.openDataSet(path::kText);
      if (text.getTypeClass() != H5T_STRING)
        problem(path::kText, "is not a string dataset");
      else if (p >= 0 && h5::shape(text) != std::vector<int64_t>{p})
        problem(path::kText, "shape is " + shape_string(h5::shape(text)) + ", expected " + std::to_string(p) + " (one caption per prompt)");
    }
    if (p >= 0) {
      try {
        H5::Group prompts = file.openGroup(path::kPromptsGroup);
        info.empty_prompt = h5::read_int_attribute(prompts, path::kEmptyAttr);
        if (info.empty_prompt < 0 || info.empty_prompt >= p)
          problem(std::string(path::kPromptsGroup) + " attribute 'empty'", "is " + std::to_string(info.empty_prompt) +
                                                                          ", outside the prompt table [0, " + std::to_string(p) + ")");
      } catch (const std::exception& e) {
        problem(path::kPromptsGroup, e.what());
      }
    }
    if (problems->size() != before) return;

    // Structure is sound: load the per-pair index columns and check their values.
    info.pair_count = static_cast<uint64_t>(n);
    info.prompt_count = p;
    prompts.resize(info.pair_count);
    pair_ids.resize(info.pair_count);
    if (n > 0) {
      prompt_rows.read(0, info.pair_count, prompts.data());
      pair_id_rows.read(0, info.pair_count, pair_ids.data());
    }
    size_t bad = 0;
    std::string examples;
    for (uint64_t i = 0; i < info.pair_count; ++i)
      if (prompts[i] < 0 || prompts[i] >= p) {
        if (++bad <= 3) examples += (bad > 1 ? ", " : "") + std::string("row ") + std::to_string(i) + " -> " + std::to_string(prompts[i]);
      }
    if (bad > 0)
      problem(path::kPrompt, std::to_string(bad) + " prompt indices outside the prompt table [0, " + std::to_string(p) + ") (" +
                                 examples + "). HINT: the shard is corrupt; re-run the import");
    std::unordered_map<uint64_t, uint64_t> seen;
    seen.reserve(info.pair_count);
    for (uint64_t i = 0; i < info.pair_count; ++i) {
      auto inserted = seen.emplace(pair_ids[i], i);
      if (!inserted.second) {
        problem(path::kPairId, "pair id " + std::to_string(pair_ids[i]) + " occurs at rows " + std::to_string(inserted.first->second) +
                                   " and " + std::to_string(i) + "; pair ids must be unique (noise injection keys on them)");
        break;
      }
    }
    meta.resize(meta_rows.size());
    for (size_t c = 0; c < meta_rows.size(); ++c) {
      meta[c].resize(info.pair_count);
      if (n > 0) meta_rows[c].read(0, info.pair_count, meta[c].data());
    }
  }
};

ShardFile::ShardFile() : impl_(std::make_unique<Impl>()) {}
ShardFile::~ShardFile() = default;

std::unique_ptr<ShardFile> ShardFile::open(const std::string& path, std::vector<std::string>& problems) {
  h5::quiet();
  std::unique_ptr<ShardFile> shard(new ShardFile());
  Impl& s = *shard->impl_;
  s.info.path = path;
  s.problems = &problems;
  const size_t before = problems.size();
  try {
    if (H5Fis_hdf5(path.c_str()) <= 0) {
      problems.push_back(shard_problem(path, "file", "is not an HDF5 file or cannot be read (" + h5::error_detail() +
                                                        "). HINT: check the path; a shard is written by `prefdiff data import`"));
      return nullptr;
    }
    s.file.openFile(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    problems.push_back(shard_problem(path, "file", "cannot be opened: " + e.getDetailMsg() + " (" + h5::error_detail() +
                                                      "). HINT: the shard is truncated or corrupt; re-run the import that wrote it"));
    return nullptr;
  }
  try {
    s.check_attributes();
    s.check_datasets();
  } catch (const H5::Exception& e) {
    problems.push_back(shard_problem(path, "file", "read failed: " + e.getDetailMsg() + " (" + h5::error_detail() +
                                                      "). HINT: the shard is truncated or corrupt; re-run the import"));
  }
  s.problems = nullptr;
  if (problems.size() != before) return nullptr;
  return shard;
}

std::unique_ptr<ShardFile> ShardFile::open(const std::string& path) {
  std::vector<std::string> problems;
  std::unique_ptr<ShardFile> shard = open(path, problems);
  if (!problems.empty()) {
    std::string message = problems.size() == 1 ? problems[0] : std::to_string(problems.size()) + " problems in shard " + path + ":";
    if (problems.size() > 1)
      for (const std::string& p : problems) message += "\n  " + p;
    throw ShardError(message);
  }
  return shard;
}

const ShardInfo& ShardFile::info() const { return impl_->info; }
const std::vector<uint64_t>& ShardFile::pair_ids() const { return impl_->pair_ids; }
const std::vector<int64_t>& ShardFile::prompts() const { return impl_->prompts; }
const std::vector<std::vector<double>>& ShardFile::meta() const { return impl_->meta; }

size_t ShardFile::row_bytes(ShardTensor tensor) const { return impl_->tensors[static_cast<int>(tensor)].row_bytes; }

void ShardFile::read_rows(ShardTensor tensor, uint64_t first, uint64_t rows, void* out) {
  RowDataset& d = impl_->tensors[static_cast<int>(tensor)];
  static const char* names[] = {path::kLatentW, path::kLatentL, path::kLatentWStd, path::kLatentLStd,
                                path::kTimeIds, path::kEmbeds, path::kPooled};
  const char* name = names[static_cast<int>(tensor)];
  if (!d.present) throw ShardError(shard_problem(impl_->info.path, name, "not present in this shard"));
  if (first + rows > d.dims[0] || first + rows < first)
    throw ShardError(shard_problem(impl_->info.path, name, "rows [" + std::to_string(first) + ", " + std::to_string(first + rows) +
                                                               ") are outside its " + std::to_string(d.dims[0]) + " rows"));
  h5::quiet();
  try {
    d.read(first, rows, out);
  } catch (const H5::Exception& e) {
    throw ShardError(shard_problem(impl_->info.path, name, "read of rows [" + std::to_string(first) + ", " +
                                                               std::to_string(first + rows) + ") failed: " + e.getDetailMsg() + " (" +
                                                               h5::error_detail() + "). HINT: the shard is corrupt; re-run the import"));
  }
}

std::vector<std::string> ShardFile::read_strings(const std::string& dataset, uint64_t first, uint64_t rows) {
  h5::quiet();
  std::vector<std::string> out;
  try {
    H5::DataSet d = impl_->file.openDataSet(dataset);
    const std::vector<int64_t> shape = h5::shape(d);
    if (shape.size() != 1 || first + rows > static_cast<uint64_t>(shape[0]))
      throw ShardError(shard_problem(impl_->info.path, dataset, "rows [" + std::to_string(first) + ", " + std::to_string(first + rows) +
                                                                    ") are outside its shape " + shape_string(shape)));
    if (rows == 0) return out;
    H5::DataSpace file_space = d.getSpace();
    hsize_t start = first, count = rows;
    file_space.selectHyperslab(H5S_SELECT_SET, &count, &start);
    H5::DataSpace memory_space(1, &count);
    H5::StrType type = d.getStrType();
    if (type.isVariableStr()) {
      H5::StrType memory(H5::PredType::C_S1, H5T_VARIABLE);
      memory.setCset(type.getCset());
      std::vector<char*> pointers(rows, nullptr);
      d.read(pointers.data(), memory, memory_space, file_space);
      for (char* p : pointers) out.emplace_back(p != nullptr ? p : "");
      H5Dvlen_reclaim(memory.getId(), memory_space.getId(), H5P_DEFAULT, pointers.data());
    } else {
      const size_t width = type.getSize();
      std::vector<char> buffer(width * rows);
      d.read(buffer.data(), type, memory_space, file_space);
      for (uint64_t i = 0; i < rows; ++i) {
        const char* p = buffer.data() + i * width;
        out.emplace_back(p, strnlen(p, width));
      }
    }
  } catch (const H5::Exception& e) {
    throw ShardError(shard_problem(impl_->info.path, dataset, "string read failed: " + e.getDetailMsg() + " (" + h5::error_detail() + ")"));
  }
  return out;
}

}  // namespace prefdiff::data
