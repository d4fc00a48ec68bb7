// One opened pair shard. open() checks everything that is cheap before any training read: attributes,
// presence, dtype, rank and shape of every dataset, prompt indices in range and pair ids unique. Pair ids,
// prompt indices and metadata columns are loaded at open; latents and embeddings are read by row.
#ifndef PREFDIFF_DATA_SHARD_FILE_HPP
#define PREFDIFF_DATA_SHARD_FILE_HPP

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "prefdiff/data/shard_format.hpp"

namespace prefdiff::data {

struct ShardInfo {
  std::string path;
  ShardAttributes attributes;
  ShardLayout layout;  // as found in the file
  uint64_t pair_count = 0;
  int64_t prompt_count = 0;
  int64_t empty_prompt = -1;
};

// Row tensors of a shard.
enum class ShardTensor { kLatentW, kLatentL, kLatentWStd, kLatentLStd, kTimeIds, kEmbeds, kPooled };

class ShardFile {
 public:
  // Opens and checks a shard; throws ShardError listing every problem found ("file: dataset: problem").
  static std::unique_ptr<ShardFile> open(const std::string& path);
  // Same checks, collecting problems instead of throwing; returns null when the file cannot be used.
  static std::unique_ptr<ShardFile> open(const std::string& path, std::vector<std::string>& problems);
  ~ShardFile();

  const ShardInfo& info() const;
  const std::vector<uint64_t>& pair_ids() const;
  const std::vector<int64_t>& prompts() const;                 // prompt row per pair, checked in range
  const std::vector<std::vector<double>>& meta() const;        // layout.meta_columns order, N values each
  size_t row_bytes(ShardTensor tensor) const;                  // bytes of one row in the stored dtype
  // Reads `rows` rows starting at `first` into `out` (pairs for latents/time ids, prompts for embeds/pooled).
  void read_rows(ShardTensor tensor, uint64_t first, uint64_t rows, void* out);
  // Strings: the prompt captions, or a /pairs/text column.
  std::vector<std::string> read_strings(const std::string& dataset, uint64_t first, uint64_t rows);

 private:
  ShardFile();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_SHARD_FILE_HPP
