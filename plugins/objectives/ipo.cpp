// IPO (Azar et al. 2023) on the Diffusion-DPO margin, as TRL's and diffusers' loss_type = "ipo": the
// squared distance of the log-likelihood-ratio difference X = h/beta to 1/(2 beta),
//   l = (X - 1/(2 beta))^2 = ((h - 1/2)/beta)^2,   dl/dh = 2 (h - 1/2)/beta^2,
// minimised at h* = 1/2 whatever beta. With d = (h - 1/2)/beta the chain rule is exact:
// dl/dmodel_w = -d, dl/dmodel_l = +d. sdk/examples/ipo_objective (id example-ipo) is a different
// parametrisation, (h - 1/(2 tau))^2; docs/objectives.md says how the two relate.
#include <string>

#include "objective_common.hpp"

namespace {

namespace sdk = prefdiff::sdk;
using prefdiff::objectives::format_number;

class Ipo final : public sdk::Objective {
 public:
  static sdk::PluginInfo info() {
    sdk::PluginInfo info;
    info.id = "ipo";
    info.version = "1.0.0";
    info.summary = "IPO: squared distance of the margin to its target, ((h - 1/2)/beta)^2";
    info.citation = "Azar et al., A General Theoretical Paradigm to Understand Learning from Human Preferences, "
                    "AISTATS 2024; as huggingface/trl DPOTrainer loss_type='ipo' and diffusers "
                    "examples/research_projects/diffusion_dpo/train_diffusion_dpo.py @ 071190da loss_type='ipo'";
    info.formula_version = "ipo/1: l = (h/beta - 1/(2 beta))^2 = ((h - 1/2)/beta)^2, h = -0.5*beta*[(mw-rw)-(ml-rl)]";
    info.params = {prefdiff::objectives::beta_param()};
    return info;
  }

  Ipo(const sdk::Params& params, const sdk::Host& /*host*/) : beta_(prefdiff::objectives::checked_beta(params, "ipo")) {}

  void evaluate(const sdk::ObjectiveBatch& batch, sdk::ObjectiveResult& out) override {
    sdk::math::dpo_margins(beta_, batch, out.margin);
    for (size_t i = 0; i < batch.count; ++i) {
      const double d = (out.margin[i] - 0.5) / beta_;
      out.loss[i] = d * d;
      // A quadratic loss overflows for |h - 1/2| above ~1e154*beta: refuse rather than return inf.
      if (!std::isfinite(out.loss[i]))
        throw sdk::Error(PD_ERR_NON_FINITE, "ipo: pair " + std::to_string(i) + ": the loss ((h - 1/2)/beta)^2 overflows "
                                            "at h = " + format_number(out.margin[i]) + ", beta = " +
                                            format_number(beta_) + ". HINT: the host must pass per-image mean squared "
                                            "errors, not sums");
      out.dloss_dmodel_w[i] = -d;  // (2d/beta) * (-beta/2)
      out.dloss_dmodel_l[i] = d;
    }
  }

 private:
  double beta_;
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(Ipo)
