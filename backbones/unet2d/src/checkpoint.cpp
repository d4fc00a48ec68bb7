#include "prefdiff/unet2d/checkpoint.hpp"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>

#include <memory>
#include <optional>
#include <type_traits>

namespace prefdiff::unet2d {

namespace {

using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

struct AutocastState {
  bool cuda = false, cpu = false;
  at::ScalarType cuda_dtype = at::kHalf, cpu_dtype = at::kBFloat16;
  static AutocastState capture() {
    AutocastState s;
    s.cuda = at::autocast::is_autocast_enabled(at::kCUDA);
    s.cpu = at::autocast::is_autocast_enabled(at::kCPU);
    s.cuda_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
    s.cpu_dtype = at::autocast::get_autocast_dtype(at::kCPU);
    return s;
  }
  void apply() const {
    at::autocast::set_autocast_enabled(at::kCUDA, cuda);
    at::autocast::set_autocast_enabled(at::kCPU, cpu);
    at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype);
    at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype);
  }
};

struct CheckpointBackward;

// The forward's autocast and RNG state for the recomputation, and the caller's back afterwards, also when
// the recomputation throws.
class ReplayScope {
 public:
  explicit ReplayScope(const CheckpointBackward& node);
  ~ReplayScope();
  ReplayScope(const ReplayScope&) = delete;
  ReplayScope& operator=(const ReplayScope&) = delete;

 private:
  std::optional<at::Generator> gen_;  // a handle: copies share the generator
  AutocastState outer_autocast_;
  at::Tensor outer_rng_;
};

struct CheckpointBackward : public Node {
  TensorFn fn;
  std::vector<SavedVariable> saved_inputs;
  std::vector<at::Tensor> params;  // leaves, safe to hold directly
  size_t n_inputs = 0;
  AutocastState autocast;
  std::optional<at::Generator> gen;  // default generator of the inputs' device, when it was captured
  at::Tensor rng_state;

  std::string name() const override { return "prefdiff::CheckpointBackward"; }

  variable_list apply(variable_list&& grads) override {
    std::vector<at::Tensor> inputs;
    std::vector<at::Tensor> wrt;
    for (auto& sv : saved_inputs) {
      at::Tensor t = sv.unpack();
      if (!t.defined()) {
        inputs.emplace_back();
        continue;
      }
      at::Tensor d = t.detach();
      if (t.requires_grad()) d.requires_grad_(true);
      inputs.push_back(d);
    }
    std::vector<at::Tensor> outputs;
    {
      at::AutoGradMode enable(true);
      const ReplayScope replay(*this);
      outputs = fn(inputs);
    }
    // Differentiate only w.r.t. what requires grad; the rest gets an undefined gradient.
    std::vector<size_t> slot;
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].defined() && inputs[i].requires_grad()) wrt.push_back(inputs[i]), slot.push_back(i);
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].requires_grad()) wrt.push_back(params[i]), slot.push_back(n_inputs + i);
    std::vector<at::Tensor> outs, gouts;
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (outputs[i].requires_grad() && grads[i].defined()) {
        outs.push_back(outputs[i]);
        gouts.push_back(grads[i]);
      }
    }
    variable_list result(n_inputs + params.size());
    if (outs.empty() || wrt.empty()) return result;
    auto g = torch::autograd::grad(outs, wrt, gouts, /*retain_graph=*/false, /*create_graph=*/false,
                                   /*allow_unused=*/true);
    for (size_t i = 0; i < g.size(); ++i) result[slot[i]] = g[i];
    return result;
  }

  void release_variables() override {
    saved_inputs.clear();
    fn = nullptr;
  }
};

ReplayScope::ReplayScope(const CheckpointBackward& node) : gen_(node.gen), outer_autocast_(AutocastState::capture()) {
  node.autocast.apply();
  // A scope of its own, as `with torch.autocast(...)` around the recomputation: the weight casts it caches are
  // dropped when it ends. Backward usually runs outside any autocast scope (on CUDA on a device thread whose
  // cache nobody else clears): without this, those casts would stay cached, hold a 16-bit copy of every
  // weight between steps, and be reused after the optimizer changed the weights.
  at::autocast::increment_nesting();
  if (gen_) {
    std::lock_guard<std::mutex> lock(gen_->mutex());
    outer_rng_ = gen_->get_state();
    gen_->set_state(node.rng_state);
  }
}

ReplayScope::~ReplayScope() {
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (gen_) {
    std::lock_guard<std::mutex> lock(gen_->mutex());
    gen_->set_state(outer_rng_);
  }
  outer_autocast_.apply();
}

// LibTorch up to 2.11 owns autograd nodes through std::shared_ptr (set_history takes one); later versions
// through c10::intrusive_ptr. Detect which, so the backbone builds against the machine's PyTorch either way.
template <class N, class = void>
struct NodesAreShared : std::false_type {};
template <class N>
struct NodesAreShared<N, std::void_t<decltype(torch::autograd::set_history(
                             std::declval<at::Tensor&>(), std::declval<const std::shared_ptr<N>&>()))>>
    : std::true_type {};

template <class N>
auto make_node() {
  if constexpr (NodesAreShared<N>::value) {
    return std::make_shared<N>();
  } else {
    return c10::make_intrusive<N>();
  }
}

}  // namespace

std::vector<at::Tensor> checkpoint(TensorFn fn, const std::vector<at::Tensor>& inputs,
                                   const std::vector<at::Tensor>& params) {
  bool needs = at::GradMode::is_enabled() &&
               (std::any_of(inputs.begin(), inputs.end(), [](const at::Tensor& t) { return t.defined() && t.requires_grad(); }) ||
                std::any_of(params.begin(), params.end(), [](const at::Tensor& t) { return t.requires_grad(); }));
  if (!needs) return fn(inputs);

  auto node = make_node<CheckpointBackward>();
  node->autocast = AutocastState::capture();
  c10::Device dev = inputs.empty() ? c10::Device(at::kCPU) : inputs[0].device();
  if (dev.is_cpu() || dev.is_cuda()) {
    node->gen = at::globalContext().defaultGenerator(dev);
    std::lock_guard<std::mutex> lock(node->gen->mutex());
    node->rng_state = node->gen->get_state();
  }
  std::vector<at::Tensor> outputs;
  {
    at::NoGradGuard no_grad;
    outputs = fn(inputs);
  }
  std::vector<at::Tensor> all(inputs);
  all.insert(all.end(), params.begin(), params.end());
  node->set_next_edges(torch::autograd::collect_next_edges(all));
  for (const auto& t : inputs) node->saved_inputs.emplace_back(t, /*is_output=*/false);
  node->params = params;
  node->n_inputs = inputs.size();
  node->fn = std::move(fn);
  for (auto& out : outputs) torch::autograd::set_history(out, node);
  return outputs;
}

}  // namespace prefdiff::unet2d
