#include "pair_assembler.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "json_input.hpp"
#include "prefdiff/data/shard_file.hpp"

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
  if (images_failed > 0 || bad_image_pairs > 0)
    out << "  unreadable images:   " << images_failed << " (" << bad_image_pairs << " pairs dropped; listed in the report)\n";
  if (captions_truncated > 0)
    out << "  captions truncated:  " << captions_truncated << " (longer than the text encoder's context; listed in the report)\n";
  if (resumed_shards > 0)
    out << "  resumed:             " << resumed_shards << " finished shard(s) of an earlier run kept (" << resumed_pairs << " pairs)\n";
  for (const std::string& o : outputs) out << "  wrote " << o << "\n";
  if (!report.empty()) out << "  report " << report << "\n";
  return out.str();
}

namespace {

std::string stem_of(const std::string& output) {
  const size_t dot = output.rfind(".h5");
  return dot != std::string::npos && dot + 3 == output.size() ? output.substr(0, dot) : output;
}

// What must agree between a finished shard of an earlier run and this import for the two to be one data set.
std::vector<std::string> attribute_differences(const ShardAttributes& have, const ShardAttributes& want) {
  std::vector<std::string> out;
  auto differ = [&](const char* name, const std::string& a, const std::string& b) {
    if (a != b) out.push_back(std::string(name) + " '" + a + "' (this import: '" + b + "')");
  };
  differ("backbone_family", have.backbone_family, want.backbone_family);
  differ("latent_shape", shape_string(have.latent_shape), shape_string(want.latent_shape));
  differ("vae_id", have.vae_id, want.vae_id);
  differ("text_encoder_id", have.text_encoder_id, want.text_encoder_id);
  differ("text_encoder_2_id", have.text_encoder_2_id, want.text_encoder_2_id);
  differ("encoder", have.encoder, want.encoder);
  differ("source_dataset", have.source_dataset, want.source_dataset);
  differ("source_split", have.source_split, want.source_split);
  return out;
}

std::string format_seconds(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  char buffer[32];
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buffer, sizeof buffer, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else
    std::snprintf(buffer, sizeof buffer, "%ldm%02lds", t / 60, t % 60);
  return buffer;
}

}  // namespace

PairAssembler::PairAssembler(std::string format, std::string input, std::string source_dataset, PairEncoder& encoder,
                             const ImportOptions& options, std::vector<std::string> meta_columns, std::vector<std::string> text_columns)
    : source_dataset_(std::move(source_dataset)), encoder_(encoder), options_(options) {
  if (options_.output.empty()) throw std::invalid_argument(format + " import: no output shard path given (--output)");
  if (options_.batch_pairs == 0) options_.batch_pairs = 1;
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
  summary_.format = std::move(format);
  summary_.input = std::move(input);
  summary_.report = stem_of(options_.output) + ".import-report.txt";
  resume_existing_shards();
  started_ = last_progress_ = std::chrono::steady_clock::now();
}

PairAssembler::~PairAssembler() = default;

std::string PairAssembler::shard_path(size_t index) const {
  if (options_.shard_size == 0) return options_.output;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "-%05zu.h5", index);
  return stem_of(options_.output) + suffix;
}

void PairAssembler::resume_existing_shards() {
  namespace fs = std::filesystem;
  if (options_.shard_size == 0) {
    if (fs::exists(options_.output))
      throw ImportError(options_.output + " already exists; an import never overwrites a shard. HINT: remove it, choose another "
                        "--output, or import with --shard-size N, which resumes an interrupted import where it stopped");
    return;
  }
  // Shards are renamed into place only when complete, so every <stem>-NNNNN.h5 present is a finished one.
  for (size_t index = 0; fs::exists(shard_path(index)); ++index) {
    const std::string path = shard_path(index);
    std::unique_ptr<ShardFile> shard = ShardFile::open(path);
    const std::vector<std::string> differences = attribute_differences(shard->info().attributes, attributes_);
    if (!differences.empty()) {
      std::string message = path + " is a finished shard of another import:";
      for (const std::string& d : differences) message += "\n  " + d;
      throw ImportError(message + "\nHINT: resuming continues only the same import with the same model; choose another --output "
                                  "or move those shards away");
    }
    for (uint64_t id : shard->pair_ids()) finished_.insert(id);
    summary_.outputs.push_back(path);
    ++summary_.resumed_shards;
    next_shard_ = index + 1;
  }
}

void PairAssembler::open_shard() {
  writer_ = std::make_unique<ShardWriter>(shard_path(next_shard_++), attributes_, layout_);
  prompt_row("");  // every shard carries the empty prompt for caption dropout
}

void PairAssembler::close_shard() {
  if (!writer_) return;
  writer_->close();
  summary_.outputs.push_back(writer_->path());
  writer_.reset();
}

bool PairAssembler::full() const {
  return options_.limit > 0 && summary_.strict_pairs + pending_.size() >= options_.limit;
}

