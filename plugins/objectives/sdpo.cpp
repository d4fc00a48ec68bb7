// Diffusion-SDPO (Fu et al. 2025): the winner-preserving safeguard around a base loss (Diffusion-DPO or
// DMPO). As the released code (train.py get_adaptive_lose_l_scale), the loser's gradient is scaled by
//   lambda = 1                                              if S_wl <= 0
//   lambda = clamp((1 - mu) S_ww / (S_wl + lambda_eps), 0, 1) otherwise,
// S_ww = sum_i <e_w,e_w>_i / D and S_wl = sum_i <e_w,e_l>_i / D over the micro-batch of all ranks (sums
// all-reduced: PD_CAP_BATCH_COUPLED), so that to first order in the error space a step does not raise the
// winners' error: <grad_w - lambda grad_l, grad_w> >= mu ||grad_w||^2. lambda is a stop-gradient constant.
//
// The released code writes m_l~ = sg(m_l) + lambda (m_l - sg(m_l)) and evaluates the base loss at
//   h~ = -0.5 beta [(m_w - r_w) - (m_l~ - r_l)]:
// the same value as without the safeguard, with dl/dm_l scaled by lambda. Here sg(m_l) is error_ll, the
// host's non-differentiated copy of m_l (objective.h), so the plugin's outputs are the derivatives of its
// loss with every error inner product held fixed, the contract the conformance kit checks:
//   l = base(h~),  dl/dm_w = base'(h~) (-beta/2),  dl/dm_l = lambda base'(h~) (beta/2).
// With the host's inputs (error_ll == model_l) h~ == h and l is the base loss bit for bit.
#include <string>

#include "dmpo_math.hpp"
#include "objective_common.hpp"

namespace {

namespace sdk = prefdiff::sdk;
namespace math = prefdiff::sdk::math;
namespace dmpo = prefdiff::objectives::dmpo_math;
using prefdiff::objectives::format_number;

class Sdpo final : public sdk::Objective {
 public:
  static sdk::PluginInfo info() {
    sdk::PluginInfo info;
    info.id = "sdpo";
    info.version = "1.0.0";
    info.summary = "Diffusion-SDPO: Diffusion-DPO or DMPO with the loser's gradient scaled to preserve the winner";
    info.citation = "Fu, Wang, Cui, Chen, Xu, Luo, Zhang, Diffusion-SDPO: Safeguarded Direct Preference "
                    "Optimization for Diffusion Models, arXiv 2511.03317 (2025); code AIDC-AI/Diffusion-SDPO @ "
                    "84fb241c train.py get_adaptive_lose_l_scale, scripts/train/*.sh";
    info.formula_version = "sdpo/1: l = base(h~), m_l~ = e_ll + lambda*(m_l - e_ll), "
                           "lambda = S_wl > 0 ? clamp((1-mu)*S_ww/(S_wl+lambda_eps), 0, 1) : 1 over the global micro-batch";
    info.params = {
        prefdiff::objectives::beta_param(),
        sdk::ParamSpec::real("winner_preserving_mu", 0.9,
                             "mu of the safeguard: each step must lower the winners' error by at least mu times "
                             "its first-order rate; larger = more conservative (smaller loser gradient). Default "
                             "0.9: the released SD1.5 scripts (--winner_preserving_mu); its SDXL scripts use 0.6. "
                             "mu = 1 removes the loser's gradient whenever the two errors are aligned.")
            .min(0.0)
            .max(1.0)
            .range_note("winner_preserving_mu must be in [0, 1], as the released code asserts: above 1 lambda would "
                        "be negative and below 0 the bound would allow the winner's error to grow."),
        sdk::ParamSpec::string("base_objective", "dpo",
                               "The loss the safeguard wraps: \"dpo\" (Diffusion-DPO, softplus(-h), as the "
                               "released diffusion-dpo scripts) or \"dmpo\" (the dmpo plugin's loss, with "
                               "dmpo_alpha). The released code also wraps DSPO, which needs the raw predictions.")
            .choices("dpo|dmpo"),
        prefdiff::objectives::dmpo_alpha_param(),
        sdk::ParamSpec::real("lambda_eps", 0.0,
                             "Added to S_wl = sum <e_w,e_l>/D before dividing. Default 0: the comparison form needs "
                             "no guard. The released code adds 1e-9 to the dot product of the gradients of the two "
                             "batch-mean MSEs, which is 1e-9*B^2*D/4 in these units (B pairs per GPU, D elements per "
                             "image): 2.62144e-4 for SD1.5 at 8 pairs, 1.048576e-3 for SDXL.")
            .min(0.0)
            .range_note("lambda_eps must be >= 0: it guards a division by a positive inner product."),
    };
    info.diagnostics = {"lambda"};
    info.capabilities = PD_CAP_NEEDS_ERROR_INNER_PRODUCTS | PD_CAP_BATCH_COUPLED;
    return info;
  }

