// AdamW: LibTorch's torch::optim::AdamW (the same update as torch.optim.AdamW, which the official SD1.5
// Diffusion-DPO run used), behind the Optimizer interface with a named, safetensors-friendly state.
#include "prefdiff/optim/optimizer.hpp"
#include "state_io.hpp"

#include <algorithm>

#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include <torch/optim/adamw.h>

namespace prefdiff::optim {
namespace {

class AdamW final : public Optimizer {
 public:
  AdamW(const NamedTensors& named_parameters, const AdamWOptions& o) {
    detail::check_parameters(named_parameters, "adamw");
    for (const auto& [name, p] : named_parameters) {
      names_.push_back(name);
      params_.push_back(p);
    }
    impl_ = std::make_unique<torch::optim::AdamW>(params_, torch::optim::AdamWOptions(o.lr)
                                                               .betas({o.beta1, o.beta2})
                                                               .eps(o.eps)
                                                               .weight_decay(o.weight_decay)
                                                               .amsgrad(false));
    options_ = o;
    fused_ = o.fused.value_or(!params_.empty() && std::all_of(params_.begin(), params_.end(), [](const at::Tensor& p) {
      return p.is_cuda();
    }));
    device_steps_.resize(params_.size());
  }

  void step() override {
    if (fused_)
      fused_step();
    else
      impl_->step();
  }
  void zero_grad() override { impl_->zero_grad(/*set_to_none=*/true); }

  void set_lr(double lr) override {
    for (auto& group : impl_->param_groups()) group.options().set_lr(lr);
  }
  double lr() const override { return impl_->param_groups().front().options().get_lr(); }
  std::string name() const override { return "adamw"; }
  bool multi_tensor() const override { return fused_; }

  NamedTensors state() const override {
    NamedTensors out;
    const auto& st = impl_->state();
    for (size_t i = 0; i < params_.size(); ++i) {
      auto it = st.find(params_[i].unsafeGetTensorImpl());
      if (it == st.end()) continue;
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      out.emplace_back("step." + names_[i], detail::step_tensor(s.step()));
      out.emplace_back("exp_avg." + names_[i], s.exp_avg());
      out.emplace_back("exp_avg_sq." + names_[i], s.exp_avg_sq());
    }
    return out;
  }

  void load_state(const NamedTensors& state) override {
    std::vector<std::string> problems;
    const auto grouped = detail::group_state(state, names_, {"step", "exp_avg", "exp_avg_sq"}, problems);
    std::vector<std::unique_ptr<torch::optim::AdamWParamState>> loaded(params_.size());
    for (size_t i = 0; i < params_.size(); ++i) {
      const auto& e = grouped[i];
      if (e.empty()) continue;  // never stepped before the checkpoint
      const at::Tensor& p = params_[i];
      // LibTorch keeps the moments in the parameter's dtype and layout (zeros_like).
      const int64_t step = detail::take_step(e, "step", names_[i], problems);
      at::Tensor m = detail::take_tensor(e, "exp_avg", names_[i], p.sizes(), p.options(), problems);
      at::Tensor v = detail::take_tensor(e, "exp_avg_sq", names_[i], p.sizes(), p.options(), problems);
      if (step < 0 || !m.defined() || !v.defined()) continue;
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(step);
      s->exp_avg(m);
      s->exp_avg_sq(v);
      loaded[i] = std::move(s);
    }
    detail::throw_if_problems("adamw: cannot load optimizer state", problems,
                              "load the state saved by the same recipe's AdamW ([optim].name = \"adamw\") for the same "
                              "model");
    auto& st = impl_->state();
    for (size_t i = 0; i < params_.size(); ++i) {
      void* key = params_[i].unsafeGetTensorImpl();
      st.erase(key);
      if (loaded[i]) st[key] = std::move(loaded[i]);
    }
    for (auto& t : device_steps_) t = at::Tensor();  // re-read from the loaded host counts
  }

 private:
  // The state lives in LibTorch's AdamWParamState either way, so checkpoints and load_state do not care which
  // path stepped. The fused kernel reads each parameter's step count as a float tensor on its device
  // (device_steps_, kept in step with the host's integer count).
  void fused_step() {
    c10::NoGradGuard no_grad;
    auto& state = impl_->state();
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
    for (size_t i = 0; i < params_.size(); ++i) {
      const at::Tensor& p = params_[i];
      if (!p.grad().defined()) continue;
      void* key = p.unsafeGetTensorImpl();
      auto it = state.find(key);
      if (it == state.end()) {  // as LibTorch's first step: zero moments in the parameter's dtype and layout
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        it = state.emplace(key, std::move(fresh)).first;
      }
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      if (!device_steps_[i].defined())
        device_steps_[i] = at::full({}, static_cast<double>(s.step()), p.options().dtype(at::kFloat));
      s.step(s.step() + 1);
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avgs.push_back(s.exp_avg());
      exp_avg_sqs.push_back(s.exp_avg_sq());
      steps.push_back(device_steps_[i]);
    }
    if (params.empty()) return;
    at::_foreach_add_(steps, 1);
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr(), options_.beta1,
                      options_.beta2, options_.weight_decay, options_.eps, /*amsgrad=*/false, /*maximize=*/false);
  }

  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;
  std::unique_ptr<torch::optim::AdamW> impl_;
  AdamWOptions options_;
  bool fused_ = false;
  std::vector<at::Tensor> device_steps_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adamw(const NamedTensors& named_parameters, const AdamWOptions& options) {
  std::vector<std::string> problems;
  if (!(options.lr >= 0)) problems.push_back("lr must be >= 0, got " + std::to_string(options.lr));
  if (!(options.beta1 >= 0 && options.beta1 < 1)) problems.push_back("beta1 must be in [0, 1)");
  if (!(options.beta2 >= 0 && options.beta2 < 1)) problems.push_back("beta2 must be in [0, 1)");
  if (!(options.eps >= 0)) problems.push_back("eps must be >= 0");
  if (!(options.weight_decay >= 0)) problems.push_back("weight_decay must be >= 0");
  detail::throw_if_problems("adamw: bad options", problems, "");
  return std::make_unique<AdamW>(named_parameters, options);
}

}  // namespace prefdiff::optim
