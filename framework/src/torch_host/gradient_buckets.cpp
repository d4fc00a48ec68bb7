#include "prefdiff/torch_host/gradient_buckets.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>
#include <tuple>

#include <torch/torch.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "distributed_impl.hpp"

namespace prefdiff {

namespace {

struct Slot {
  std::string name;
  at::Tensor param;
  size_t bucket = 0;
  int64_t offset = 0;  // in elements, inside the bucket's flat buffer
  bool bound = false;  // this step: p.grad() is the view into the current bucket buffer
  bool ready = false;  // this step's synchronised backward delivered it
};

struct Bucket {
  std::vector<size_t> members;  // slot indices, in layout order
  int64_t elements = 0;
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);
  // Per step:
  at::Tensor flat;  // allocated at the first gradient of the step; then owned by the gradients (views)
  size_t pending = 0;
  c10::intrusive_ptr<c10d::Work> work;
  bool launched = false;
};

size_t mib(double value) { return static_cast<size_t>(std::max(0.0, value) * 1024.0 * 1024.0); }

}  // namespace

struct GradientBuckets::State {
  DataParallelGroup* group = nullptr;
  GradientBucketOptions options;
  std::vector<Slot> slots;      // registration order
  std::vector<Bucket> buckets;  // launch order
  std::mutex mutex;             // hooks may run on autograd device threads
  bool sync = false;
  size_t next_launch = 0;
  size_t launched_in_backward = 0, last_in_backward = 0, last_by_finish = 0;
  bool rebuilt = false;
  std::vector<size_t> arrival;  // slot indices in the order their first gradient arrived (until rebuilt)
  std::vector<bool> arrived;

  c10d::Backend& backend() { return *group->impl().backend; }

  // DDP's compute_bucket_assignment_by_size: walk `order`, one open bucket per (dtype, device); close it when it
  // reaches its size limit (the first bucket of each kind: first_bucket_mb).
  void assign(const std::vector<size_t>& order) {
    buckets.clear();
    std::map<std::tuple<int, int, int>, size_t> open;  // kind -> index in `buckets`
    std::map<std::tuple<int, int, int>, bool> had_first;
    for (size_t i : order) {
      const at::Tensor& p = slots[i].param;
      const auto kind = std::make_tuple(static_cast<int>(p.scalar_type()), static_cast<int>(p.device().type()),
                                        static_cast<int>(p.device().index()));
      auto it = open.find(kind);
      if (it == open.end()) {
        Bucket b;
        b.dtype = p.scalar_type();
        b.device = p.device();
        buckets.push_back(std::move(b));
        it = open.emplace(kind, buckets.size() - 1).first;
      }
      Bucket& b = buckets[it->second];
      slots[i].bucket = it->second;
      slots[i].offset = b.elements;
      b.members.push_back(i);
      b.elements += p.numel();
      const size_t limit = had_first[kind] ? mib(options.bucket_mb) : mib(options.first_bucket_mb);
      if (static_cast<size_t>(b.elements) * p.element_size() >= limit) {
        had_first[kind] = true;
        open.erase(it);
      }
    }
    // Buckets were appended when opened; with several kinds that is still the order of their first member.
  }

  // The parameter's slot in its bucket, with the parameter's own strides (channels-last weights keep their layout;
  // dense parameters span numel). Made with set_ rather than a view op: it shares the bucket's storage without
  // being an autograd view, so the optimizers' zero_grad() (detach_, then reset) works on it as on any gradient.
  at::Tensor view_of(const Slot& s) {
    Bucket& b = buckets[s.bucket];
    if (!b.flat.defined()) b.flat = at::empty({b.elements}, at::TensorOptions().dtype(b.dtype).device(b.device));
    at::Tensor slot = at::empty({0}, b.flat.options());
    slot.set_(b.flat.storage(), s.offset, s.param.sizes(), s.param.strides());
    return slot;
  }

