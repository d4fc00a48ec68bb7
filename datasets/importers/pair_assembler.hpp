// Shared back end of the importers: queues pairs (winner first), encodes them a batch at a time (the
// distinct images and captions of the batch in one encoder call each), writes them, de-duplicates captions
// per shard and pair ids over the whole import, rolls over to a new shard every shard_size pairs, skips the
// pairs of unreadable images (listed in the report; fatal with --strict), resumes after an interruption
// and keeps the summary counts. The format-specific files decide which pairs exist and who won.
#ifndef PREFDIFF_DATA_PAIR_ASSEMBLER_HPP
#define PREFDIFF_DATA_PAIR_ASSEMBLER_HPP

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "prefdiff/data/encoder.hpp"
#include "prefdiff/data/importers.hpp"
#include "prefdiff/data/shard_writer.hpp"

namespace prefdiff::data {

// Strict pairs of a ranked group: indices (winner, loser) for every i < j with different scores.
struct RankedPair {
  size_t winner;
  size_t loser;
};
// Lower or higher score wins as `lower_is_better` says; equal scores are ties (counted in `ties`).
std::vector<RankedPair> expand_group(const std::vector<double>& scores, bool lower_is_better, uint64_t& ties);

class PairAssembler {
 public:
  PairAssembler(std::string format, std::string input, std::string source_dataset, PairEncoder& encoder, const ImportOptions& options,
                std::vector<std::string> meta_columns, std::vector<std::string> text_columns);
  ~PairAssembler();

  // Queues one pair unless its id was queued before (then counts a duplicate) or a finished shard of an
  // earlier run holds it. Returns false once options.limit pairs were queued, so the caller can stop.
  bool add(uint64_t pair_id, const std::string& caption, const ImageRef& winner, const ImageRef& loser, std::vector<double> meta,
           std::vector<std::string> text);
  bool full() const;
  // Call between groups: images are cached within a group (a ranked group shares images across pairs).
  void end_group();
  ImportSummary& summary() { return summary_; }
  // Encodes and writes what is queued, closes the last shard, writes the report.
  ImportSummary finish();

 private:
  struct Encoded {
    std::vector<uint16_t> mean, std_dev;
    std::vector<float> time_ids;
    bool failed = false;
  };
  struct Pending {
    uint64_t pair_id;
    std::string caption;
    ImageRef winner, loser;  // paths resolved against images_root; bytes copied into `bytes`
    std::vector<uint8_t> winner_bytes, loser_bytes;
    std::vector<double> meta;
    std::vector<std::string> text;
  };
  struct Prompt {
    std::vector<uint16_t> embeds, pooled;
  };

  std::string shard_path(size_t index) const;
  void resume_existing_shards();
  void open_shard();
  void close_shard();
  void flush();
  void encode_pending_images();
  void encode_pending_prompts();
  int64_t prompt_row(const std::string& caption);
  void write_pair(const Pending& pair);
  void report_progress(bool final_line);
  void write_report();

  std::string source_dataset_;
  PairEncoder& encoder_;
  ImportOptions options_;
  ShardLayout layout_;
  ShardAttributes attributes_;
  std::unique_ptr<ShardWriter> writer_;
  size_t next_shard_ = 0;
  std::unordered_set<uint64_t> written_;   // queued or written in this run
  std::unordered_set<uint64_t> finished_;  // in finished shards of an earlier run
  std::vector<Pending> pending_;
  std::unordered_map<std::string, Encoded> images_;  // this group's, and the current batch's
  bool group_ended_ = false;
  std::unordered_map<std::string, Prompt> prompts_;  // the current batch's captions
  std::unordered_set<std::string> captions_;         // distinct captions written
  std::vector<ImageFailure> failures_;
  std::vector<std::string> truncated_;
  std::unordered_set<std::string> truncated_seen_;
  uint64_t images_encoded_ = 0;
  std::chrono::steady_clock::time_point started_, last_progress_;
  ImportSummary summary_;
};

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_PAIR_ASSEMBLER_HPP
