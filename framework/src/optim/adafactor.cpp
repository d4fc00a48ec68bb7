// Adafactor (Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost"), with the
// options of the official SDXL Diffusion-DPO run: transformers' Adafactor(lr, scale_parameter=False,
// relative_step=False, warmup_init=False, weight_decay=1e-2), beta1=None. For step t (per parameter, from 1):
//   beta2_t = 1 - t^decay_rate                                  (0 at t = 1: the first step sees G^2 alone)
//   G2      = G^2 + eps1
//   ndim >= 2:  R_t = beta2_t R + (1 - beta2_t) mean_cols(G2)   C_t = beta2_t C + (1 - beta2_t) mean_rows(G2)
//               V   = R_t C_t^T / mean(R_t)                     (rank-1 estimate, per leading index)
//   ndim <  2:  V   = beta2_t V + (1 - beta2_t) G2
//   U = G / sqrt(V);   U /= max(1, RMS(U) / clip_threshold);   p <- p - lr*wd*p - lr*U
// Means rather than the paper's sums: the normalisation by mean(R) makes them equivalent, and means keep
// the row/column statistics on the scale of G^2 whatever the tensor's size.
#include "prefdiff/optim/optimizer.hpp"
#include "adafactor_fused.hpp"
#include "state_io.hpp"

#include <ATen/ATen.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_copy.h>
#include <ATen/ops/_foreach_sub.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <tuple>

