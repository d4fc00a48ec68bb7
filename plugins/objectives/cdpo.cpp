// Conservative DPO (label smoothing): l(h) = (1-eps)*softplus(-h) + eps*softplus(h),
// dl/dh = sigma(h) - (1-eps), minimiser h* = log((1-eps)/eps).
#include "objective_common.hpp"

namespace {

namespace sdk = prefdiff::sdk;
namespace math = prefdiff::sdk::math;

class Cdpo final : public sdk::Objective {
 public:
  static sdk::PluginInfo info() {
    sdk::PluginInfo info;
    info.id = "cdpo";
    info.version = "1.0.0";
    info.summary = "Conservative DPO: DPO with label smoothing eps (targets 1-eps / eps)";
    info.citation = "Mitchell, A note on DPO with noisy preferences and relationship to IPO, 2023; "
                    "huggingface/trl DPOTrainer sigmoid loss with label_smoothing (before its refactor)";
    info.formula_version = "cdpo/1: l = (1-eps)*softplus(-h) + eps*softplus(h)";
    info.params = {
        prefdiff::objectives::beta_param(),
        sdk::ParamSpec::real("eps", 0.1,
                             "Label-smoothing rate: the assumed probability that a label is flipped. Default 0.1: "
                             "the value the cDPO note and TRL examples use (the paper gives no diffusion value). "
                             "eps = 0 is exactly DPO; the loss is minimised at h* = log((1-eps)/eps).")
            .min(0.0)
            .max(0.5, /*exclusive=*/true)
            .range_note("eps must be in [0, 0.5): at 0.5 the two labels get equal weight (no preference "
                        "signal) and above it the objective prefers the rejected image."),
    };
    return info;
  }

  Cdpo(const sdk::Params& params, const sdk::Host& /*host*/)
      : beta_(prefdiff::objectives::checked_beta(params, "cdpo")),
        eps_(prefdiff::objectives::checked_real(params, "cdpo", "eps", 0.0, false, 0.5, true,
                                                "Use eps in [0, 0.5), e.g. the expected flip rate; 0 is DPO.")) {}

  void evaluate(const sdk::ObjectiveBatch& batch, sdk::ObjectiveResult& out) override {
    prefdiff::sdk::math::dpo_margins(beta_, batch, out.margin);
    for (size_t i = 0; i < batch.count; ++i) {
      const double h = out.margin[i];
      const double u = math::sigmoid(h), v = math::sigmoid(-h);
      out.loss[i] = (1.0 - eps_) * math::softplus(-h) + eps_ * math::softplus(h);
      // sigma(h) - (1-eps) = -[(1-eps)*v - eps*u]: no 1 - u cancellation, and at eps = 0 it is -v,
      // bit for bit what dpo returns (sign of zero included).
      math::write_margin_gradient(beta_, -((1.0 - eps_) * v - eps_ * u), i, out);
    }
  }

 private:
  double beta_;
  double eps_;
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(Cdpo)