  void on_gradient(size_t index) {
    std::lock_guard<std::mutex> lock(mutex);
    Slot& s = slots[index];
    at::Tensor& grad = s.param.mutable_grad();
    if (!grad.defined()) return;  // nothing accumulated (cannot happen after AccumulateGrad; be safe)
    if (!s.bound) {
      if (grad.is_sparse() || grad.layout() != at::kStrided)
        throw std::runtime_error("gradient buckets: parameter '" + s.name +
                                 "' has a sparse gradient; bucketed all-reduce needs dense gradients");
      // First gradient of this step (a bucket buffer is new each step, so even a gradient left from an
      // earlier step that zero_grad() did not reset is copied, i.e. accumulated as the grad already held it).
      at::Tensor view = view_of(s);
      view.copy_(grad);
      grad = view;  // autograd's tensor is released; later micro-steps accumulate into the bucket in place
      s.bound = true;
    }
    if (!rebuilt && !arrived[index]) {
      arrived[index] = true;
      arrival.push_back(index);
    }
    if (sync && !s.ready) {
      s.ready = true;
      Bucket& b = buckets[s.bucket];
      if (--b.pending == 0) {
        while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
          launch(buckets[next_launch]);
          ++next_launch;
          ++launched_in_backward;
        }
      }
    }
  }

  void launch(Bucket& b) {
    if (!b.flat.defined()) b.flat = at::empty({b.elements}, at::TensorOptions().dtype(b.dtype).device(b.device));
    for (size_t i : b.members)  // no local gradient: contribute zeros
      if (!slots[i].bound) b.flat.narrow(0, slots[i].offset, slots[i].param.numel()).zero_();
    std::vector<at::Tensor> tensors{b.flat};
    b.work = backend().allreduce(tensors);
    b.launched = true;
  }

  [[noreturn]] void fail(const std::string& what, const std::exception& e) {
    throw std::runtime_error("gradient all-reduce (" + what + ") across " + std::to_string(group->world_size()) +
                             " ranks failed on rank " + std::to_string(group->rank()) +
                             " (a rank died or timed out?): " + e.what());
  }

  // Rank 0's arrival order (parameters that never arrived there after it, in reverse registration order),
  // broadcast so that every rank builds the same layout.
  void rebuild() {
    std::vector<int64_t> order;
    std::vector<bool> seen(slots.size(), false);
    for (size_t i : arrival) order.push_back(static_cast<int64_t>(i)), seen[i] = true;
    for (size_t k = slots.size(); k-- > 0;)
      if (!seen[k]) order.push_back(static_cast<int64_t>(k));
    at::Tensor t = at::tensor(order, at::kLong).to(group->impl().device);
    std::vector<at::Tensor> tensors{t};
    try {
      backend().broadcast(tensors)->wait();
    } catch (const std::exception& e) {
      fail("bucket order broadcast", e);
    }
    const at::Tensor host = tensors[0].cpu();
    const int64_t* data = host.data_ptr<int64_t>();
    std::vector<size_t> layout(slots.size());
    for (size_t k = 0; k < slots.size(); ++k) layout[k] = static_cast<size_t>(data[k]);
    assign(layout);
    rebuilt = true;
    arrival.clear();
  }
};

namespace {

class BucketHook final : public torch::autograd::PostAccumulateGradHook {
 public:
  BucketHook(GradientBuckets::State* state, size_t index) : state_(state), index_(index) {}
  void operator()(const at::Tensor& /*param*/) override { state_->on_gradient(index_); }

 private:
  GradientBuckets::State* state_;
  size_t index_;
};

}  // namespace

GradientBuckets::GradientBuckets(DataParallelGroup& group,
                                 const std::vector<std::pair<std::string, at::Tensor>>& named_parameters,
                                 const GradientBucketOptions& options)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.group = &group;
  s.options = options;
  if (!(options.bucket_mb > 0) || !(options.first_bucket_mb > 0))
    throw std::invalid_argument("gradient buckets: bucket_mb and first_bucket_mb must be > 0 (got " +
                                std::to_string(options.bucket_mb) + " and " + std::to_string(options.first_bucket_mb) +
                                "); HINT: [distributed] bucket_mb = 25 is DDP's default");
  if (!group.has_collectives()) return;
  for (const auto& [name, p] : named_parameters) {
    if (!p.defined() || !p.requires_grad()) continue;
    if (!p.is_leaf())
      throw std::invalid_argument("gradient buckets: parameter '" + name + "' is not a leaf tensor");
    if (!p.is_non_overlapping_and_dense())
      throw std::invalid_argument("gradient buckets: parameter '" + name +
                                  "' is not dense (overlapping or strided storage); its gradient cannot be a bucket view");
    s.slots.push_back(Slot{name, p});
  }
  s.arrived.assign(s.slots.size(), false);
  std::vector<size_t> reverse(s.slots.size());
  for (size_t k = 0; k < reverse.size(); ++k) reverse[k] = reverse.size() - 1 - k;
  s.assign(reverse);
  s.rebuilt = !options.rebuild_by_arrival;
  for (size_t i = 0; i < s.slots.size(); ++i) {
    auto& hook = torch::autograd::impl::post_acc_grad_hooks(s.slots[i].param);
    if (hook)
      throw std::invalid_argument("gradient buckets: parameter '" + s.slots[i].name +
                                  "' already has a post-accumulate-grad hook (another GradientBuckets?)");
    torch::autograd::impl::set_post_acc_grad_hooks(s.slots[i].param, std::make_unique<BucketHook>(state_.get(), i));
  }
}

