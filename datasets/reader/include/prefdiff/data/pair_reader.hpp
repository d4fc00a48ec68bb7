// The host's reader over a dataset source: seeded shuffle per epoch, disjoint sharding across data-parallel
// ranks, caption dropout to the empty prompt, optional latent sampling from the stored std, label flips from
// a FlipTable, and a background prefetch thread with a bounded queue. Every random choice is a pure function
// of (seed, epoch, pair id or position), so a resumed run reads exactly what the uninterrupted one would.
#ifndef PREFDIFF_DATA_PAIR_READER_HPP
#define PREFDIFF_DATA_PAIR_READER_HPP

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "prefdiff/data/flip_table.hpp"
#include "prefdiff/instance/data_source.hpp"

namespace prefdiff::data {

struct ReaderOptions {
  uint64_t seed = 0;
  int32_t rank = 0;
  int32_t world_size = 1;
  uint64_t batch_size = 8;        // pairs per rank per batch
  bool shuffle = true;
  bool drop_last = true;          // every rank gets the same number of full batches (training)
  uint64_t prefetch = 4;          // batches read ahead by the background thread; 0 reads in next()
  double caption_dropout = 0.0;   // probability per pair and epoch of the empty prompt (0.2 in Diffusion-DPO)
  bool sample_latents = false;    // latent = mean + std * N(0, 1); needs latent_w_std / latent_l_std
  std::vector<std::string> tensors;  // empty: every tensor the source serves except the std tensors
  const FlipTable* flips = nullptr;  // label noise; must outlive the reader
};

struct HostTensor {
  std::string name;
  pd_dtype dtype = PD_DTYPE_F32;
  std::vector<int64_t> shape;  // with the leading batch axis
  std::vector<uint8_t> data;
  size_t row_bytes = 0;

  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data.data()); }
  template <typename T>
  T* as() { return reinterpret_cast<T*>(data.data()); }
};

struct PairBatch {
  uint64_t epoch = 0;
  uint64_t index = 0;                  // batch number within the epoch on this rank
  std::vector<uint64_t> indices;       // data set indices of the pairs
  std::vector<uint64_t> pair_ids;
  std::vector<uint8_t> flipped;        // 1: the noise injector swapped winner and loser of this pair
  std::vector<uint8_t> caption_dropped;
  std::vector<HostTensor> tensors;

  size_t size() const { return indices.size(); }
  const HostTensor& tensor(const std::string& name) const;  // throws naming the available tensors
  bool has(const std::string& name) const;
  double flip_fraction() const;
};

class PairReader {
 public:
  PairReader(instance::DataSource& source, ReaderOptions options);
  ~PairReader();
  PairReader(const PairReader&) = delete;
  PairReader& operator=(const PairReader&) = delete;

  uint64_t pair_count() const;
  uint64_t batches_per_epoch() const;
  // This rank's data set indices for `epoch`, in reading order.
  std::vector<uint64_t> epoch_indices(uint64_t epoch) const;
  // Starts reading `epoch` at batch `first_batch` (0, or the resume point); stops any earlier epoch.
  void start(uint64_t epoch, uint64_t first_batch = 0);
  // The next batch of the started epoch; false when it is done. Rethrows a read error from the worker.
  bool next(PairBatch& batch);
  // Seconds next() spent waiting for data since construction (the trainer's data-wait metric).
  double wait_seconds() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_PAIR_READER_HPP
