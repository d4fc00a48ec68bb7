// Gradient all-reduce overlapped with the backward pass, in buckets, as PyTorch's DistributedDataParallel does
// it: parameters are grouped into buckets of about `bucket_mb` (the first one small, so that communication
// starts early), in reverse registration order at first and, after the first synchronised step, in the order
// their gradients arrived on rank 0. A post-accumulate-grad hook on every trainable parameter moves its
// gradient into its bucket; when every gradient of a bucket is in, the bucket's all-reduce is launched
// (asynchronously, strictly in bucket order on every rank so that the collectives match) while the backward
// pass goes on with the rest of the network. finish() launches what backward did not, waits, and divides by
// the world size: afterwards every p.grad() holds exactly what DataParallelGroup::all_reduce_mean computes
// after the backward (the mean over ranks).
//
// Gradients live in the bucket: a parameter's gradient becomes an alias of its slot in the bucket's flat buffer
// (same storage; not an autograd view, so optimizers may detach_() it) the first time it arrives in a step (one
// copy), later micro-steps accumulate into it in place (autograd's
// `grad += new`), and the all-reduce runs on the flat buffer with no copy in or out. A bucket's buffer is
// allocated when its first gradient arrives and belongs to the gradients afterwards, so the memory profile is
// autograd's own (no second set of gradient-sized buffers, nothing held between steps once the optimizer's
// zero_grad() drops the gradients). See docs/performance.md ("Gradient all-reduce overlapped with backward").
//
// Use, per optimizer step (grad accumulation over M micro-steps):
//   for (m = 0; m < M; ++m) { buckets.prepare(/*sync=*/m + 1 == M); <forward>; <backward>; }
//   buckets.finish();   // before any other collective of this group in this step
//   <clip, optimizer step, zero_grad>
// A micro-step whose forward or backward throws still needs finish(): it launches the buckets this rank has
// not launched, so the collectives of every rank match and nobody hangs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace prefdiff {

class DataParallelGroup;

struct GradientBucketOptions {
  double bucket_mb = 25.0;       // bucket size in MiB (DDP's bucket_cap_mb); a larger tensor gets its own bucket
  double first_bucket_mb = 1.0;  // the first bucket (the last layers' gradients): small, so the first
                                 // all-reduce starts as early as possible (DDP: 1 MiB)
  // After the first synchronised step, rebuild the buckets in the order gradients arrived on rank 0 (one
  // broadcast, once): launches then follow the backward's real order (a UNet registers its mid block after
  // the up blocks, but computes its gradients after them).
  bool rebuild_by_arrival = true;
  // A parameter that no rank gave a gradient in this step keeps an undefined .grad(), as in one process (the
  // optimizer skips it); one that only some ranks did gets the mean with zeros for the others (DDP's
  // find_unused_parameters). Costs one small all-reduce of a per-parameter count and one device-to-host copy
  // per step. false: every parameter missing a local gradient is treated as a zero contribution and ends with
  // a defined gradient (DDP's default assumption that every parameter is used).
  bool find_unused_parameters = true;
};

// One bucket of the current layout: parameter names in launch order and their element count.
struct GradientBucketInfo {
  std::vector<std::string> names;
  int64_t elements = 0;
  size_t bytes = 0;
};

class GradientBuckets {
 public:
  // Hooks every parameter that requires grad (others are not bucketed and left alone). The group must
  // outlive this object. A group without collectives (one process, see DataParallelGroup) makes this a
  // no-op: no hooks, prepare() and finish() return at once.
  GradientBuckets(DataParallelGroup& group, const std::vector<std::pair<std::string, at::Tensor>>& named_parameters,
                  const GradientBucketOptions& options = {});
  ~GradientBuckets();  // removes the hooks
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  // Before each micro-step's backward. sync = true on the last micro-step of an optimizer step: its backward
  // launches the all-reduces. sync = false accumulates locally without communication (DDP's no_sync()).
  void prepare(bool sync);
  // After the last micro-step's backward, before the gradients are read: launches every bucket not launched
  // yet (in order), waits for all, and leaves the mean over ranks in every p.grad(). Throws a
  // std::runtime_error naming the rank when a collective fails or times out.
  void finish();

  bool active() const;                          // false: one process without collectives (no hooks)
  std::vector<GradientBucketInfo> layout() const;  // the current buckets, in launch order
  // Of the last finish()ed step: buckets launched from the hooks during backward (overlapped), and by finish().
  size_t launched_during_backward() const;
  size_t launched_by_finish() const;
  bool rebuilt() const;  // whether the layout follows the arrival order yet

  struct State;  // LibTorch side (gradient_buckets.cpp)

 private:
  std::unique_ptr<State> state_;
};

}  // namespace prefdiff
