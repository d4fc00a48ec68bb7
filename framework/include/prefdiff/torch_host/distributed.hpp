// Data-parallel process groups over LibTorch's c10d (Gloo on CPU, NCCL on CUDA): an existing engine,
// not a home-made one. The header is free of LibTorch so most of the host need not include it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace prefdiff {

// Ranks as the standard launchers set them: torchrun-style RANK/WORLD_SIZE/LOCAL_RANK/
// LOCAL_WORLD_SIZE/MASTER_ADDR/MASTER_PORT, or Slurm's SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID
// (MASTER_ADDR/MASTER_PORT still name the rendezvous). Neither: a single process.
struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string launcher = "single";  // "single", "torchrun" or "slurm"

  // Throws std::runtime_error naming the variable when a value is missing, not a number or inconsistent.
  static DistributedEnv from_environment();
};

class DataParallelGroup {
 public:
  // backend: "gloo", "nccl" or "auto" (nccl when CUDA is available, else gloo). A single process needs
  // no rendezvous; otherwise rank 0 hosts a TCP store at master_addr:master_port. `timeout_s` bounds
  // every collective: a dead or stuck rank ends the others with an error instead of a hang.
  // `one_rank_collectives`: a single process still builds its backend (a one-rank store and group), so that
  // what the collectives themselves cost can be measured with one GPU (bench/device); otherwise a single
  // process has no backend and every collective returns at once.
  DataParallelGroup(const DistributedEnv& env, const std::string& backend, double timeout_s,
                    bool one_rank_collectives = false);
  ~DataParallelGroup();
  DataParallelGroup(const DataParallelGroup&) = delete;
  DataParallelGroup& operator=(const DataParallelGroup&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  const std::string& backend() const { return backend_; }
  // Whether collectives reach a backend (several ranks, or one with one_rank_collectives).
  bool has_collectives() const;

  // In-place sum over all ranks (host doubles; staged through the device for NCCL).
  void all_reduce_sum(double* values, size_t count);
  void barrier();
  // Rank `root`'s bytes (a path, a message, a serialized state) on every rank: a c10d broadcast of the
  // size, then of the bytes.
  void broadcast(std::string& bytes, int root = 0);
  // Averages tensors (gradients) over all ranks in place, packed into flat buckets of at most
  // `bucket_elements` values per collective (fewer, larger messages than one per tensor).
  void all_reduce_mean(std::vector<at::Tensor>& tensors, int64_t bucket_elements);

  // Makes this group the one plugins reach through the host's all_reduce_sum service.
  void install_as_host_group();

  struct Impl;  // LibTorch side (distributed_impl.hpp); GradientBuckets reaches the c10d group through it
  Impl& impl() { return *impl_; }

 private:
  DistributedEnv env_;
  std::string backend_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace prefdiff
