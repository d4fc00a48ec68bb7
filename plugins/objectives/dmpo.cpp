// DMPO as the Diffusion-SDPO authors' code computes it (train.py, train_method 'dmpo'): the KL divergence
// of Bernoulli(sigma(h)) from Bernoulli(1 - alpha) on the Diffusion-DPO margin h,
//   l(h) = u log(u/q) + v log(v/(1-q)),  q = 1 - alpha,  dl/dh = u v (h - k),  k = log((1-alpha)/alpha).
// Bounded (0 at h = k, -log q as h -> +inf, -log alpha as h -> -inf) and redescending at both ends.
// Stable forms: dmpo_math.hpp.
#include "dmpo_math.hpp"

namespace {

namespace sdk = prefdiff::sdk;
namespace dmpo = prefdiff::objectives::dmpo_math;

class Dmpo final : public sdk::Objective {
 public:
  static sdk::PluginInfo info() {
    sdk::PluginInfo info;
    info.id = "dmpo";
    info.version = "1.0.0";
    info.summary = "DMPO: KL(Bernoulli(sigma(h)) || Bernoulli(1 - alpha)), bounded and redescending";
    info.citation = "Li, Xu, Han, Dang, Ermon, Divergence Minimization Preference Optimization for Diffusion Model "
                    "Alignment, arXiv 2507.07510 (2025); loss as in AIDC-AI/Diffusion-SDPO @ 84fb241c train.py "
                    "(train_method 'dmpo') and scripts/train/sd15_dmpo.sh";
    info.formula_version = "dmpo/1: l = u*log(u/q) + v*log(v/(1-q)), u = sigma(h), v = 1-u, q = 1-alpha";
    info.params = {prefdiff::objectives::beta_param(), prefdiff::objectives::dmpo_alpha_param()};
    return info;
  }

  Dmpo(const sdk::Params& params, const sdk::Host& /*host*/)
      : beta_(prefdiff::objectives::checked_beta(params, "dmpo")),
        target_(dmpo::target_margin(prefdiff::objectives::checked_dmpo_alpha(params, "dmpo"))) {}

  void evaluate(const sdk::ObjectiveBatch& batch, sdk::ObjectiveResult& out) override {
    sdk::math::dpo_margins(beta_, batch, out.margin);
    for (size_t i = 0; i < batch.count; ++i) {
      const double h = out.margin[i];
      out.loss[i] = dmpo::loss(h, target_);
      sdk::math::write_margin_gradient(beta_, dmpo::dloss_dh(h, target_), i, out);
    }
  }

 private:
  double beta_;
  dmpo::TargetMargin target_;
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(Dmpo)
