// Diffusion-DPO (Wallace et al. 2024): l(h) = softplus(-h), dl/dh = sigma(h) - 1 = -sigma(-h).
#include "objective_common.hpp"

namespace {

namespace sdk = prefdiff::sdk;
namespace math = prefdiff::sdk::math;

class Dpo final : public sdk::Objective {
 public:
  static sdk::PluginInfo info() {
    sdk::PluginInfo info;
    info.id = "dpo";
    info.version = "1.0.0";
    info.summary = "Diffusion-DPO: l(h) = softplus(-h) on the Diffusion-DPO margin h";
    info.citation = "Wallace et al., Diffusion Model Alignment Using Direct Preference Optimization, CVPR 2024; "
                    "code SalesforceAIResearch/DiffusionDPO @ 5233e759 train.py";
    info.formula_version = "dpo/1: l = softplus(-h), h = -0.5*beta*[(mw-rw)-(ml-rl)]";
    info.params = {prefdiff::objectives::beta_param()};
    return info;
  }

  Dpo(const sdk::Params& params, const sdk::Host& /*host*/)
      : beta_(prefdiff::objectives::checked_beta(params, "dpo")) {}

  void evaluate(const sdk::ObjectiveBatch& batch, sdk::ObjectiveResult& out) override {
    prefdiff::sdk::math::dpo_margins(beta_, batch, out.margin);
    for (size_t i = 0; i < batch.count; ++i) {
      const double h = out.margin[i];
      out.loss[i] = math::softplus(-h);
      // -sigma(-h), not sigma(h) - 1: keeps full relative accuracy for large h.
      math::write_margin_gradient(beta_, -math::sigmoid(-h), i, out);
    }
  }

 private:
  double beta_;
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(Dpo)
