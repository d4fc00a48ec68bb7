// Robust DPO (Chowdhury et al. 2024): unbiased under symmetric label flips of known rate eps,
// l(h) = [(1-eps)*softplus(-h) - eps*softplus(h)] / (1-2eps), dl/dh = sigma(h) - (1-eps)/(1-2eps).
// For eps > 0 the loss is unbounded below: negative values are expected and are not clamped.
#include "objective_common.hpp"

namespace {

namespace sdk = prefdiff::sdk;
namespace math = prefdiff::sdk::math;

const char* const kEpsNote =
    "eps >= 0.5 is refused: the loss divides by (1 - 2*eps), which is zero at eps = 0.5, and above 0.5 "
    "the sign flips so training would prefer the rejected images. Use the known flip rate, eps < 0.5.";

class Rdpo final : public sdk::Objective {
 public:
  static sdk::PluginInfo info() {
    sdk::PluginInfo info;
    info.id = "rdpo";
    info.version = "1.0.0";
    info.summary = "Robust DPO: unbiased DPO under label flips of known rate eps (loss may be negative)";
    info.citation = "Chowdhury, Kini, Natarajan, Provably Robust DPO: Aligning Language Models with Noisy "
                    "Feedback, ICML 2024; huggingface/trl DPOTrainer loss_type='robust'";
    info.formula_version = "rdpo/1: l = [(1-eps)*softplus(-h) - eps*softplus(h)]/(1-2eps)";
    info.params = {
        prefdiff::objectives::beta_param(),
        sdk::ParamSpec::real("eps", 0.1,
                             "Known label-flip rate. Default 0.1 (a project choice: the papers release no "
                             "diffusion value); set it to the flip rate of your data. eps = 0 is exactly DPO. "
                             "For eps > 0 the loss is unbounded below, so a negative training loss is normal.")
            .min(0.0)
            .max(0.5, /*exclusive=*/true)
            .range_note(kEpsNote),
    };
    return info;
  }

  Rdpo(const sdk::Params& params, const sdk::Host& /*host*/)
      : beta_(prefdiff::objectives::checked_beta(params, "rdpo")),
        eps_(prefdiff::objectives::checked_real(params, "rdpo", "eps", 0.0, false, 0.5, true, kEpsNote)) {}

  void evaluate(const sdk::ObjectiveBatch& batch, sdk::ObjectiveResult& out) override {
    prefdiff::sdk::math::dpo_margins(beta_, batch, out.margin);
    const double scale = 1.0 - 2.0 * eps_;
    for (size_t i = 0; i < batch.count; ++i) {
      const double h = out.margin[i];
      const double u = math::sigmoid(h), v = math::sigmoid(-h);
      out.loss[i] = ((1.0 - eps_) * math::softplus(-h) - eps_ * math::softplus(h)) / scale;
      // sigma(h) - (1-eps)/(1-2eps) = -[(1-eps)*v + eps*u]/(1-2eps): a sum of positive terms, so no
      // cancellation; at eps = 0 it is -v bit for bit.
      math::write_margin_gradient(beta_, -((1.0 - eps_) * v + eps_ * u) / scale, i, out);
    }
  }

 private:
  double beta_;
  double eps_;
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(Rdpo)
