// The HDF5 pair-shard format, version 1: names, dtypes and attributes. docs/data-format.md is the
// user-facing contract; this header is its single source in code (writer, reader and validator).
#ifndef PREFDIFF_DATA_SHARD_FORMAT_HPP
#define PREFDIFF_DATA_SHARD_FORMAT_HPP

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "prefdiff/dataset.h"

namespace prefdiff::data {

constexpr const char* kFormatName = "prefdiff-pairs";
constexpr int64_t kFormatVersion = 1;

// Dataset paths inside a shard.
namespace path {
constexpr const char* kLatentW = "/pairs/latent_w";
constexpr const char* kLatentL = "/pairs/latent_l";
constexpr const char* kLatentWStd = "/pairs/latent_w_std";
constexpr const char* kLatentLStd = "/pairs/latent_l_std";
constexpr const char* kPrompt = "/pairs/prompt";
constexpr const char* kPairId = "/pairs/pair_id";
constexpr const char* kTimeIds = "/pairs/time_ids";
constexpr const char* kMetaGroup = "/pairs/meta";  // numeric per-pair columns, f64 or i64 [N]
constexpr const char* kTextGroup = "/pairs/text";  // string per-pair columns [N] (kept, not served)
constexpr const char* kEmbeds = "/prompts/embeds";
constexpr const char* kPooled = "/prompts/pooled";
constexpr const char* kText = "/prompts/text";
constexpr const char* kPromptsGroup = "/prompts";
constexpr const char* kEmptyAttr = "empty";  // attribute of /prompts: row of the empty prompt
}  // namespace path

// File attributes (root group). Together they say what produced the latents and embeddings, so a
// reader can refuse a shard made for another backbone or encoder.
struct ShardAttributes {
  int64_t format_version = kFormatVersion;
  std::string backbone_family;        // "sd15", "sdxl", or another family name
  std::vector<int64_t> latent_shape;  // C, h, w
  double latent_scale_factor = 0.0;   // VAE scaling factor already applied to the stored latents
  std::string vae_id;
  std::string text_encoder_id;
  std::string text_encoder_2_id;      // empty when the backbone has one text encoder
  std::string encoder;                // the implementation that produced latents/embeddings
  std::string source_dataset;
  std::string source_split;
  std::string writer;                 // tool and revision that wrote the shard
};

// Which optional parts a shard has, and the sizes that are not implied by the attributes.
struct ShardLayout {
  pd_dtype latent_dtype = PD_DTYPE_F16;  // f16 or f32, also the dtype of the std tensors
  bool latent_std = false;
  int64_t embed_tokens = 77;
  int64_t embed_dim = 768;
  int64_t pooled_dim = 0;                 // 0: no pooled embeddings (SD1.5)
  bool time_ids = false;                  // SDXL micro-conditioning
  std::vector<std::string> meta_columns;  // numeric, stored as f64
  std::vector<std::string> text_columns;  // strings
};

// Every shard error: names the file, the dataset (or attribute) and the problem, with a hint.
class ShardError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "file: dataset: problem" — the one format for shard problems.
inline std::string shard_problem(const std::string& file, const std::string& object, const std::string& problem) {
  return file + ": " + object + ": " + problem;
}

inline std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  return s.empty() ? std::string("scalar") : s;
}

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_SHARD_FORMAT_HPP
