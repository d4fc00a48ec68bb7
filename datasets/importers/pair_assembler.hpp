// Shared back end of the importers: encodes and writes pairs (winner first), de-duplicates captions per
// shard and pair ids over the whole import, rolls over to a new shard every shard_size pairs, and keeps
// the summary counts. The format-specific files decide which pairs exist and who won.
#ifndef PREFDIFF_DATA_PAIR_ASSEMBLER_HPP
#define PREFDIFF_DATA_PAIR_ASSEMBLER_HPP

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

  // Writes one pair unless its id was written before (then counts a duplicate). Returns false once
  // options.limit pairs were written, so the caller can stop reading.
  bool add(uint64_t pair_id, const std::string& caption, const ImageRef& winner, const ImageRef& loser, std::vector<double> meta,
           std::vector<std::string> text);
  bool full() const;
  // Call between groups: images are cached within a group (a ranked group shares images across pairs).
  void end_group();
  ImportSummary& summary() { return summary_; }
  ImportSummary finish();

 private:
  struct Encoded {
    std::vector<uint16_t> mean, std_dev;
    std::vector<float> time_ids;
  };
  void open_shard();
  void close_shard();
  const Encoded& image(const ImageRef& ref);
  int64_t prompt(const std::string& caption);

  std::string source_dataset_;
  PairEncoder& encoder_;
  ImportOptions options_;
  ShardLayout layout_;
  ShardAttributes attributes_;
  std::unique_ptr<ShardWriter> writer_;
  std::unordered_set<uint64_t> written_;
  std::unordered_map<std::string, Encoded> group_images_;
  std::unordered_set<std::string> captions_;
  std::vector<uint16_t> embeds_, pooled_;
  ImportSummary summary_;
};

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_PAIR_ASSEMBLER_HPP
