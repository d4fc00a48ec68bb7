// alpha-DPO (ICLR 2026): l(h; a) = [u^a - (1-a) - a*u] / (a*(a-1)), u = sigma(h), with a stop-gradient
// alpha. Three ways to pick alpha (alpha_mode):
//   batch-mean  a = mu * mean over ALL ranks' current micro-batch of sigma(h): the released code, the
//               default. Sums are all-reduced, so two ranks give what one rank gives on the
//               concatenated batch. This couples pairs (PD_CAP_BATCH_COUPLED).
//   per-sample  a_i = mu * sigma(h_i): the paper's text. Not coupled and not redescending (a_i -> 0 as
//               h_i -> -inf, where the gradient returns to DPO's).
//   fixed       a = the `alpha` parameter.
// Before start_step a = mu in the two dynamic modes (released default start_step = -1: dynamic from
// the first step). The instance keeps no state: alpha is a function of (step, current batch) only, both
// given by the host on every call, so a resumed run reproduces it without a checkpoint entry.
#include <string>

#include "alpha_dpo_math.hpp"
#include "objective_common.hpp"

namespace {

namespace sdk = prefdiff::sdk;
namespace math = prefdiff::sdk::math;
using prefdiff::objectives::format_number;

enum class Mode { kBatchMean, kPerSample, kFixed };

class AlphaDpo final : public sdk::Objective {
 public:
  static sdk::PluginInfo info() {
    sdk::PluginInfo info;
    info.id = "alpha-dpo";
    info.version = "1.0.0";
    info.summary = "alpha-DPO: bounded, redescending [u^a-(1-a)-a*u]/(a(a-1)) with a stop-gradient alpha";
    info.citation = "Diffusion alpha-DPO, ICLR 2026; code yangli-lab/Diffusion_alpha-DPO_ICLR2026 @ 67e709b5, "
                    "scripts/main.py L1121-1148 and launch/train.sh";
    info.formula_version = "alpha-dpo/1: l = [u^a-(1-a)-a*u]/(a(a-1)); batch-mean a = mu*mean_all_ranks(sigma(h))";
    info.params = {
        prefdiff::objectives::beta_param(),
        sdk::ParamSpec::real("mu", 0.9999,
                             "Scale of the dynamic alpha (a = mu * mean sigma(h), or mu * sigma(h_i)), and "
                             "alpha itself before start_step. Default 0.9999: the released launch script. "
                             "Larger alpha = more robust (a -> 1 is the bounded u*log u + 1 - u).")
            .min(0.0, /*exclusive=*/true)
            .max(1.0)
            .range_note("mu must be in (0, 1]: alpha = mu*sigma(h) must stay in [0, 1], the domain of the "
                        "loss; above 1 the loss changes sign."),
        sdk::ParamSpec::string("alpha_mode", "batch-mean",
                               "How alpha is chosen. batch-mean (default, as the released code): one scalar "
                               "mu*mean sigma(h) over all ranks' current micro-batch. per-sample (as the "
                               "paper's text): a_i = mu*sigma(h_i), not redescending. fixed: the `alpha` "
                               "parameter.")
            .choices("batch-mean|per-sample|fixed"),
        sdk::ParamSpec::real("alpha",
                             0.0,
                             "Constant alpha, used and required only with alpha_mode = \"fixed\". Open "
                             "interval (0, 1): the loss is defined there; the ends are the limits -log u + "
                             "u - 1 (a -> 0, DPO-like) and u*log u + 1 - u (a -> 1, most robust).")
            .optional()
            .min(0.0, /*exclusive=*/true)
            .max(1.0, /*exclusive=*/true)
            .range_note("alpha must be in the open interval (0, 1), where [u^a-(1-a)-a*u]/(a(a-1)) is defined."),
        sdk::ParamSpec::integer("start_step", -1,
                                "First optimizer step with the dynamic alpha; before it alpha = mu. Default "
                                "-1: dynamic from step 0, as the released launch script (its argparse default "
                                "is 600; the paper's ablation moves it from 0 to 200). Ignored in fixed mode.")
            .min(-1.0)
            .range_note("start_step must be >= -1 (-1 and 0 both mean dynamic from the first step)."),
    };
    info.diagnostics = {"alpha"};
    // Capabilities are per library: batch-mean (the default) couples the pairs of a batch, so the flag
    // is set; per-sample and fixed modes are not coupled but share the library.
    info.capabilities = PD_CAP_BATCH_COUPLED;
    return info;
  }

