// The LibTorch side of DataParallelGroup, shared by distributed.cpp and gradient_buckets.cpp (internal).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "prefdiff/torch_host/distributed.hpp"

namespace prefdiff {

struct DataParallelGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;  // null for a single process without one_rank_collectives
  c10::Device device = c10::Device(c10::kCPU);  // where collectives run: CPU (Gloo) or this rank's GPU (NCCL)
};

}  // namespace prefdiff
