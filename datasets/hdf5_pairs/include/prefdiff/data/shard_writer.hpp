// Writes one pair shard (format in shard_format.hpp / docs/data-format.md). Rows are appended; the file
// is written under "<path>.partial" and renamed into place by close(), so a crashed import never leaves
// a file that looks complete.
#ifndef PREFDIFF_DATA_SHARD_WRITER_HPP
#define PREFDIFF_DATA_SHARD_WRITER_HPP

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "prefdiff/data/shard_format.hpp"

namespace prefdiff::data {

// One pair, winner first. Pointers hold one row each in the layout's dtypes.
struct PairRecord {
  uint64_t pair_id = 0;
  int64_t prompt = -1;                  // a row returned by ShardWriter::add_prompt
  const void* latent_w = nullptr;       // C*h*w values of layout.latent_dtype
  const void* latent_l = nullptr;
  const void* latent_w_std = nullptr;   // required when layout.latent_std
  const void* latent_l_std = nullptr;
  const float* time_ids = nullptr;      // 12 values (winner row, loser row) when layout.time_ids
  std::vector<double> meta;             // layout.meta_columns order
  std::vector<std::string> text;        // layout.text_columns order
};

class ShardWriter {
 public:
  ShardWriter(const std::string& path, const ShardAttributes& attributes, const ShardLayout& layout);
  ~ShardWriter();  // without close(): removes the partial file
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Row of the prompt with this caption, or -1 if it was not added yet.
  int64_t find_prompt(const std::string& text) const;
  // Adds a prompt (embeds: tokens*dim f16; pooled: pooled_dim f16 or null when the layout has none)
  // and returns its row; an identical caption returns the existing row (prompt table dedup).
  int64_t add_prompt(const std::string& text, const uint16_t* embeds, const uint16_t* pooled);
  void add_pair(const PairRecord& pair);
  // Writes attributes and the empty-prompt row, closes, renames into place. The empty prompt ("")
  // must have been added: caption dropout needs it.
  void close();

  uint64_t pair_count() const;
  int64_t prompt_count() const;
  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_SHARD_WRITER_HPP