  AlphaDpo(const sdk::Params& params, const sdk::Host& host)
      : host_(host),
        beta_(prefdiff::objectives::checked_beta(params, "alpha-dpo")),
        mu_(prefdiff::objectives::checked_real(params, "alpha-dpo", "mu", 0.0, true, 1.0, false,
                                               "Use mu in (0, 1]; the released default is 0.9999.")),
        start_step_(params.integer("start_step")) {
    const std::string mode = params.string("alpha_mode");
    if (mode == "batch-mean") mode_ = Mode::kBatchMean;
    else if (mode == "per-sample") mode_ = Mode::kPerSample;
    else if (mode == "fixed") mode_ = Mode::kFixed;
    else
      throw sdk::Error(PD_ERR_INVALID_ARGUMENT, "alpha-dpo: parameter 'alpha_mode' = \"" + mode +
                                                    "\" is not one of batch-mean|per-sample|fixed");
    if (mode_ == Mode::kFixed) {
      if (!params.has("alpha"))
        throw sdk::Error(PD_ERR_INVALID_ARGUMENT, "alpha-dpo: alpha_mode = \"fixed\" needs the parameter 'alpha' "
                                                      "in (0, 1); set alpha, or use alpha_mode = \"batch-mean\"");
      alpha_ = prefdiff::objectives::checked_real(params, "alpha-dpo", "alpha", 0.0, true, 1.0, true,
                                                  "Use alpha in the open interval (0, 1).");
    } else if (params.has("alpha")) {
      throw sdk::Error(PD_ERR_INVALID_ARGUMENT, "alpha-dpo: parameter 'alpha' is only used with alpha_mode = "
                                                    "\"fixed\" but alpha_mode = \"" + mode +
                                                    "\"; remove alpha or set alpha_mode = \"fixed\"");
    }
    if (start_step_ < -1)
      throw sdk::Error(PD_ERR_INVALID_ARGUMENT, "alpha-dpo: parameter 'start_step' = " + std::to_string(start_step_) +
                                                    " is below -1; use -1 (dynamic from the first step) or a step");
  }

  void evaluate(const sdk::ObjectiveBatch& batch, sdk::ObjectiveResult& out) override {
    prefdiff::sdk::math::dpo_margins(beta_, batch, out.margin);
    const bool warmup = mode_ != Mode::kFixed && batch.step < start_step_;
    if (mode_ == Mode::kFixed || warmup) {
      const double alpha = mode_ == Mode::kFixed ? alpha_ : mu_;
      for (size_t i = 0; i < batch.count; ++i) write(i, alpha, out);
      out.diagnostics[0] = alpha;
      return;
    }
    if (mode_ == Mode::kBatchMean) {
      double sums[2] = {0.0, static_cast<double>(batch.count)};  // sum of stopgrad(sigma(h)), pairs
      for (size_t i = 0; i < batch.count; ++i) sums[0] += math::sigmoid(out.margin[i]);
      host_.all_reduce_sum(sums, 2);
      // An empty global batch has no statistic: fall back to the pre-start value mu.
      const double alpha = sums[1] > 0.0 ? mu_ * (sums[0] / sums[1]) : mu_;
      for (size_t i = 0; i < batch.count; ++i) write(i, alpha, out);
      out.diagnostics[0] = alpha;
      return;
    }
    // per-sample: diagnostic = this rank's mean alpha_i (no collective: nothing here is coupled).
    double alpha_sum = 0.0;
    for (size_t i = 0; i < batch.count; ++i) {
      const double alpha = mu_ * math::sigmoid(out.margin[i]);
      write(i, alpha, out);
      alpha_sum += alpha;
    }
    out.diagnostics[0] = batch.count > 0 ? alpha_sum / static_cast<double>(batch.count) : mu_;
  }

 private:
  void write(size_t i, double alpha, sdk::ObjectiveResult& out) const {
    const double h = out.margin[i];
    out.loss[i] = prefdiff::objectives::alpha_math::loss(h, alpha);
    math::write_margin_gradient(beta_, prefdiff::objectives::alpha_math::dloss_dh(h, alpha), i, out);
  }

  sdk::Host host_;
  double beta_;
  double mu_;
  long long start_step_;
  Mode mode_ = Mode::kBatchMean;
  double alpha_ = 0.0;
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(AlphaDpo)
