#include "prefdiff/data/shard_writer.hpp"

#include <H5Cpp.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "h5_util.hpp"
#include "prefdiff/dataset_sdk.hpp"

namespace prefdiff::data {

namespace {

constexpr size_t kFlushRows = 256;

// One growable dataset [rows, dims...] with rows buffered in memory and appended in blocks.
struct Column {
  H5::DataSet dataset;
  H5::DataType memory;
  std::vector<hsize_t> row_dims;  // dims after the row axis
  size_t row_bytes = 0;
  std::vector<uint8_t> buffer;
  hsize_t buffered = 0;
  hsize_t written = 0;

  void create(H5::Group& parent, const std::string& name, const H5::DataType& file_type, pd_dtype dtype,
              std::vector<hsize_t> dims) {
    memory = h5::memory_type(dtype);
    row_dims = std::move(dims);
    row_bytes = prefdiff::sdk::dtype_size(dtype);
    for (hsize_t d : row_dims) row_bytes *= d;
    std::vector<hsize_t> current(1 + row_dims.size(), 0), maximum(1 + row_dims.size()), chunk(1 + row_dims.size());
    maximum[0] = H5S_UNLIMITED;
    // Big rows get a chunk each so a shuffled read touches only its own row; small rows share chunks.
    chunk[0] = row_bytes >= 16384 ? 1 : std::max<hsize_t>(1, std::min<hsize_t>(65536, 65536 / std::max<size_t>(row_bytes, 1)));
    for (size_t d = 0; d < row_dims.size(); ++d) current[d + 1] = maximum[d + 1] = chunk[d + 1] = row_dims[d];
    H5::DSetCreatPropList properties;
    properties.setChunk(static_cast<int>(chunk.size()), chunk.data());
    dataset = parent.createDataSet(name, file_type, H5::DataSpace(static_cast<int>(current.size()), current.data(), maximum.data()),
                                   properties);
  }
  void append(const void* row) {
    buffer.resize((buffered + 1) * row_bytes);
    std::memcpy(buffer.data() + buffered * row_bytes, row, row_bytes);
    if (++buffered == kFlushRows) flush();
  }
  void flush() {
    if (buffered == 0) return;
    std::vector<hsize_t> size(1 + row_dims.size()), start(1 + row_dims.size(), 0), count(1 + row_dims.size());
    size[0] = written + buffered;
    start[0] = written;
    count[0] = buffered;
    for (size_t d = 0; d < row_dims.size(); ++d) size[d + 1] = count[d + 1] = row_dims[d];
    dataset.extend(size.data());
    H5::DataSpace file_space = dataset.getSpace();
    file_space.selectHyperslab(H5S_SELECT_SET, count.data(), start.data());
    H5::DataSpace memory_space(static_cast<int>(count.size()), count.data());
    dataset.write(buffer.data(), memory, memory_space, file_space);
    written += buffered;
    buffered = 0;
    buffer.clear();
  }
};

// A growable 1-D dataset of variable-length UTF-8 strings.
struct StringColumn {
  H5::DataSet dataset;
  H5::StrType type{H5::PredType::C_S1, H5T_VARIABLE};
  std::vector<std::string> buffer;
  hsize_t written = 0;

  void create(H5::Group& parent, const std::string& name) {
    type.setCset(H5T_CSET_UTF8);
    hsize_t current = 0, maximum = H5S_UNLIMITED, chunk = 1024;
    H5::DSetCreatPropList properties;
    properties.setChunk(1, &chunk);
    dataset = parent.createDataSet(name, type, H5::DataSpace(1, &current, &maximum), properties);
  }
  void append(const std::string& value) {
    buffer.push_back(value);
    if (buffer.size() == kFlushRows) flush();
  }
  void flush() {
    if (buffer.empty()) return;
    std::vector<const char*> pointers;
    for (const std::string& s : buffer) pointers.push_back(s.c_str());
    hsize_t size = written + buffer.size(), start = written, count = buffer.size();
    dataset.extend(&size);
    H5::DataSpace file_space = dataset.getSpace();
    file_space.selectHyperslab(H5S_SELECT_SET, &count, &start);
    H5::DataSpace memory_space(1, &count);
    dataset.write(pointers.data(), type, memory_space, file_space);
    written += count;
    buffer.clear();
  }
};

}  // namespace

struct ShardWriter::Impl {
  std::string path, partial;
  ShardAttributes attributes;
  ShardLayout layout;
  std::unique_ptr<H5::H5File> file;
  bool open = false;
  Column latent_w, latent_l, latent_w_std, latent_l_std, prompt, pair_id, time_ids, embeds, pooled;
  std::vector<Column> meta;
  std::vector<StringColumn> text;
  StringColumn prompt_text;
  std::unordered_map<std::string, int64_t> prompt_rows;
  std::unordered_set<uint64_t> pair_ids;
  uint64_t pairs = 0;