namespace prefdiff::optim {
namespace {

struct FactorState {
  int64_t step = 0;
  at::Tensor row;   // shape[:-1]            (factored)
  at::Tensor col;   // shape[:-2] + shape[-1] (factored)
  at::Tensor full;  // shape                  (ndim < 2)
};

// The precision of the state and of the update arithmetic: float32, or float64 for float64 parameters.
at::ScalarType compute_dtype(const at::Tensor& p) { return p.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

std::vector<int64_t> row_shape(at::IntArrayRef s) { return std::vector<int64_t>(s.begin(), s.end() - 1); }
std::vector<int64_t> col_shape(at::IntArrayRef s) {
  std::vector<int64_t> c(s.begin(), s.end() - 2);
  c.push_back(s.back());
  return c;
}

class Adafactor final : public Optimizer {
 public:
  Adafactor(const NamedTensors& named_parameters, const AdafactorOptions& o) : options_(o) {
    detail::check_parameters(named_parameters, "adafactor");
    for (const auto& [name, p] : named_parameters) {
      names_.push_back(name);
      params_.push_back(p);
    }
    states_.resize(params_.size());
    batched_ = o.batched.value_or(!params_.empty() && std::all_of(params_.begin(), params_.end(), [](const at::Tensor& p) {
      return p.is_cuda();
    }));
    if (o.fused.value_or(false) && !detail::fused_adafactor_available())
      throw OptimError("adafactor: the fused CUDA update was asked for, but this build has no CUDA kernels; HINT: "
                       "build prefdiff against a LibTorch with CUDA, or leave it to the default");
    fused_ = batched_ && o.fused.value_or(detail::fused_adafactor_available());
  }

  // Each parameter with a gradient takes one step. Batched: parameters of one shape, dtype, device and step
  // are updated together (stacked, in chunks); otherwise one at a time. Same arithmetic either way.
  void step() override {
    c10::NoGradGuard no_grad;
    std::map<std::tuple<std::vector<int64_t>, int, int, int, int64_t>, std::vector<size_t>> groups;
    for (size_t i = 0; i < params_.size(); ++i) {
      const at::Tensor& p = params_[i];
      if (!p.grad().defined()) continue;
      if (p.grad().is_sparse())
        throw OptimError("adafactor: parameter '" + names_[i] + "' has a sparse gradient; Adafactor needs dense gradients");
      FactorState& s = states_[i];
      if (!(p.dim() >= 2 ? s.row.defined() : s.full.defined())) init_state(s, p);
      s.step += 1;
      if (!batched_) {
        update_group({i}, s.step);
        continue;
      }
      const at::Device d = p.device();
      groups[{p.sizes().vec(), static_cast<int>(p.scalar_type()), static_cast<int>(d.type()), d.index(), s.step}]
          .push_back(i);
    }
    // Fused kernels: every group whose tensors qualify (float32, contiguous, CUDA), all in one call.
    std::vector<detail::FusedAdafactorGroup> fused;
    if (fused_) {
      for (auto it = groups.begin(); it != groups.end();) {
        if (auto g = fused_group(it->second, std::get<4>(it->first))) {
          fused.push_back(std::move(*g));
          it = groups.erase(it);
        } else {
          ++it;
        }
      }
      detail::fused_adafactor_step(fused, {options_.eps1, options_.lr, options_.weight_decay, options_.clip_threshold});
    }
    constexpr int64_t kChunkElements = int64_t{1} << 26;  // bounds the stacked copies' memory (256 MB in float32)
    for (const auto& [key, members] : groups) {
      const int64_t numel = std::max<int64_t>(params_[members.front()].numel(), 1);
      const size_t per_chunk = static_cast<size_t>(std::max<int64_t>(1, kChunkElements / numel));
      for (size_t start = 0; start < members.size(); start += per_chunk)
        update_group(std::vector<size_t>(members.begin() + static_cast<std::ptrdiff_t>(start),
                                         members.begin() + static_cast<std::ptrdiff_t>(std::min(members.size(), start + per_chunk))),
                     std::get<4>(key));
    }
  }

  void zero_grad() override {
    for (auto& p : params_)
      if (p.grad().defined()) p.mutable_grad().reset();
  }

  void set_lr(double lr) override { options_.lr = lr; }
  double lr() const override { return options_.lr; }
  std::string name() const override { return "adafactor"; }
  bool multi_tensor() const override { return batched_; }

  NamedTensors state() const override {
    NamedTensors out;
    for (size_t i = 0; i < params_.size(); ++i) {
      const FactorState& s = states_[i];
      if (s.step == 0) continue;
      out.emplace_back("step." + names_[i], detail::step_tensor(s.step));
      if (s.row.defined()) {
        out.emplace_back("exp_avg_sq_row." + names_[i], s.row);
        out.emplace_back("exp_avg_sq_col." + names_[i], s.col);
      } else {
        out.emplace_back("exp_avg_sq." + names_[i], s.full);
      }
    }
    return out;
  }

  void load_state(const NamedTensors& state) override {
    std::vector<std::string> problems;
    const auto grouped =
        detail::group_state(state, names_, {"step", "exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq"}, problems);
    std::vector<FactorState> loaded(params_.size());
    for (size_t i = 0; i < params_.size(); ++i) {
      const auto& e = grouped[i];
      if (e.empty()) continue;  // never stepped before the checkpoint
      const at::Tensor& p = params_[i];
      const auto like = p.options().dtype(compute_dtype(p));
      FactorState& s = loaded[i];
      s.step = detail::take_step(e, "step", names_[i], problems);
      if (p.dim() >= 2) {
        s.row = detail::take_tensor(e, "exp_avg_sq_row", names_[i], row_shape(p.sizes()), like, problems);
        s.col = detail::take_tensor(e, "exp_avg_sq_col", names_[i], col_shape(p.sizes()), like, problems);
        if (e.count("exp_avg_sq"))
          problems.push_back("state entry 'exp_avg_sq." + names_[i] + "' is for a 1-D parameter but '" + names_[i] +
                             "' is factored (ndim " + std::to_string(p.dim()) + ")");
      } else {
        s.full = detail::take_tensor(e, "exp_avg_sq", names_[i], p.sizes(), like, problems);
        if (e.count("exp_avg_sq_row") || e.count("exp_avg_sq_col"))
          problems.push_back("state entries 'exp_avg_sq_row/col." + names_[i] + "' are for a factored parameter but '" +
                             names_[i] + "' has ndim " + std::to_string(p.dim()));
      }
    }
    detail::throw_if_problems("adafactor: cannot load optimizer state", problems,
                              "load the state saved by the same recipe's Adafactor ([optim].name = \"adafactor\") for "
                              "the same model");
    states_ = std::move(loaded);
  }

 private:
  // The fused kernels' view of a group, or nothing when one of its tensors does not qualify.
  std::optional<detail::FusedAdafactorGroup> fused_group(const std::vector<size_t>& members, int64_t step) const {
    detail::FusedAdafactorGroup g;
    g.beta2t = 1.0 - std::pow(static_cast<double>(step), options_.decay_rate);
    for (size_t i : members) {
      const at::Tensor& p = params_[i];
      const FactorState& s = states_[i];
      if (!detail::fused_adafactor_eligible(p, p.grad())) return std::nullopt;
      const bool factored = p.dim() >= 2;
      for (const at::Tensor* t : factored ? std::vector<const at::Tensor*>{&s.row, &s.col} : std::vector<const at::Tensor*>{&s.full})
        if (!t->is_contiguous() || t->scalar_type() != at::kFloat || t->device() != p.device()) return std::nullopt;
      g.params.push_back(p);
      g.grads.push_back(p.grad());
      if (factored) {
        g.rows.push_back(s.row);
        g.cols.push_back(s.col);
      } else {
        g.fulls.push_back(s.full);
      }
    }
    return g;
  }

  // The update of `members` (one parameter, or several of one shape, dtype, device and step), stacked along
  // a leading dimension: reductions (row/column means, the RMS) run per parameter, so a group computes what
  // its members would one by one. A single parameter is a view, not a copy, and updates its state in place.
  void update_group(const std::vector<size_t>& members, int64_t step) {
    const at::Tensor& first = params_[members.front()];
    const at::ScalarType dt = compute_dtype(first);
    const bool factored = first.dim() >= 2;
    const int64_t k = static_cast<int64_t>(members.size());
    std::vector<at::Tensor> grads, rows, cols, fulls, params;
    for (size_t i : members) {
      grads.push_back(params_[i].grad().to(dt));
      params.push_back(params_[i]);
      if (factored) {
        rows.push_back(states_[i].row);
        cols.push_back(states_[i].col);
      } else {
        fulls.push_back(states_[i].full);
      }
    }
    const bool single = k == 1;
    auto stacked = [&](const std::vector<at::Tensor>& ts) { return single ? ts.front().unsqueeze(0) : at::stack(ts); };
    // Stacked states are copies: write them back (a single parameter's view already is the state).
    auto write_back = [&](std::vector<at::Tensor>& states, const at::Tensor& updated) {
      if (!single) at::_foreach_copy_(states, updated.unbind(0));
    };
    const double beta2t = 1.0 - std::pow(static_cast<double>(step), options_.decay_rate);
    const at::Tensor g = stacked(grads);
    grads.clear();
    const at::Tensor g2 = g.square().add_(options_.eps1);
    at::Tensor u;
    if (factored) {
      at::Tensor row = stacked(rows), col = stacked(cols);
      row.mul_(beta2t).add_(g2.mean(-1), 1.0 - beta2t);
      col.mul_(beta2t).add_(g2.mean(-2), 1.0 - beta2t);
      write_back(rows, row);
      write_back(cols, col);
      // 1/sqrt(V) = rsqrt(R / mean(R)) (column vector) * rsqrt(C) (row vector).
      const at::Tensor r_inv = (row / row.mean(-1, /*keepdim=*/true)).rsqrt_().unsqueeze(-1);
      const at::Tensor c_inv = col.unsqueeze(-2).rsqrt();
      u = r_inv.mul(c_inv).mul_(g);
    } else {
      at::Tensor full = stacked(fulls);
      full.mul_(beta2t).add_(g2, 1.0 - beta2t);
      write_back(fulls, full);
      u = full.rsqrt().mul_(g);
    }
    // Per parameter: RMS over all but the stacked dimension.
    std::vector<int64_t> per_param(static_cast<size_t>(u.dim()), 1);
    per_param[0] = k;
    const double count = static_cast<double>(first.numel());
    const at::Tensor rms = at::linalg_vector_norm(u.reshape({k, -1}), 2, {1}) / std::sqrt(count);
    u.div_((rms / options_.clip_threshold).clamp_min_(1.0).reshape(per_param));
    u.mul_(options_.lr);

    // Decoupled decay on the pre-update weights, then the update, in the compute dtype.
    const bool same = first.scalar_type() == dt;
    std::vector<at::Tensor> w = params;
    if (!same)
      for (auto& t : w) t = t.to(dt);
    if (options_.weight_decay != 0.0) at::_foreach_add_(w, w, -options_.weight_decay * options_.lr);
    at::_foreach_sub_(w, u.unbind(0));
    if (!same) at::_foreach_copy_(params, w);
  }

  static void init_state(FactorState& s, const at::Tensor& p) {
    const auto opts = p.options().dtype(compute_dtype(p));
    if (p.dim() >= 2) {
      s.row = at::zeros(row_shape(p.sizes()), opts);
      s.col = at::zeros(col_shape(p.sizes()), opts);
    } else {
      s.full = at::zeros(p.sizes(), opts);
    }
  }

  AdafactorOptions options_;
  bool batched_ = false;
  bool fused_ = false;
  std::vector<std::string> names_;
  std::vector<at::Tensor> params_;
  std::vector<FactorState> states_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adafactor(const NamedTensors& named_parameters, const AdafactorOptions& options) {
  std::vector<std::string> problems;
  if (!(options.lr >= 0)) problems.push_back("lr must be >= 0, got " + std::to_string(options.lr));
  if (!(options.eps1 > 0)) problems.push_back("eps1 must be > 0");
  if (!(options.eps2 > 0)) problems.push_back("eps2 must be > 0");
  if (!(options.clip_threshold > 0)) problems.push_back("clip_threshold must be > 0");
  if (!(options.decay_rate >= -1 && options.decay_rate <= 0))
    problems.push_back("decay_rate must be in [-1, 0], got " + std::to_string(options.decay_rate));
  if (!(options.weight_decay >= 0)) problems.push_back("weight_decay must be >= 0");
  detail::throw_if_problems("adafactor: bad options", problems, "");
  return std::make_unique<Adafactor>(named_parameters, options);
}

}  // namespace prefdiff::optim
