// MaPO (Hong et al. 2024), reference-free: only the policy's errors m_w, m_l. As the released code
// (mapo-t2i/mapo utils.py compute_loss), with psi(x) = x/(e^x - 1) and s = snr_value:
//   z = T * (psi(s m_w) - psi(s m_l))               the margin (> 0 when the winner's error is smaller)
//   l = m_w - beta_mapo * log sigma(z) = m_w + beta_mapo * softplus(-z)
//   dl/dm_w = 1 - beta_mapo sigma(-z) T s psi'(s m_w),   dl/dm_l = beta_mapo sigma(-z) T s psi'(s m_l)
// T = the scheduler's num_train_timesteps (a constant factor, not the pair's timestep: the loss does not
// depend on t). psi' < 0, so the winner's gradient is > 1 and the loser's < 0. Declares
// PD_CAP_REFERENCE_FREE: a host may skip the reference model for it and pass no ref_w/ref_l.
#include <string>

#include "objective_common.hpp"

namespace {

namespace sdk = prefdiff::sdk;
namespace math = prefdiff::sdk::math;
using prefdiff::objectives::format_number;

class Mapo final : public sdk::Objective {
 public:
  static sdk::PluginInfo info() {
    sdk::PluginInfo info;
    info.id = "mapo";
    info.version = "1.0.0";
    info.summary = "MaPO: reference-free, m_w + beta_mapo*softplus(-T*(psi(s*m_w) - psi(s*m_l))), psi(x) = x/(e^x-1)";
    info.citation = "Hong, Paul, Lee, Rasul, Thorne, Jeong, Margin-aware Preference Optimization for Aligning "
                    "Diffusion Models without Reference, AAAI 2026, arXiv 2406.06424; code mapo-t2i/mapo @ 374b3d3d "
                    "utils.py compute_loss, args.py";
    info.formula_version =
        "mapo/1: l = m_w + beta_mapo*softplus(-z), z = T*(psi(s*m_w) - psi(s*m_l)), psi(x) = x/(e^x-1)";
    info.params = {
        sdk::ParamSpec::real("beta_mapo", 0.1,
                             "Weight of the margin term against the winner's plain denoising loss m_w (the "
                             "released --beta_mapo, default 0.1). Not the Diffusion-DPO beta: MaPO has no "
                             "reference and no margin scale.")
            .min(0.0, /*exclusive=*/true)
            .range_note("beta_mapo must be > 0: at 0 MaPO is plain fine-tuning on the winners."),
        sdk::ParamSpec::real("snr_value", 0.5,
                             "Constant s in psi(s*m) = s*m/(e^(s*m) - 1), the per-image score of an error m (the "
                             "released --snr_value, default 0.5; the same for every timestep).")
            .min(0.0, /*exclusive=*/true)
            .range_note("snr_value must be > 0: at 0 every score is 1 and the margin vanishes."),
        sdk::ParamSpec::integer("num_train_timesteps", 1000,
                                "T, the factor on the score difference: the noise scheduler's "
                                "num_train_timesteps, as the released code multiplies by it (1000 for SD1.5 and "
                                "SDXL).")
            .min(1.0)
            .range_note("num_train_timesteps must be >= 1 (the number of training timesteps of the scheduler)."),
    };
    info.capabilities = PD_CAP_REFERENCE_FREE;
    return info;
  }

  Mapo(const sdk::Params& params, const sdk::Host& /*host*/)
      : beta_(prefdiff::objectives::checked_real(params, "mapo", "beta_mapo", 0.0, true, INFINITY, false,
                                                 "Use beta_mapo > 0; the released default is 0.1.")),
        snr_(prefdiff::objectives::checked_real(params, "mapo", "snr_value", 0.0, true, INFINITY, false,
                                                "Use snr_value > 0; the released default is 0.5.")),
        timesteps_(static_cast<double>(params.integer("num_train_timesteps"))) {
    if (timesteps_ < 1.0)
      throw sdk::Error(PD_ERR_INVALID_ARGUMENT, "mapo: parameter 'num_train_timesteps' = " + format_number(timesteps_) +
                                                    " is below 1; use the scheduler's num_train_timesteps (1000)");
  }

  void evaluate(const sdk::ObjectiveBatch& batch, sdk::ObjectiveResult& out) override {
    for (size_t i = 0; i < batch.count; ++i) {
      const double m_w = batch.model_w[i], m_l = batch.model_l[i];
      const double x_w = snr_ * m_w, x_l = snr_ * m_l;
      const double z = timesteps_ * (math::x_over_expm1(x_w) - math::x_over_expm1(x_l));
      out.margin[i] = z;
      out.loss[i] = m_w + beta_ * math::softplus(-z);
      const double weight = beta_ * math::sigmoid(-z) * timesteps_ * snr_;  // -(dl/dz) * dz/dpsi * dx/dm
      out.dloss_dmodel_w[i] = 1.0 - weight * math::x_over_expm1_derivative(x_w);
      out.dloss_dmodel_l[i] = weight * math::x_over_expm1_derivative(x_l);
      if (!std::isfinite(out.loss[i]) || !std::isfinite(z))
        throw sdk::Error(PD_ERR_NON_FINITE, "mapo: pair " + std::to_string(i) + ": the margin or loss overflows at "
                                            "model_w = " + format_number(m_w) + ", model_l = " + format_number(m_l) +
                                            ". HINT: the host must pass per-image mean squared errors, not sums");
    }
  }

 private:
  double beta_, snr_, timesteps_;
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(Mapo)
