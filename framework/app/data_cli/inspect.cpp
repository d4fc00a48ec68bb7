#include "prefdiff/data/inspect.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <sstream>
#include <vector>

#include "prefdiff/data/half.hpp"
#include "prefdiff/data/shard_file.hpp"
#include "prefdiff/dataset_sdk.hpp"

namespace prefdiff::data {

namespace {

std::string clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 3) + "..."; }

// Mean and standard deviation of one row of a float tensor, for a glance at latent statistics.
std::pair<double, double> row_stats(ShardFile& shard, ShardTensor tensor, uint64_t row, pd_dtype dtype) {
  std::vector<uint8_t> buffer(shard.row_bytes(tensor));
  shard.read_rows(tensor, row, 1, buffer.data());
  const size_t n = buffer.size() / prefdiff::sdk::dtype_size(dtype);
  double sum = 0, sq = 0;
  for (size_t k = 0; k < n; ++k) {
    double v;
    if (dtype == PD_DTYPE_F16) {
      uint16_t h;
      std::memcpy(&h, buffer.data() + 2 * k, 2);
      v = half_to_float(h);
    } else {
      float f;
      std::memcpy(&f, buffer.data() + 4 * k, 4);
      v = f;
    }
    sum += v;
    sq += v * v;
  }
  const double mean = sum / static_cast<double>(n);
  return {mean, std::sqrt(std::max(0.0, sq / static_cast<double>(n) - mean * mean))};
}

}  // namespace

void inspect_shard(const std::string& path, uint64_t rows, std::ostream& out) {
  std::unique_ptr<ShardFile> shard = ShardFile::open(path);
  const ShardInfo& info = shard->info();
  const ShardAttributes& a = info.attributes;
  const ShardLayout& layout = info.layout;
  const std::string latent_dtype = prefdiff::sdk::dtype_name(layout.latent_dtype);
  out << path << "\n"
      << "attributes\n"
      << "  format_version       " << a.format_version << "\n"
      << "  backbone_family      " << a.backbone_family << "\n"
      << "  latent_shape         " << shape_string(a.latent_shape) << "\n"
      << "  latent_scale_factor  " << a.latent_scale_factor << "\n"
      << "  vae_id               " << a.vae_id << "\n"
      << "  text_encoder_id      " << a.text_encoder_id << "\n"
      << "  text_encoder_2_id    " << a.text_encoder_2_id << "\n"
      << "  encoder              " << a.encoder << "\n"
      << "  source               " << a.source_dataset << " / " << a.source_split << "\n"
      << "  writer               " << a.writer << "\n"
      << "counts\n"
      << "  pairs                " << info.pair_count << "\n"
      << "  prompts              " << info.prompt_count << " (empty prompt at row " << info.empty_prompt << ")\n"
      << "datasets\n";
  const std::string n = std::to_string(info.pair_count), p = std::to_string(info.prompt_count);
  const std::string latent = n + "x" + shape_string(a.latent_shape);
  out << "  /pairs/latent_w, latent_l          " << latent_dtype << " " << latent << "\n";
  if (layout.latent_std) out << "  /pairs/latent_w_std, latent_l_std  " << latent_dtype << " " << latent << "\n";
  out << "  /pairs/prompt                      int64 " << n << "\n"
      << "  /pairs/pair_id                     uint64 " << n << "\n";
  if (layout.time_ids) out << "  /pairs/time_ids                    float32 " << n << "x2x6\n";
  out << "  /prompts/embeds                    float16 " << p << "x" << layout.embed_tokens << "x" << layout.embed_dim << "\n";
  if (layout.pooled_dim > 0) out << "  /prompts/pooled                    float16 " << p << "x" << layout.pooled_dim << "\n";
  for (size_t c = 0; c < layout.meta_columns.size(); ++c) {
    const std::vector<double>& v = shard->meta()[c];
    out << "  /pairs/meta/" << std::left << std::setw(23) << layout.meta_columns[c] << std::right << "float64 " << n;
    if (!v.empty())
      out << "  [min " << *std::min_element(v.begin(), v.end()) << ", max " << *std::max_element(v.begin(), v.end()) << "]";
    out << "\n";
  }
  for (const std::string& t : layout.text_columns) out << "  /pairs/text/" << std::left << std::setw(23) << t << std::right << "string " << n << "\n";

  const uint64_t shown = std::min<uint64_t>(rows, info.pair_count);
  if (shown == 0) return;
  out << "first " << shown << " pairs\n";
  const std::vector<std::string> captions = shard->read_strings("/prompts/text", 0, static_cast<uint64_t>(info.prompt_count));
  std::vector<std::vector<std::string>> texts;
  for (const std::string& t : layout.text_columns) texts.push_back(shard->read_strings("/pairs/text/" + t, 0, shown));
  for (uint64_t r = 0; r < shown; ++r) {
    const int64_t prompt = shard->prompts()[r];
    out << "  [" << r << "] pair_id " << shard->pair_ids()[r] << "  prompt " << prompt << " \""
        << clip(captions[static_cast<size_t>(prompt)], 70) << "\"\n";
    const auto w = row_stats(*shard, ShardTensor::kLatentW, r, layout.latent_dtype);
    const auto l = row_stats(*shard, ShardTensor::kLatentL, r, layout.latent_dtype);
    out << "      latent_w mean " << std::setprecision(4) << w.first << " std " << w.second << "   latent_l mean " << l.first << " std "
        << l.second << std::setprecision(6) << "\n";
    std::string extra;
    for (size_t c = 0; c < layout.meta_columns.size(); ++c) {
      std::ostringstream v;
      v << shard->meta()[c][r];
      extra += "  " + layout.meta_columns[c] + "=" + v.str();
    }
    for (size_t c = 0; c < texts.size(); ++c) extra += "  " + layout.text_columns[c] + "=" + clip(texts[c][r], 48);
    if (!extra.empty()) out << "     " << extra << "\n";
  }
}

}  // namespace prefdiff::data