bool PairAssembler::add(uint64_t pair_id, const std::string& caption, const ImageRef& winner, const ImageRef& loser,
                        std::vector<double> meta, std::vector<std::string> text) {
  if (full()) return false;
  if (finished_.count(pair_id) != 0) {
    // Written by the interrupted run; counted once (a ranked group can name a pair only once).
    if (written_.insert(pair_id).second) {
      ++summary_.resumed_pairs;
      ++summary_.strict_pairs;
      if (!caption.empty()) captions_.insert(caption);
    }
    return !full();
  }
  if (!written_.insert(pair_id).second) {
    ++summary_.duplicates;
    return true;
  }
  Pending p{pair_id, caption, winner, loser, {}, {}, std::move(meta), std::move(text)};
  for (ImageRef* ref : {&p.winner, &p.loser}) {
    if (!options_.images_root.empty() && !ref->path.empty() && ref->path[0] != '/') ref->path = options_.images_root + "/" + ref->path;
  }
  // The source's bytes (Pick-a-Pic rows) live only as long as its record: keep a copy until the batch is encoded.
  if (winner.bytes != nullptr) p.winner_bytes.assign(winner.bytes, winner.bytes + winner.size);
  if (loser.bytes != nullptr) p.loser_bytes.assign(loser.bytes, loser.bytes + loser.size);
  pending_.push_back(std::move(p));
  if (pending_.size() >= options_.batch_pairs || full()) flush();
  return !full();
}

void PairAssembler::end_group() { group_ended_ = true; }

void PairAssembler::encode_pending_images() {
  const EncoderSpec& spec = encoder_.spec();
  const size_t n = static_cast<size_t>(spec.latent_shape[0] * spec.latent_shape[1] * spec.latent_shape[2]);
  std::vector<ImageRef> batch;
  std::unordered_set<std::string> queued;
  for (Pending& p : pending_) {
    for (auto side : {std::make_pair(&p.winner, &p.winner_bytes), std::make_pair(&p.loser, &p.loser_bytes)}) {
      ImageRef& ref = *side.first;
      if (!side.second->empty()) {
        ref.bytes = side.second->data();
        ref.size = side.second->size();
      }
      if (images_.count(ref.key()) != 0 || !queued.insert(ref.key()).second) continue;
      batch.push_back(ref);
    }
  }
  if (batch.empty()) return;
  std::vector<uint16_t> means(batch.size() * n), stds(spec.latent_std ? batch.size() * n : 0);
  std::vector<float> time_ids(spec.time_ids ? batch.size() * 6 : 0);
  std::vector<std::optional<ImageFailure>> failures;
  encoder_.encode_images(batch, means.data(), spec.latent_std ? stds.data() : nullptr, spec.time_ids ? time_ids.data() : nullptr,
                         failures);
  for (size_t k = 0; k < batch.size(); ++k) {
    Encoded e;
    if (k < failures.size() && failures[k]) {
      if (options_.strict)
        throw ImportError(failures[k]->message + "\n(--strict: an unreadable image stops the import; without --strict its pairs are "
                                                 "skipped and listed in " + summary_.report + ")");
      e.failed = true;
      ++summary_.images_failed;
      failures_.push_back(*failures[k]);
    } else {
      e.mean.assign(means.begin() + k * n, means.begin() + (k + 1) * n);
      if (spec.latent_std) e.std_dev.assign(stds.begin() + k * n, stds.begin() + (k + 1) * n);
      if (spec.time_ids) e.time_ids.assign(time_ids.begin() + k * 6, time_ids.begin() + (k + 1) * 6);
    }
    images_.emplace(batch[k].key(), std::move(e));
  }
  images_encoded_ += batch.size();
}

void PairAssembler::encode_pending_prompts() {
  const EncoderSpec& spec = encoder_.spec();
  std::vector<std::string> batch;
  std::unordered_set<std::string> queued;
  // The empty caption too: a new shard opened in this batch needs its row.
  if (prompts_.count("") == 0 && queued.insert("").second) batch.push_back("");
  for (const Pending& p : pending_)
    if (prompts_.count(p.caption) == 0 && queued.insert(p.caption).second) batch.push_back(p.caption);
  if (batch.empty()) return;
  const size_t e = static_cast<size_t>(spec.embed_tokens * spec.embed_dim), q = static_cast<size_t>(spec.pooled_dim);
  std::vector<uint16_t> embeds(batch.size() * e), pooled(batch.size() * q);
  const std::vector<bool> truncated = encoder_.encode_prompts(batch, embeds.data(), q > 0 ? pooled.data() : nullptr);
  for (size_t k = 0; k < batch.size(); ++k) {
    Prompt prompt;
    prompt.embeds.assign(embeds.begin() + k * e, embeds.begin() + (k + 1) * e);
    if (q > 0) prompt.pooled.assign(pooled.begin() + k * q, pooled.begin() + (k + 1) * q);
    prompts_.emplace(batch[k], std::move(prompt));
    if (k < truncated.size() && truncated[k] && truncated_seen_.insert(batch[k]).second) {
      ++summary_.captions_truncated;
      truncated_.push_back(batch[k]);
    }
  }
}

