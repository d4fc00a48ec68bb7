// A data set made of many pair shards (files and globs), seen as one indexable list of pairs. This is the
// engine of the `hdf5-pairs` dataset source: it checks every shard at open, checks that all shards agree
// (attributes, layout, unique pair ids), describes the tensors and fills read requests.
#ifndef PREFDIFF_DATA_SHARD_SET_HPP
#define PREFDIFF_DATA_SHARD_SET_HPP

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "prefdiff/data/shard_file.hpp"
#include "prefdiff/dataset_sdk.hpp"

namespace prefdiff::data {

// Expands files and glob patterns (with {a,b} braces) to a sorted, de-duplicated list of files. A pattern
// that matches nothing is an error naming it.
std::vector<std::string> expand_shard_patterns(const std::vector<std::string>& patterns);

class ShardSet {
 public:
  explicit ShardSet(const std::vector<std::string>& patterns);
  ~ShardSet();

  const prefdiff::sdk::DatasetInfo& info() const;
  size_t shard_count() const;
  ShardFile& shard(size_t i);
  // The shard and row of a global pair index.
  std::pair<size_t, uint64_t> locate(uint64_t index) const;
  // Fills a checked request (see dataset_sdk.hpp). Not thread-safe: one reader at a time.
  void read(const prefdiff::sdk::ReadRequest& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_SHARD_SET_HPP
