#include "prefdiff/torch_host/distributed.hpp"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef PREFDIFF_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "distributed_impl.hpp"
#include "prefdiff/host/host_services.hpp"

namespace prefdiff {

namespace {

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return (value != nullptr && *value != '\0') ? value : nullptr;
}

int env_int(const char* name, int fallback) {
  const char* value = env(name);
  if (value == nullptr) return fallback;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (*end != '\0' || parsed < 0 || parsed > (1 << 30))
    throw std::runtime_error(std::string("environment variable ") + name + "='" + value +
                             "' is not a non-negative integer");
  return static_cast<int>(parsed);
}

// Slurm's SLURM_TASKS_PER_NODE lists counts per node group, e.g. "4(x2)" or "2,1"; this node's count is
// the leading one when every node runs the same number (the usual data-parallel layout).
int slurm_tasks_per_node() {
  if (env("SLURM_NTASKS_PER_NODE") != nullptr) return env_int("SLURM_NTASKS_PER_NODE", 1);
  const char* text = env("SLURM_TASKS_PER_NODE");
  if (text == nullptr) return 1;
  char* end = nullptr;
  const long count = std::strtol(text, &end, 10);
  if (end == text || count < 1 || (*end != '\0' && *end != '(' && *end != ','))
    throw std::runtime_error(std::string("environment variable SLURM_TASKS_PER_NODE='") + text +
                             "' is not a Slurm task count like 4 or 4(x2); HINT: set SLURM_NTASKS_PER_NODE");
  return static_cast<int>(count);
}

}  // namespace

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv e;
  if (env("WORLD_SIZE") != nullptr || env("RANK") != nullptr) {
    e.launcher = "torchrun";
    if (env("WORLD_SIZE") == nullptr || env("RANK") == nullptr)
      throw std::runtime_error("set both RANK and WORLD_SIZE (torchrun-style launch), or neither");
    e.rank = env_int("RANK", 0);
    e.world_size = env_int("WORLD_SIZE", 1);
    e.local_rank = env_int("LOCAL_RANK", e.rank);
    e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size);
  } else if (env("SLURM_PROCID") != nullptr && env("SLURM_NTASKS") != nullptr) {
    e.launcher = "slurm";
    e.rank = env_int("SLURM_PROCID", 0);
    e.world_size = env_int("SLURM_NTASKS", 1);
    e.local_rank = env_int("SLURM_LOCALID", 0);
    e.local_world_size = slurm_tasks_per_node();
  }
  if (e.world_size < 1) throw std::runtime_error("WORLD_SIZE must be at least 1");
  if (e.rank >= e.world_size)
    throw std::runtime_error("rank " + std::to_string(e.rank) + " is not below the world size " +
                             std::to_string(e.world_size));
  if (const char* addr = env("MASTER_ADDR")) e.master_addr = addr;
  e.master_port = env_int("MASTER_PORT", e.master_port);
  if (e.master_port < 1 || e.master_port > 65535)
    throw std::runtime_error("environment variable MASTER_PORT=" + std::to_string(e.master_port) +
                             " is not a TCP port; HINT: use a free port in 1..65535, e.g. 29500");
  if (e.world_size > 1 && e.launcher == "slurm" && env("MASTER_ADDR") == nullptr)
    throw std::runtime_error("under Slurm set MASTER_ADDR (e.g. the first host of $SLURM_JOB_NODELIST) and MASTER_PORT");
  return e;
}

DataParallelGroup::DataParallelGroup(const DistributedEnv& env_in, const std::string& backend, double timeout_s,
                                     bool one_rank_collectives)
    : env_(env_in), impl_(std::make_unique<Impl>()) {
  backend_ = backend == "auto" ? (torch::cuda::is_available() ? "nccl" : "gloo") : backend;
  if (backend_ != "gloo" && backend_ != "nccl")
    throw std::runtime_error("unknown distributed backend '" + backend + "' (use gloo, nccl or auto)");
  if (backend_ == "nccl") {
#ifndef PREFDIFF_WITH_NCCL
    throw std::runtime_error("backend 'nccl' needs a CUDA build of prefdiff with NCCL; this build has none (use gloo)");
#else
    if (!torch::cuda::is_available()) throw std::runtime_error("backend 'nccl' needs a GPU; none is visible (use gloo)");
    impl_->device = torch::Device(torch::kCUDA, env_.local_rank % static_cast<int>(torch::cuda::device_count()));
#endif
  }
  if (env_.world_size == 1 && !one_rank_collectives) return;  // nothing to talk to

  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000.0));
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(env_.master_port);
  store_options.isServer = env_.rank == 0;
  store_options.numWorkers = env_.world_size;
  store_options.waitWorkers = true;
  store_options.timeout = timeout;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, store_options);
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(env_.rank) + " could not reach the rendezvous at " +
                             env_.master_addr + ":" + std::to_string(env_.master_port) + " within " +
                             std::to_string(timeout_s) + " s: " + e.what());
  }
  if (backend_ == "gloo") {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(env_.master_addr));
    impl_->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env_.rank, env_.world_size, options);
  } else {
#ifdef PREFDIFF_WITH_NCCL
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    impl_->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env_.rank, env_.world_size, options);
#endif
  }
}