  Sdpo(const sdk::Params& params, const sdk::Host& host)
      : host_(host),
        beta_(prefdiff::objectives::checked_beta(params, "sdpo")),
        mu_(prefdiff::objectives::checked_real(params, "sdpo", "winner_preserving_mu", 0.0, false, 1.0, false,
                                               "Use mu in [0, 1]; the released scripts use 0.9 (SD1.5) and 0.6 (SDXL).")),
        lambda_eps_(prefdiff::objectives::checked_real(params, "sdpo", "lambda_eps", 0.0, false, INFINITY, false,
                                                       "Use lambda_eps >= 0 (default 0).")),
        target_(dmpo::target_margin(prefdiff::objectives::checked_dmpo_alpha(params, "sdpo"))) {
    const std::string base = params.string("base_objective");
    if (base == "dpo") dmpo_ = false;
    else if (base == "dmpo") dmpo_ = true;
    else
      throw sdk::Error(PD_ERR_INVALID_ARGUMENT, "sdpo: parameter 'base_objective' = \"" + base +
                                                    "\" is not one of dpo|dmpo");
  }

  // The loser's gradient scale from the batch sums (both all-reduced).
  static double loser_scale(double mu, double lambda_eps, double s_ww, double s_wl) {
    if (!(s_wl > 0.0)) return 1.0;  // errors not aligned: the loser's step cannot raise the winner's error
    const double scale = (1.0 - mu) * s_ww / (s_wl + lambda_eps);
    return scale >= 1.0 ? 1.0 : (scale > 0.0 ? scale : 0.0);
  }

  void evaluate(const sdk::ObjectiveBatch& batch, sdk::ObjectiveResult& out) override {
    math::dpo_margins(beta_, batch, out.margin);
    double sums[2] = {0.0, 0.0};  // S_ww, S_wl
    for (size_t i = 0; i < batch.count; ++i) {
      sums[0] += batch.error_ww[i];
      sums[1] += batch.error_wl[i];
    }
    host_.all_reduce_sum(sums, 2);
    if (!std::isfinite(sums[0]) || !std::isfinite(sums[1]))
      throw sdk::Error(PD_ERR_NON_FINITE, "sdpo: the batch sums of the error inner products overflow (S_ww = " +
                                              format_number(sums[0]) + ", S_wl = " + format_number(sums[1]) +
                                              "). HINT: the host must pass inner products divided by the elements "
                                              "per image (means, like the MSEs)");
    const double lambda = loser_scale(mu_, lambda_eps_, sums[0], sums[1]);
    for (size_t i = 0; i < batch.count; ++i) {
      const double scaled_l = batch.error_ll[i] + lambda * (batch.model_l[i] - batch.error_ll[i]);
      const double h = math::dpo_margin(beta_, batch.model_w[i], scaled_l, batch.ref_w[i], batch.ref_l[i]);
      if (!std::isfinite(h))
        throw sdk::Error(PD_ERR_NON_FINITE, "sdpo: pair " + std::to_string(i) + ": the margin overflows (model_l = " +
                                                format_number(batch.model_l[i]) + ", error_ll = " +
                                                format_number(batch.error_ll[i]) + ")");
      double dloss_dh;
      if (dmpo_) {
        out.loss[i] = dmpo::loss(h, target_);
        dloss_dh = dmpo::dloss_dh(h, target_);
      } else {
        out.loss[i] = math::softplus(-h);
        dloss_dh = -math::sigmoid(-h);
      }
      out.dloss_dmodel_w[i] = dloss_dh * (-0.5 * beta_);
      out.dloss_dmodel_l[i] = lambda * (dloss_dh * (0.5 * beta_));
    }
    out.diagnostics[0] = lambda;
  }

 private:
  sdk::Host host_;
  double beta_;
  double mu_;
  double lambda_eps_;
  dmpo::TargetMargin target_;
  bool dmpo_ = false;
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(Sdpo)
