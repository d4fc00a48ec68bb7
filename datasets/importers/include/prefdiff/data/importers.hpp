// Importers from public preference data sets into pair shards. Each owns its format's pair logic; the
// shared rules: ties are dropped (and counted), the winner is written first, pair ids are stable hashes
// of the source record (independent of which image won), captions are de-duplicated into the prompt
// table, and useful source columns are kept as metadata (margin, ranks, annotator, generator names).
#ifndef PREFDIFF_DATA_IMPORTERS_HPP
#define PREFDIFF_DATA_IMPORTERS_HPP

#include <cstdint>
#include <string>
#include <vector>

#include "prefdiff/data/encoder.hpp"

namespace prefdiff::data {

struct ImportOptions {
  std::string output;            // shard path; with shard_size > 0, "<stem>-00000.h5", "<stem>-00001.h5", ...
  std::string split = "train";   // recorded as source_split
  uint64_t shard_size = 0;       // pairs per shard, 0 = one shard
  uint64_t limit = 0;            // stop after this many pairs, 0 = all
  std::string images_root;       // prepended to relative image paths given to the encoder
  std::string writer = "prefdiff data import";
};

struct ImportSummary {
  std::string format;
  std::string input;
  std::vector<std::string> outputs;
  uint64_t records = 0;           // source records read
  uint64_t prompts = 0;           // prompt groups (records with a caption and images)
  uint64_t distinct_prompts = 0;  // distinct captions written (the empty prompt not counted)
  uint64_t strict_pairs = 0;      // pairs written
  uint64_t ties = 0;              // pairs dropped as ties
  uint64_t duplicates = 0;        // pairs dropped because their pair id was already written
  uint64_t skipped = 0;           // records dropped by format rules (e.g. Pick-a-Pic has_label = false)
  std::vector<std::string> notes; // why records were skipped, with counts
  std::string to_string() const;
};

// ImageReward rankings JSON: [{"id", "prompt", "generations": [paths], "ranking": [ints]}], lower rank
// better, equal ranks are ties; every strict pair of a group is written.
ImportSummary import_imagereward(const std::string& input, PairEncoder& encoder, const ImportOptions& options);

// HPDv2 JSON: train.json ({"prompt", "file_path": [...], "human_preference": [...]}, higher preferred) or
// test.json ({"prompt", "image_path": [...], "rank": [...]}, lower better); the record decides.
ImportSummary import_hpdv2(const std::string& input, PairEncoder& encoder, const ImportOptions& options);

// Pick-a-Pic v2 as JSON lines, one row per line (datasets/importers/pickapic_to_jsonl.py converts the
// parquet files with pyarrow). Rows without a label or with identical images are skipped, ties
// (label_0 not in {0, 1}) dropped.
ImportSummary import_pickapic_jsonl(const std::string& input, PairEncoder& encoder, const ImportOptions& options);
// Parquet: runs the converter with `python` (a Python with pyarrow), then imports its JSON lines.
ImportSummary import_pickapic_parquet(const std::vector<std::string>& inputs, const std::string& python,
                                      PairEncoder& encoder, const ImportOptions& options);

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_IMPORTERS_HPP