GradientBuckets::~GradientBuckets() {
  for (auto& slot : state_->slots) torch::autograd::impl::set_post_acc_grad_hooks(slot.param, nullptr);
}

bool GradientBuckets::active() const { return !state_->slots.empty(); }

void GradientBuckets::prepare(bool sync) {
  State& s = *state_;
  if (!active()) return;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.sync && s.next_launch > 0)
    throw std::logic_error("gradient buckets: prepare() after a synchronised backward already launched all-reduces; "
                           "call finish() first (one prepare(true) per optimizer step, on its last micro-step)");
  if (sync && !s.sync) {
    for (auto& b : s.buckets) b.pending = b.members.size();
    for (auto& slot : s.slots) slot.ready = false;
    s.next_launch = 0;
    s.launched_in_backward = 0;
  }
  s.sync = sync;
}

void GradientBuckets::finish() {
  State& s = *state_;
  if (!active()) return;
  std::unique_lock<std::mutex> lock(s.mutex);
  if (!s.sync) {  // no synchronised micro-step (e.g. it threw before its backward): reset as prepare(true) does
    for (auto& b : s.buckets) b.pending = b.members.size();
    s.next_launch = 0;
    s.launched_in_backward = 0;
  }
  const size_t by_finish_start = s.next_launch;
  try {
    for (; s.next_launch < s.buckets.size(); ++s.next_launch) s.launch(s.buckets[s.next_launch]);
  } catch (const std::exception& e) {
    s.fail("launch", e);
  }
  // Which parameters had a gradient on some rank: one count per parameter, summed over ranks.
  at::Tensor used;
  if (s.options.find_unused_parameters) {
    at::Tensor local = at::zeros({static_cast<int64_t>(s.slots.size())}, at::kFloat);
    float* u = local.data_ptr<float>();
    for (size_t i = 0; i < s.slots.size(); ++i) u[i] = s.slots[i].bound ? 1.0f : 0.0f;
    std::vector<at::Tensor> tensors{local.to(s.group->impl().device)};
    try {
      s.backend().allreduce(tensors)->wait();
    } catch (const std::exception& e) {
      s.fail("used-parameter counts", e);
    }
    used = tensors[0].cpu();
  }
  for (auto& b : s.buckets) {
    try {
      b.work->wait();
    } catch (const std::exception& e) {
      s.fail("bucket of " + std::to_string(b.elements) + " values", e);
    }
    if (s.group->world_size() > 1) b.flat.div_(static_cast<double>(s.group->world_size()));
  }
  const float* counts = used.defined() ? used.data_ptr<float>() : nullptr;
  for (size_t i = 0; i < s.slots.size(); ++i) {
    Slot& slot = s.slots[i];
    if (!slot.bound && (counts == nullptr || counts[i] > 0.0f)) slot.param.mutable_grad() = s.view_of(slot);
  }
  s.last_in_backward = s.launched_in_backward;
  s.last_by_finish = s.buckets.size() - by_finish_start;
  if (!s.rebuilt) s.rebuild();  // after the waits: every rank is here, in the same collective order
  for (auto& b : s.buckets) {
    b.flat = at::Tensor();  // the gradients own the storage now
    b.work.reset();
    b.launched = false;
    b.pending = b.members.size();
  }
  for (auto& slot : s.slots) slot.bound = slot.ready = false;
  s.sync = false;
  s.next_launch = 0;
  s.launched_in_backward = 0;
}

std::vector<GradientBucketInfo> GradientBuckets::layout() const {
  std::vector<GradientBucketInfo> out;
  for (const auto& b : state_->buckets) {
    GradientBucketInfo info;
    for (size_t i : b.members) info.names.push_back(state_->slots[i].name);
    info.elements = b.elements;
    info.bytes = static_cast<size_t>(b.elements) * c10::elementSize(b.dtype);
    out.push_back(std::move(info));
  }
  return out;
}

size_t GradientBuckets::launched_during_backward() const { return state_->last_in_backward; }
size_t GradientBuckets::launched_by_finish() const { return state_->last_by_finish; }
bool GradientBuckets::rebuilt() const { return state_->rebuilt; }

}  // namespace prefdiff