  std::string where() const { return "shard writer for " + path; }
};

ShardWriter::ShardWriter(const std::string& path, const ShardAttributes& attributes, const ShardLayout& layout)
    : impl_(std::make_unique<Impl>()) {
  h5::quiet();
  Impl& s = *impl_;
  s.path = path;
  s.partial = path + ".partial";
  s.attributes = attributes;
  s.layout = layout;
  if (attributes.latent_shape.size() != 3)
    throw std::invalid_argument(s.where() + ": latent_shape must be C, h, w (got " + shape_string(attributes.latent_shape) + ")");
  for (int64_t d : attributes.latent_shape)
    if (d <= 0) throw std::invalid_argument(s.where() + ": latent_shape " + shape_string(attributes.latent_shape) + " has a non-positive size");
  if (layout.latent_dtype != PD_DTYPE_F16 && layout.latent_dtype != PD_DTYPE_F32)
    throw std::invalid_argument(s.where() + ": latents must be float16 or float32");
  if (layout.embed_tokens <= 0 || layout.embed_dim <= 0 || layout.pooled_dim < 0)
    throw std::invalid_argument(s.where() + ": embedding sizes must be positive");
  if (attributes.backbone_family.empty() || attributes.encoder.empty())
    throw std::invalid_argument(s.where() + ": backbone_family and encoder attributes are required");
  try {
    s.file = std::make_unique<H5::H5File>(s.partial, H5F_ACC_TRUNC);
    s.open = true;
    H5::Group pairs = s.file->createGroup("/pairs");
    H5::Group prompts = s.file->createGroup("/prompts");
    const std::vector<hsize_t> latent(attributes.latent_shape.begin(), attributes.latent_shape.end());
    const H5::DataType latent_file = h5::memory_type(layout.latent_dtype);
    s.latent_w.create(pairs, "latent_w", latent_file, layout.latent_dtype, latent);
    s.latent_l.create(pairs, "latent_l", latent_file, layout.latent_dtype, latent);
    if (layout.latent_std) {
      s.latent_w_std.create(pairs, "latent_w_std", latent_file, layout.latent_dtype, latent);
      s.latent_l_std.create(pairs, "latent_l_std", latent_file, layout.latent_dtype, latent);
    }
    s.prompt.create(pairs, "prompt", H5::PredType::STD_I64LE, PD_DTYPE_I64, {});
    s.pair_id.create(pairs, "pair_id", H5::PredType::STD_U64LE, PD_DTYPE_U64, {});
    if (layout.time_ids) s.time_ids.create(pairs, "time_ids", H5::PredType::IEEE_F32LE, PD_DTYPE_F32, {2, 6});
    if (!layout.meta_columns.empty()) {
      H5::Group group = s.file->createGroup(path::kMetaGroup);
      s.meta.resize(layout.meta_columns.size());
      for (size_t c = 0; c < layout.meta_columns.size(); ++c)
        s.meta[c].create(group, layout.meta_columns[c], H5::PredType::IEEE_F64LE, PD_DTYPE_F64, {});
    }
    if (!layout.text_columns.empty()) {
      H5::Group group = s.file->createGroup(path::kTextGroup);
      s.text.resize(layout.text_columns.size());
      for (size_t c = 0; c < layout.text_columns.size(); ++c) s.text[c].create(group, layout.text_columns[c]);
    }
    s.embeds.create(prompts, "embeds", h5::memory_type(PD_DTYPE_F16), PD_DTYPE_F16,
                    {static_cast<hsize_t>(layout.embed_tokens), static_cast<hsize_t>(layout.embed_dim)});
    if (layout.pooled_dim > 0)
      s.pooled.create(prompts, "pooled", h5::memory_type(PD_DTYPE_F16), PD_DTYPE_F16, {static_cast<hsize_t>(layout.pooled_dim)});
    s.prompt_text.create(prompts, "text");
  } catch (const H5::Exception& e) {
    throw ShardError(s.partial + ": cannot create the shard: " + e.getDetailMsg() + " (" + h5::error_detail() +
                     "). HINT: check that the folder exists and is writable.");
  }
}

ShardWriter::~ShardWriter() {
  if (impl_ && impl_->open) {
    try {
      impl_->file->close();
    } catch (...) {
    }
    std::remove(impl_->partial.c_str());
  }
}

int64_t ShardWriter::find_prompt(const std::string& text) const {
  auto it = impl_->prompt_rows.find(text);
  return it == impl_->prompt_rows.end() ? -1 : it->second;
}

int64_t ShardWriter::add_prompt(const std::string& text, const uint16_t* embeds, const uint16_t* pooled) {
  Impl& s = *impl_;
  if (!s.open) throw std::logic_error(s.where() + ": add_prompt after close");
  const int64_t existing = find_prompt(text);
  if (existing >= 0) return existing;
  if (embeds == nullptr || (s.layout.pooled_dim > 0 && pooled == nullptr))
    throw std::invalid_argument(s.where() + ": prompt \"" + text + "\" is missing its embeddings");
  const int64_t row = static_cast<int64_t>(s.prompt_rows.size());
  s.embeds.append(embeds);
  if (s.layout.pooled_dim > 0) s.pooled.append(pooled);
  s.prompt_text.append(text);
  s.prompt_rows.emplace(text, row);
  return row;
}

void ShardWriter::add_pair(const PairRecord& pair) {
  Impl& s = *impl_;
  const std::string who = s.where() + ", pair id " + std::to_string(pair.pair_id);
  if (!s.open) throw std::logic_error(who + ": add_pair after close");
  if (pair.prompt < 0 || pair.prompt >= static_cast<int64_t>(s.prompt_rows.size()))
    throw std::invalid_argument(who + ": prompt row " + std::to_string(pair.prompt) + " was not added (" +
                                std::to_string(s.prompt_rows.size()) + " prompts so far)");
  if (pair.latent_w == nullptr || pair.latent_l == nullptr) throw std::invalid_argument(who + ": missing latents");
  if (s.layout.latent_std && (pair.latent_w_std == nullptr || pair.latent_l_std == nullptr))
    throw std::invalid_argument(who + ": the layout stores latent std but the pair has none");
  if (s.layout.time_ids && pair.time_ids == nullptr) throw std::invalid_argument(who + ": the layout stores time ids but the pair has none");
  if (pair.meta.size() != s.layout.meta_columns.size() || pair.text.size() != s.layout.text_columns.size())
    throw std::invalid_argument(who + ": " + std::to_string(pair.meta.size()) + " metadata and " + std::to_string(pair.text.size()) +
                                " text values, the layout has " + std::to_string(s.layout.meta_columns.size()) + " and " +
                                std::to_string(s.layout.text_columns.size()));
  if (!s.pair_ids.insert(pair.pair_id).second) throw std::invalid_argument(who + ": duplicate pair id");
  s.latent_w.append(pair.latent_w);
  s.latent_l.append(pair.latent_l);
  if (s.layout.latent_std) {
    s.latent_w_std.append(pair.latent_w_std);
    s.latent_l_std.append(pair.latent_l_std);
  }
  s.prompt.append(&pair.prompt);
  s.pair_id.append(&pair.pair_id);
  if (s.layout.time_ids) s.time_ids.append(pair.time_ids);
  for (size_t c = 0; c < s.meta.size(); ++c) s.meta[c].append(&pair.meta[c]);
  for (size_t c = 0; c < s.text.size(); ++c) s.text[c].append(pair.text[c]);
  ++s.pairs;
}

void ShardWriter::close() {
  Impl& s = *impl_;
  if (!s.open) return;
  const int64_t empty = find_prompt("");
  if (empty < 0)
    throw std::invalid_argument(s.where() + ": no empty prompt was added. HINT: add_prompt(\"\", ...) with the "
                                "encoder's embedding of the empty caption; caption dropout needs it");
  try {
    for (Column* c : {&s.latent_w, &s.latent_l, &s.prompt, &s.pair_id, &s.embeds}) c->flush();
    if (s.layout.latent_std) {
      s.latent_w_std.flush();
      s.latent_l_std.flush();
    }
    if (s.layout.time_ids) s.time_ids.flush();
    if (s.layout.pooled_dim > 0) s.pooled.flush();
    for (Column& c : s.meta) c.flush();
    for (StringColumn& c : s.text) c.flush();
    s.prompt_text.flush();
    H5::Group prompts = s.file->openGroup(path::kPromptsGroup);
    h5::write_int_attribute(prompts, path::kEmptyAttr, empty);
    H5::Group root = s.file->openGroup("/");
    const ShardAttributes& a = s.attributes;
    h5::write_string_attribute(root, "format", kFormatName);
    h5::write_int_attribute(root, "format_version", kFormatVersion);
    h5::write_string_attribute(root, "backbone_family", a.backbone_family);
    h5::write_ints_attribute(root, "latent_shape", a.latent_shape);
    h5::write_double_attribute(root, "latent_scale_factor", a.latent_scale_factor);
    h5::write_string_attribute(root, "vae_id", a.vae_id);
    h5::write_string_attribute(root, "text_encoder_id", a.text_encoder_id);
    h5::write_string_attribute(root, "text_encoder_2_id", a.text_encoder_2_id);
    h5::write_string_attribute(root, "encoder", a.encoder);
    h5::write_string_attribute(root, "source_dataset", a.source_dataset);
    h5::write_string_attribute(root, "source_split", a.source_split);
    h5::write_string_attribute(root, "writer", a.writer);
    s.file->close();
  } catch (const H5::Exception& e) {
    throw ShardError(s.partial + ": writing failed: " + e.getDetailMsg() + " (" + h5::error_detail() + ")");
  }
  s.open = false;
  if (std::rename(s.partial.c_str(), s.path.c_str()) != 0)
    throw ShardError(s.partial + ": cannot rename to " + s.path + ": " + std::strerror(errno));
}

uint64_t ShardWriter::pair_count() const { return impl_->pairs; }
int64_t ShardWriter::prompt_count() const { return static_cast<int64_t>(impl_->prompt_rows.size()); }
const std::string& ShardWriter::path() const { return impl_->path; }

}  // namespace prefdiff::data
