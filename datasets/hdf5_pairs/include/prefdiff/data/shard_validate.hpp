// Full integrity check of pair shards (`prefdiff data validate`): everything ShardFile::open checks,
// plus every stored value read back (finite latents, embeddings, time ids and metadata, non-negative
// std, readable captions, the empty prompt really empty), plus cross-shard agreement and pair id
// uniqueness over the whole set.
#ifndef PREFDIFF_DATA_SHARD_VALIDATE_HPP
#define PREFDIFF_DATA_SHARD_VALIDATE_HPP

#include <cstdint>
#include <string>
#include <vector>

namespace prefdiff::data {

struct ShardReport {
  std::string path;
  uint64_t pairs = 0;
  int64_t prompts = 0;
  std::vector<std::string> problems;  // "file: dataset: problem"
};

struct ValidationReport {
  std::vector<ShardReport> shards;
  std::vector<std::string> problems;  // set-level: empty globs, shards that disagree, duplicate pair ids
  bool ok() const;
  size_t problem_count() const;
};

ShardReport validate_shard(const std::string& path);
ValidationReport validate_shards(const std::vector<std::string>& patterns);

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_SHARD_VALIDATE_HPP