DataParallelGroup::~DataParallelGroup() {
  set_host_group(0, 1, nullptr);  // plugins must not call into a group that is gone
}

bool DataParallelGroup::has_collectives() const { return impl_->backend != nullptr; }

void DataParallelGroup::all_reduce_sum(double* values, size_t count) {
  if (env_.world_size == 1 || count == 0) return;
  auto host = torch::from_blob(values, {static_cast<int64_t>(count)}, torch::kFloat64);
  std::vector<at::Tensor> tensors{impl_->device.is_cpu() ? host : host.to(impl_->device)};
  try {
    impl_->backend->allreduce(tensors)->wait();
  } catch (const std::exception& e) {
    throw std::runtime_error("all-reduce across " + std::to_string(env_.world_size) + " ranks failed on rank " +
                             std::to_string(env_.rank) + " (a rank died or timed out?): " + e.what());
  }
  if (!impl_->device.is_cpu()) host.copy_(tensors[0].cpu());
}

void DataParallelGroup::all_reduce_mean(std::vector<at::Tensor>& tensors, int64_t bucket_elements) {
  if (env_.world_size == 1 || tensors.empty()) return;
  size_t begin = 0;
  while (begin < tensors.size()) {
    // One bucket: consecutive tensors of one dtype up to the size limit (at least one tensor).
    size_t end = begin;
    int64_t elements = 0;
    while (end < tensors.size() && tensors[end].scalar_type() == tensors[begin].scalar_type() &&
           (end == begin || elements + tensors[end].numel() <= bucket_elements)) {
      elements += tensors[end].numel();
      ++end;
    }
    std::vector<at::Tensor> views;
    for (size_t i = begin; i < end; ++i) views.push_back(tensors[i].reshape({-1}));
    std::vector<at::Tensor> flat{torch::cat(views)};
    try {
      impl_->backend->allreduce(flat)->wait();
    } catch (const std::exception& e) {
      throw std::runtime_error("gradient all-reduce across " + std::to_string(env_.world_size) +
                               " ranks failed on rank " + std::to_string(env_.rank) +
                               " (a rank died or timed out?): " + e.what());
    }
    flat[0].div_(static_cast<double>(env_.world_size));
    int64_t offset = 0;
    for (size_t i = begin; i < end; ++i) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(flat[0].narrow(0, offset, n).view_as(tensors[i]));
      offset += n;
    }
    begin = end;
  }
}

void DataParallelGroup::broadcast(std::string& bytes, int root) {
  if (env_.world_size == 1) return;
  auto run = [&](at::Tensor tensor) {
    std::vector<at::Tensor> tensors{impl_->device.is_cpu() ? tensor : tensor.to(impl_->device)};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    try {
      impl_->backend->broadcast(tensors, options)->wait();
    } catch (const std::exception& e) {
      throw std::runtime_error("broadcast from rank " + std::to_string(root) + " across " + std::to_string(env_.world_size) +
                               " ranks failed on rank " + std::to_string(env_.rank) + " (a rank died or timed out?): " +
                               e.what());
    }
    return tensors[0].cpu();
  };
  const at::Tensor size = run(torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kInt64));
  bytes.resize(static_cast<size_t>(size.item<int64_t>()));
  if (bytes.empty()) return;
  const at::Tensor data = run(torch::from_blob(bytes.data(), {static_cast<int64_t>(bytes.size())}, torch::kUInt8).clone());
  std::memcpy(bytes.data(), data.data_ptr<uint8_t>(), bytes.size());
}

void DataParallelGroup::barrier() {
  if (env_.world_size == 1) return;
  double token = 0.0;
  all_reduce_sum(&token, 1);  // an all-reduce is a barrier, and it honours the same timeout
}

void DataParallelGroup::install_as_host_group() {
  set_host_group(env_.rank, env_.world_size, [this](double* values, size_t count) { all_reduce_sum(values, count); });
}

}  // namespace prefdiff