int64_t PairAssembler::prompt_row(const std::string& caption) {
  const int64_t row = writer_->find_prompt(caption);
  if (row >= 0) return row;
  auto found = prompts_.find(caption);
  if (found == prompts_.end()) {  // the empty prompt of a shard opened outside a batch
    encode_pending_prompts();
    found = prompts_.find(caption);
  }
  if (!caption.empty() && captions_.insert(caption).second) ++summary_.distinct_prompts;
  return writer_->add_prompt(caption, found->second.embeds.data(), layout_.pooled_dim > 0 ? found->second.pooled.data() : nullptr);
}

void PairAssembler::write_pair(const Pending& pair) {
  const Encoded& w = images_.at(pair.winner.key());
  const Encoded& l = images_.at(pair.loser.key());
  if (w.failed || l.failed) {
    ++summary_.bad_image_pairs;
    return;
  }
  if (!writer_) open_shard();
  PairRecord record;
  record.pair_id = pair.pair_id;
  record.prompt = prompt_row(pair.caption);
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
  record.meta = pair.meta;
  record.text = pair.text;
  writer_->add_pair(record);
  ++summary_.strict_pairs;
  if (options_.shard_size > 0 && writer_->pair_count() >= options_.shard_size) close_shard();
}

void PairAssembler::flush() {
  if (pending_.empty()) return;
  encode_pending_images();
  encode_pending_prompts();
  for (const Pending& p : pending_) write_pair(p);
  pending_.clear();
  prompts_.clear();
  // Images are kept while their group may still name them; once a group ended, drop the cache (the group
  // still open loses at most a few images, which a later batch encodes again).
  if (group_ended_) {
    images_.clear();
    group_ended_ = false;
  }
  if (options_.progress) report_progress(false);
}

void PairAssembler::report_progress(bool final_line) {
  const auto now = std::chrono::steady_clock::now();
  if (!final_line && now - last_progress_ < std::chrono::milliseconds(500)) return;
  last_progress_ = now;
  const double seconds = std::chrono::duration<double>(now - started_).count();
  const uint64_t done = summary_.strict_pairs - summary_.resumed_pairs + summary_.bad_image_pairs;
  const double images_per_s = seconds > 0 ? images_encoded_ / seconds : 0.0;
  std::ostringstream line;
  line << "\r" << summary_.strict_pairs << " pairs";
  if (options_.limit > 0) line << " of " << options_.limit;
  line << ", " << images_encoded_ << " images, " << static_cast<int64_t>(images_per_s * 10) / 10.0 << " images/s";
  if (options_.limit > 0 && done > 0) {
    const double remaining = static_cast<double>(options_.limit - std::min(options_.limit, summary_.strict_pairs));
    line << ", ETA " << format_seconds(remaining * seconds / static_cast<double>(done));
  } else {
    line << ", elapsed " << format_seconds(seconds);
  }
  if (summary_.images_failed > 0) line << ", " << summary_.images_failed << " unreadable";
  line << "   ";
  std::cerr << line.str() << (final_line ? "\n" : "") << std::flush;
}

void PairAssembler::write_report() {
  // Written next to the shards whenever something was skipped or cut, so nothing is dropped silently.
  if (failures_.empty() && truncated_.empty()) {
    summary_.report.clear();
    return;
  }
  const std::string partial = summary_.report + ".partial";
  {
    std::ofstream out(partial);
    out << "# prefdiff data import report: " << summary_.format << " import of " << summary_.input << "\n"
        << "# " << failures_.size() << " unreadable image(s) (their " << summary_.bad_image_pairs << " pair(s) were not written), "
        << truncated_.size() << " caption(s) truncated to the text encoder's context\n";
    if (!failures_.empty()) out << "\n[unreadable images]\t# kind\timage\tmessage\n";
    for (const ImageFailure& f : failures_) out << f.kind << "\t" << f.key << "\t" << f.message << "\n";
    if (!truncated_.empty()) out << "\n[truncated captions]\n";
    for (const std::string& caption : truncated_) out << caption << "\n";
    if (!out) throw ImportError("cannot write the import report " + partial + ". HINT: check the folder is writable");
  }
  if (std::rename(partial.c_str(), summary_.report.c_str()) != 0)
    throw ImportError("cannot rename " + partial + " to " + summary_.report);
}

ImportSummary PairAssembler::finish() {
  flush();
  // An import without pairs still writes a valid (empty) shard.
  if (!writer_ && summary_.outputs.empty()) open_shard();
  close_shard();
  write_report();
  if (options_.progress) report_progress(true);
  return summary_;
}

}  // namespace prefdiff::data
