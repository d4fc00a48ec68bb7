#include "pair_assembler.hpp"

#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace prefdiff::data {

std::vector<RankedPair> expand_group(const std::vector<double>& scores, bool lower_is_better, uint64_t& ties) {
  std::vector<RankedPair> pairs;
  for (size_t i = 0; i < scores.size(); ++i)
    for (size_t j = i + 1; j < scores.size(); ++j) {
      if (scores[i] == scores[j]) {
        ++ties;
        continue;
      }
      const bool i_wins = lower_is_better ? scores[i] < scores[j] : scores[i] > scores[j];
      pairs.push_back(i_wins ? RankedPair{i, j} : RankedPair{j, i});
    }
  return pairs;
}

std::string ImportSummary::to_string() const {
  std::ostringstream out;
  out << format << " import of " << input << "\n"
      << "  records read:        " << records << "\n"
      << "  prompts:             " << prompts << " (" << distinct_prompts << " distinct captions)\n"
      << "  strict pairs:        " << strict_pairs << " (written, winner first)\n"
      << "  ties dropped:        " << ties << "\n"
      << "  duplicates dropped:  " << duplicates << "\n"
      << "  records skipped:     " << skipped << "\n";
  for (const std::string& note : notes) out << "    " << note << "\n";
  for (const std::string& o : outputs) out << "  wrote " << o << "\n";
  return out.str();
}

PairAssembler::PairAssembler(std::string format, std::string input, std::string source_dataset, PairEncoder& encoder,
                             const ImportOptions& options, std::vector<std::string> meta_columns, std::vector<std::string> text_columns)
    : source_dataset_(std::move(source_dataset)), encoder_(encoder), options_(options) {
  if (options_.output.empty()) throw std::invalid_argument(format + " import: no output shard path given (--output)");
  const EncoderSpec& spec = encoder_.spec();
  layout_.latent_dtype = PD_DTYPE_F16;
  layout_.latent_std = spec.latent_std;
  layout_.embed_tokens = spec.embed_tokens;
  layout_.embed_dim = spec.embed_dim;
  layout_.pooled_dim = spec.pooled_dim;
  layout_.time_ids = spec.time_ids;
  layout_.meta_columns = std::move(meta_columns);
  layout_.text_columns = std::move(text_columns);
  attributes_.backbone_family = spec.backbone_family;
  attributes_.latent_shape = spec.latent_shape;
  attributes_.latent_scale_factor = spec.latent_scale_factor;
  attributes_.vae_id = spec.vae_id;
  attributes_.text_encoder_id = spec.text_encoder_id;
  attributes_.text_encoder_2_id = spec.text_encoder_2_id;
  attributes_.encoder = spec.id;
  attributes_.source_dataset = source_dataset_;
  attributes_.source_split = options_.split;
  attributes_.writer = options_.writer;
  embeds_.resize(static_cast<size_t>(spec.embed_tokens * spec.embed_dim));
  pooled_.resize(static_cast<size_t>(spec.pooled_dim));
  summary_.format = std::move(format);
  summary_.input = std::move(input);
}

PairAssembler::~PairAssembler() = default;

void PairAssembler::open_shard() {
  std::string path = options_.output;
  if (options_.shard_size > 0) {
    const size_t dot = path.rfind(".h5");
    const std::string stem = dot != std::string::npos && dot + 3 == path.size() ? path.substr(0, dot) : path;
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "-%05zu.h5", summary_.outputs.size());
    path = stem + suffix;
  }
  writer_ = std::make_unique<ShardWriter>(path, attributes_, layout_);
  prompt("");  // every shard carries the empty prompt for caption dropout
}

void PairAssembler::close_shard() {
  if (!writer_) return;
  writer_->close();
  summary_.outputs.push_back(writer_->path());
  writer_.reset();
}

int64_t PairAssembler::prompt(const std::string& caption) {
  const int64_t row = writer_->find_prompt(caption);
  if (row >= 0) return row;
  encoder_.encode_prompt(caption, embeds_.data(), layout_.pooled_dim > 0 ? pooled_.data() : nullptr);
  if (!caption.empty() && captions_.insert(caption).second) ++summary_.distinct_prompts;
  return writer_->add_prompt(caption, embeds_.data(), layout_.pooled_dim > 0 ? pooled_.data() : nullptr);
}

const PairAssembler::Encoded& PairAssembler::image(const ImageRef& ref) {
  auto found = group_images_.find(ref.key());
  if (found != group_images_.end()) return found->second;
  const EncoderSpec& spec = encoder_.spec();
  Encoded e;
  e.mean.resize(static_cast<size_t>(spec.latent_shape[0] * spec.latent_shape[1] * spec.latent_shape[2]));
  if (spec.latent_std) e.std_dev.resize(e.mean.size());
  if (spec.time_ids) e.time_ids.resize(6);
  ImageRef located = ref;
  if (!options_.images_root.empty() && !located.path.empty() && located.path[0] != '/')
    located.path = options_.images_root + "/" + located.path;
  encoder_.encode_image(located, e.mean.data(), spec.latent_std ? e.std_dev.data() : nullptr,
                        spec.time_ids ? e.time_ids.data() : nullptr);
  return group_images_.emplace(ref.key(), std::move(e)).first->second;
}

bool PairAssembler::full() const { return options_.limit > 0 && summary_.strict_pairs >= options_.limit; }

bool PairAssembler::add(uint64_t pair_id, const std::string& caption, const ImageRef& winner, const ImageRef& loser,
                        std::vector<double> meta, std::vector<std::string> text) {
  if (full()) return false;
  if (!written_.insert(pair_id).second) {
    ++summary_.duplicates;
    return true;
  }
  if (!writer_) open_shard();
  const Encoded& w = image(winner);
  const Encoded& l = image(loser);
  PairRecord record;
  record.pair_id = pair_id;
  record.prompt = prompt(caption);
  record.latent_w = w.mean.data();
  record.latent_l = l.mean.data();
  if (layout_.latent_std) {
    record.latent_w_std = w.std_dev.data();
    record.latent_l_std = l.std_dev.data();
  }
  float time_ids[12];
  if (layout_.time_ids) {
    std::copy(w.time_ids.begin(), w.time_ids.end(), time_ids);
    std::copy(l.time_ids.begin(), l.time_ids.end(), time_ids + 6);
    record.time_ids = time_ids;
  }
  record.meta = std::move(meta);
  record.text = std::move(text);
  writer_->add_pair(record);
  ++summary_.strict_pairs;
  if (options_.shard_size > 0 && writer_->pair_count() >= options_.shard_size) close_shard();
  return !full();
}

void PairAssembler::end_group() { group_images_.clear(); }

ImportSummary PairAssembler::finish() {
  if (!writer_ && summary_.outputs.empty()) open_shard();  // an import without pairs still writes a valid (empty) shard
  close_shard();
  return summary_;
}

}  // namespace prefdiff::data
