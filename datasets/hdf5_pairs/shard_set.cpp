#include "prefdiff/data/shard_set.hpp"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <unordered_map>

namespace prefdiff::data {

std::vector<std::string> expand_shard_patterns(const std::vector<std::string>& patterns) {
  if (patterns.empty()) throw ShardError("no shard files given. HINT: set data.shards to a file or a glob such as \"data/train-*.h5\"");
  std::vector<std::string> files;
  for (const std::string& pattern : patterns) {
    glob_t matches{};
    const int rc = glob(pattern.c_str(), GLOB_BRACE | GLOB_TILDE | GLOB_ERR, nullptr, &matches);
    size_t found = 0;
    if (rc == 0) {
      for (size_t i = 0; i < matches.gl_pathc; ++i) {
        struct stat st{};
        if (stat(matches.gl_pathv[i], &st) == 0 && S_ISREG(st.st_mode)) {
          files.emplace_back(matches.gl_pathv[i]);
          ++found;
        }
      }
    }
    globfree(&matches);
    if (rc == GLOB_ABORTED)
      throw ShardError(pattern + ": a folder in the pattern cannot be read (" + std::strerror(errno) + ")");
    if (found == 0)
      throw ShardError(pattern + ": matches no shard file. HINT: check the path and the working directory; a relative "
                       "recipe path is relative to the recipe file");
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  return files;
}

namespace {

std::string format_number(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.9g", value);
  return buffer;
}

}  // namespace

struct ShardSet::Impl {
  std::vector<std::unique_ptr<ShardFile>> shards;
  std::vector<uint64_t> offsets;  // first global index of each shard, plus the total at the end
  prefdiff::sdk::DatasetInfo info;
  std::vector<uint8_t> scratch;

  // Every shard must agree with the first on what produced it and on its layout.
  void check_consistent() {
    const ShardInfo& first = shards[0]->info();
    for (size_t s = 1; s < shards.size(); ++s) {
      const ShardInfo& other = shards[s]->info();
      auto differ = [&](const std::string& what, const std::string& a, const std::string& b) {
        if (a != b)
          throw ShardError(other.path + ": " + what + " is '" + b + "' but " + first.path + " has '" + a +
                           "'; all shards of one data set must agree. HINT: list only shards made for the same backbone and encoders");
      };
      const ShardAttributes &a = first.attributes, &b = other.attributes;
      differ("attribute backbone_family", a.backbone_family, b.backbone_family);
      differ("attribute latent_shape", shape_string(a.latent_shape), shape_string(b.latent_shape));
      differ("attribute latent_scale_factor", format_number(a.latent_scale_factor), format_number(b.latent_scale_factor));
      differ("attribute vae_id", a.vae_id, b.vae_id);
      differ("attribute text_encoder_id", a.text_encoder_id, b.text_encoder_id);
      differ("attribute text_encoder_2_id", a.text_encoder_2_id, b.text_encoder_2_id);
      differ("attribute encoder", a.encoder, b.encoder);
      const ShardLayout &x = first.layout, &y = other.layout;
      differ("latent dtype", prefdiff::sdk::dtype_name(x.latent_dtype), prefdiff::sdk::dtype_name(y.latent_dtype));
      differ("latent std presence", x.latent_std ? "yes" : "no", y.latent_std ? "yes" : "no");
      differ("prompt embedding shape", std::to_string(x.embed_tokens) + "x" + std::to_string(x.embed_dim),
             std::to_string(y.embed_tokens) + "x" + std::to_string(y.embed_dim));
      differ("pooled embedding size", std::to_string(x.pooled_dim), std::to_string(y.pooled_dim));
      differ("time ids presence", x.time_ids ? "yes" : "no", y.time_ids ? "yes" : "no");
      std::vector<std::string> mx = x.meta_columns, my = y.meta_columns;
      std::sort(mx.begin(), mx.end());
      std::sort(my.begin(), my.end());
      std::string jx, jy;
      for (const auto& m : mx) jx += (jx.empty() ? "" : ",") + m;
      for (const auto& m : my) jy += (jy.empty() ? "" : ",") + m;
      differ("metadata columns", jx, jy);
    }
    std::unordered_map<uint64_t, size_t> owner;
    for (size_t s = 0; s < shards.size(); ++s)
      for (uint64_t id : shards[s]->pair_ids()) {
        auto inserted = owner.emplace(id, s);
        if (!inserted.second)
          throw ShardError(shards[s]->info().path + ": /pairs/pair_id: pair id " + std::to_string(id) + " also occurs in " +
                           shards[inserted.first->second]->info().path +
                           "; a data set must not hold a pair twice. HINT: the same source was imported twice, or two shards overlap");
      }
  }

  void describe() {
    const ShardInfo& first = shards[0]->info();
    const ShardAttributes& a = first.attributes;
    const ShardLayout& layout = first.layout;
    using prefdiff::sdk::TensorSpec;
    info.pair_count = offsets.back();
    info.tensors.clear();
    const std::vector<int64_t>& latent = a.latent_shape;
    info.tensors.push_back(TensorSpec{"latent_w", layout.latent_dtype, latent, 0});
    info.tensors.push_back(TensorSpec{"latent_l", layout.latent_dtype, latent, 0});
    if (layout.latent_std) {
      info.tensors.push_back(TensorSpec{"latent_w_std", layout.latent_dtype, latent, 0});
      info.tensors.push_back(TensorSpec{"latent_l_std", layout.latent_dtype, latent, 0});
    }
    info.tensors.push_back(TensorSpec{"prompt_embeds", PD_DTYPE_F16, {layout.embed_tokens, layout.embed_dim}, PD_TENSOR_TEXT});
    if (layout.pooled_dim > 0) info.tensors.push_back(TensorSpec{"pooled_embeds", PD_DTYPE_F16, {layout.pooled_dim}, PD_TENSOR_TEXT});
    if (layout.time_ids) info.tensors.push_back(TensorSpec{"time_ids", PD_DTYPE_F32, {2, 6}, 0});
    info.tensors.push_back(TensorSpec{"pair_id", PD_DTYPE_U64, {}, 0});
    for (const std::string& m : layout.meta_columns) info.tensors.push_back(TensorSpec{"meta/" + m, PD_DTYPE_F64, {}, PD_TENSOR_METADATA});

    std::vector<std::string> sources, splits;
    for (const auto& s : shards) {
      const ShardAttributes& sa = s->info().attributes;
      if (std::find(sources.begin(), sources.end(), sa.source_dataset) == sources.end()) sources.push_back(sa.source_dataset);
      if (std::find(splits.begin(), splits.end(), sa.source_split) == splits.end()) splits.push_back(sa.source_split);
    }
    auto join = [](const std::vector<std::string>& v) {
      std::string out;
      for (const auto& x : v) out += (out.empty() ? "" : ",") + x;
      return out;
    };
    info.attributes = {{"format_version", std::to_string(a.format_version)},
                       {"backbone_family", a.backbone_family},
                       {"latent_shape", shape_string(a.latent_shape)},
                       {"latent_scale_factor", format_number(a.latent_scale_factor)},
                       {"vae_id", a.vae_id},
                       {"text_encoder_id", a.text_encoder_id},
                       {"text_encoder_2_id", a.text_encoder_2_id},
                       {"encoder", a.encoder},
                       {"source_dataset", join(sources)},
                       {"source_split", join(splits)},
                       {"shard_count", std::to_string(shards.size())},
                       {"location", first.path + (shards.size() > 1 ? " and " + std::to_string(shards.size() - 1) + " more" : "")}};
  }
};

ShardSet::ShardSet(const std::vector<std::string>& patterns) : impl_(std::make_unique<Impl>()) {
  const std::vector<std::string> files = expand_shard_patterns(patterns);
  Impl& s = *impl_;
  s.offsets.push_back(0);
  for (const std::string& file : files) {
    s.shards.push_back(ShardFile::open(file));
    s.offsets.push_back(s.offsets.back() + s.shards.back()->info().pair_count);
  }
  s.check_consistent();
  s.describe();
}

ShardSet::~ShardSet() = default;

const prefdiff::sdk::DatasetInfo& ShardSet::info() const { return impl_->info; }
size_t ShardSet::shard_count() const { return impl_->shards.size(); }
ShardFile& ShardSet::shard(size_t i) { return *impl_->shards.at(i); }

std::pair<size_t, uint64_t> ShardSet::locate(uint64_t index) const {
  const std::vector<uint64_t>& offsets = impl_->offsets;
  if (index >= offsets.back())
    throw ShardError("pair index " + std::to_string(index) + " is outside the data set's " + std::to_string(offsets.back()) + " pairs");
  const size_t shard = static_cast<size_t>(std::upper_bound(offsets.begin(), offsets.end(), index) - offsets.begin()) - 1;
  return {shard, index - offsets[shard]};
}

void ShardSet::read(const prefdiff::sdk::ReadRequest& request) {
  Impl& s = *impl_;
  std::vector<std::pair<size_t, uint64_t>> where(request.count);
  for (size_t i = 0; i < request.count; ++i) where[i] = locate(request.indices[i]);

  for (const auto& buffer : request.buffers()) {
    const std::string& name = buffer.first;
    uint8_t* out = static_cast<uint8_t*>(buffer.second);
    auto rows = [&](ShardTensor tensor) {
      const size_t bytes = s.shards[where[0].first]->row_bytes(tensor);
      for (size_t i = 0; i < request.count; ++i) s.shards[where[i].first]->read_rows(tensor, where[i].second, 1, out + i * bytes);
    };
    if (name == "latent_w") {
      rows(ShardTensor::kLatentW);
    } else if (name == "latent_l") {
      rows(ShardTensor::kLatentL);
    } else if (name == "latent_w_std") {
      rows(ShardTensor::kLatentWStd);
    } else if (name == "latent_l_std") {
      rows(ShardTensor::kLatentLStd);
    } else if (name == "time_ids") {
      rows(ShardTensor::kTimeIds);
    } else if (name == "prompt_embeds" || name == "pooled_embeds") {
      // Prompts repeat within a batch (several pairs per caption): read each distinct one once.
      const ShardTensor tensor = name == "prompt_embeds" ? ShardTensor::kEmbeds : ShardTensor::kPooled;
      const size_t bytes = s.shards[where[0].first]->row_bytes(tensor);
      std::map<std::pair<size_t, int64_t>, size_t> done;
      for (size_t i = 0; i < request.count; ++i) {
        ShardFile& shard = *s.shards[where[i].first];
        const int64_t prompt = request.dropped(i) ? shard.info().empty_prompt : shard.prompts()[where[i].second];
        auto found = done.find({where[i].first, prompt});
        if (found != done.end()) {
          std::memcpy(out + i * bytes, out + found->second * bytes, bytes);
        } else {
          shard.read_rows(tensor, static_cast<uint64_t>(prompt), 1, out + i * bytes);
          done.emplace(std::make_pair(where[i].first, prompt), i);
        }
      }
    } else if (name == "pair_id") {
      for (size_t i = 0; i < request.count; ++i) {
        const uint64_t id = s.shards[where[i].first]->pair_ids()[where[i].second];
        std::memcpy(out + i * sizeof id, &id, sizeof id);
      }
    } else if (name.compare(0, 5, "meta/") == 0) {
      const std::string column = name.substr(5);
      for (size_t i = 0; i < request.count; ++i) {
        ShardFile& shard = *s.shards[where[i].first];
        const std::vector<std::string>& columns = shard.info().layout.meta_columns;
        const size_t c = static_cast<size_t>(std::find(columns.begin(), columns.end(), column) - columns.begin());
        const double value = shard.meta().at(c)[where[i].second];
        std::memcpy(out + i * sizeof value, &value, sizeof value);
      }
    } else {
      throw ShardError("hdf5-pairs: unknown tensor '" + name + "'");
    }
  }
}

}  // namespace prefdiff::data
