// AdamW: LibTorch's torch::optim::AdamW (the same update as torch.optim.AdamW, which the official SD1.5
// Diffusion-DPO run used), behind the Optimizer interface with a named, safetensors-friendly state.
#include "prefdiff/optim/optimizer.hpp"
#include "state_io.hpp"

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
  }

  void step() override { impl_->step(); }
  void zero_grad() override { impl_->zero_grad(/*set_to_none=*/true); }

  void set_lr(double lr) override {
    for (auto& group : impl_->param_groups()) group.options().set_lr(lr);
  }
  double lr() const override { return impl_->param_groups().front().options().get_lr(); }
  std::string name() const override { return "adamw"; }

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
  }

 private:
  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;
  std::unique_ptr<torch::optim::AdamW> impl_;
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
