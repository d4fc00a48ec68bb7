// Hölder-DPO (Fujisawa, Adachi, Osborne, NeurIPS 2025): a redescending loss in [-1, 0],
//   l(h) = -(1+g)*u^g + g*u^(1+g) = -u^g * (1 + g*v),   dl/dh = -g*(1+g)*u^g*v^2,
// with u = sigma(h), v = sigma(-h), u^g = exp(-g*softplus(-h)). The product form has no cancellation.
//
// Diagnostics: the contamination estimate of the gamma-type divergence,
//   eps_hat = 1 - E_data[u^g] / E_x[u^(1+g) + v^(1+g)],
// where the denominator is the model's own expectation of p^g over both outcomes of each pair
// (integral of p^(1+g)). The spec writes the denominator as E[u^(1+g)]; that ratio is >= 1 for every
// batch (u^g >= u^(1+g)), so it would always report eps_hat <= 0. With the model integral the estimate
// is 0 for an uninformative model and eps for a model that is sure about every clean pair and finds the
// flipped ones at u ~ 0 (the paper's tail-contamination assumption). "eps_hat" uses this global batch
// (sums all-reduced over ranks); "eps_hat_running" every pair seen since training started, which is the
// instance's state (saved as exact hex floats).
#include <cstdlib>
#include <sstream>

#include "objective_common.hpp"

namespace {

namespace sdk = prefdiff::sdk;
namespace math = prefdiff::sdk::math;
using prefdiff::objectives::format_number;

const char* const kStateHeader = "holder-dpo state v1";

std::string hex(double value) {
  char text[64];
  std::snprintf(text, sizeof(text), "%a", value);
  return text;
}

class HolderDpo final : public sdk::Objective {
 public:
  static sdk::PluginInfo info() {
    sdk::PluginInfo info;
    info.id = "holder-dpo";
    info.version = "1.0.0";
    info.summary = "Hölder-DPO: redescending loss -u^g(1+g*v) in [-1,0], with a contamination estimate";
    info.citation = "Fujisawa, Adachi, Osborne, Scalable Valuation of Human Feedback through Provably Robust "
                    "Model Alignment (Hölder-DPO), NeurIPS 2025, arXiv 2505.17859, section 4 and appendix D";
    info.formula_version = "holder-dpo/1: l = -(1+g)u^g + g u^(1+g); eps_hat = 1 - E[u^g]/E[u^(1+g)+v^(1+g)]";
    info.params = {
        prefdiff::objectives::beta_param(),
        sdk::ParamSpec::real("gamma", 2.0,
                             "Hölder exponent g > 0. Default 2: the paper's default. Larger g suppresses "
                             "low-likelihood (likely mislabeled) pairs more strongly; the gradient peaks at "
                             "u = g/(g+2) and vanishes as h -> -inf.")
            .min(0.0, /*exclusive=*/true)
            .range_note("gamma must be > 0: at gamma = 0 the loss is the constant -1 and has no gradient."),
    };
    info.diagnostics = {"eps_hat", "eps_hat_running"};
    info.capabilities = PD_CAP_STATEFUL;
    return info;
  }

  HolderDpo(const sdk::Params& params, const sdk::Host& host)
      : host_(host),
        beta_(prefdiff::objectives::checked_beta(params, "holder-dpo")),
        gamma_(prefdiff::objectives::checked_real(params, "holder-dpo", "gamma", 0.0, true, INFINITY, false,
                                                  "Use gamma > 0; the paper's default is 2.")) {}

  void evaluate(const sdk::ObjectiveBatch& batch, sdk::ObjectiveResult& out) override {
    prefdiff::sdk::math::dpo_margins(beta_, batch, out.margin);
    // sums[0] = sum u^g (observed labels), sums[1] = sum u^(1+g) + v^(1+g) (model integral), sums[2] = pairs.
    double sums[3] = {0.0, 0.0, static_cast<double>(batch.count)};
    for (size_t i = 0; i < batch.count; ++i) {
      const double h = out.margin[i];
      const double log_u = math::log_sigmoid(h), log_v = math::log_sigmoid(-h);
      const double v = math::sigmoid(-h);
      const double u_g = std::exp(gamma_ * log_u);
      out.loss[i] = -u_g * (1.0 + gamma_ * v);
      math::write_margin_gradient(beta_, -gamma_ * (1.0 + gamma_) * u_g * v * v, i, out);
      sums[0] += u_g;
      sums[1] += std::exp((1.0 + gamma_) * log_u) + std::exp((1.0 + gamma_) * log_v);
    }
    host_.all_reduce_sum(sums, 3);
    running_[0] += sums[0];
    running_[1] += sums[1];
    running_[2] += sums[2];
    out.diagnostics[0] = estimate(sums);
    out.diagnostics[1] = estimate(running_);
  }

  std::string save_state() const override {
    return std::string(kStateHeader) + "\ngamma=" + hex(gamma_) + "\nsum_u_gamma=" + hex(running_[0]) +
           "\nsum_model_power=" + hex(running_[1]) + "\npairs=" + hex(running_[2]) + "\n";
  }

  void load_state(const std::string& state) override {
    std::istringstream lines(state);
    std::string line;
    if (!std::getline(lines, line) || line != kStateHeader)
      throw sdk::Error(PD_ERR_INVALID_ARGUMENT, "holder-dpo: state does not start with '" + std::string(kStateHeader) +
                                                    "'; it was not written by this plugin version");
    const char* keys[] = {"gamma", "sum_u_gamma", "sum_model_power", "pairs"};
    double values[4];
    for (int k = 0; k < 4; ++k) {
      const std::string prefix = std::string(keys[k]) + "=";
      if (!std::getline(lines, line) || line.compare(0, prefix.size(), prefix) != 0)
        throw sdk::Error(PD_ERR_INVALID_ARGUMENT, "holder-dpo: state line " + std::to_string(k + 2) +
                                                      " should start with '" + prefix + "'");
      const char* text = line.c_str() + prefix.size();
      char* end = nullptr;
      values[k] = std::strtod(text, &end);
      if (end == text || *end != '\0' || !std::isfinite(values[k]) || values[k] < 0.0)
        throw sdk::Error(PD_ERR_INVALID_ARGUMENT, "holder-dpo: state value '" + line + "' is not a finite, "
                                                      "non-negative number");
    }
    if (values[0] != gamma_)
      throw sdk::Error(PD_ERR_INVALID_ARGUMENT, "holder-dpo: the state was saved with gamma=" + format_number(values[0]) +
                                                    " but this run has gamma=" + format_number(gamma_) +
                                                    "; the running contamination estimate would mix two "
                                                    "objectives. Resume with the same gamma.");
    running_[0] = values[1];
    running_[1] = values[2];
    running_[2] = values[3];
  }

 private:
  // 1 - E[u^g]/E[u^(1+g)+v^(1+g)]; 0 before any pair was seen (no evidence of contamination).
  static double estimate(const double* sums) {
    if (sums[2] == 0.0 || sums[1] == 0.0) return 0.0;
    // Exactly the ratio is <= 1/max(u,v) <= 2; only underflow at gamma in the thousands could break it.
    const double ratio = sums[0] / sums[1];
    return std::isfinite(ratio) ? 1.0 - ratio : 0.0;
  }

  sdk::Host host_;
  double beta_;
  double gamma_;
  double running_[3] = {0.0, 0.0, 0.0};
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(HolderDpo)
