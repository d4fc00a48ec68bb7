// Deliberately broken objectives: the conformance kit must FAIL each of them (a kit that cannot fail is
// a defect). One source, compiled once per BROKEN_KIND; each is DPO with exactly one defect.
#include <cmath>
#include <string>

#include "prefdiff/objective_math.hpp"
#include "prefdiff/sdk.hpp"

#define BROKEN_WRONG_SIGN 1     // dl/dmodel_w has the wrong sign
#define BROKEN_ORDER 2          // the loss depends on the pair's position in the batch
#define BROKEN_HIDDEN_STATE 3   // a library-wide call counter leaks into the loss
#define BROKEN_UNSTABLE 4       // naive log(1 + exp(-h)): infinite at h = -1e4
#define BROKEN_BAD_DEFAULT 5    // schema default outside its own bounds
#define BROKEN_STATE 6          // stateful, but load_state ignores what it is given
#define BROKEN_CHAIN_RULE 7     // dl/dmodel_l uses beta instead of beta/2
#define BROKEN_CLAIMS_REFERENCE_FREE 8  // declares PD_CAP_REFERENCE_FREE but uses the references it gets
#define BROKEN_NAIVE_SAFEGUARD 9  // scales dl/dmodel_l by 1/2 (an SDPO-like rule) without making the loss
                                  // consistent: not the derivative of the loss it reports

namespace {

namespace sdk = prefdiff::sdk;
namespace math = prefdiff::sdk::math;

long long g_calls = 0;

class Broken final : public sdk::Objective {
 public:
  static sdk::PluginInfo info() {
    sdk::PluginInfo info;
    info.id = "broken";
    info.version = "0.0.1";
    info.summary = "DPO with one deliberate defect, for testing the conformance kit";
    info.citation = "none";
    info.formula_version = "broken/" + std::to_string(BROKEN_KIND);
    info.params = {sdk::ParamSpec::real("beta", 5000.0, "inverse temperature").min(0.0, true)};
#if BROKEN_KIND == BROKEN_BAD_DEFAULT
    info.params.push_back(sdk::ParamSpec::real("eps", 0.7, "flip rate").min(0.0).max(0.5, true));
#endif
#if BROKEN_KIND == BROKEN_STATE
    info.capabilities = PD_CAP_STATEFUL;
    info.diagnostics = {"calls"};
#elif BROKEN_KIND == BROKEN_CLAIMS_REFERENCE_FREE
    info.capabilities = PD_CAP_REFERENCE_FREE;
#elif BROKEN_KIND == BROKEN_NAIVE_SAFEGUARD
    info.capabilities = PD_CAP_NEEDS_ERROR_INNER_PRODUCTS;
#endif
    return info;
  }
  Broken(const sdk::Params& params, const sdk::Host&) : beta_(params.number("beta")) {}

  void evaluate(const sdk::ObjectiveBatch& batch, sdk::ObjectiveResult& out) override {
    ++g_calls;
    ++calls_;
#if BROKEN_KIND == BROKEN_CLAIMS_REFERENCE_FREE
    for (size_t i = 0; i < batch.count; ++i)  // the references are NULL only when the host skipped them
      out.margin[i] = batch.has_reference()
                          ? math::dpo_margin(beta_, batch.model_w[i], batch.model_l[i], batch.ref_w[i], batch.ref_l[i])
                          : -0.5 * beta_ * (batch.model_w[i] - batch.model_l[i]);
#else
    math::dpo_margins(beta_, batch, out.margin);
#endif
    for (size_t i = 0; i < batch.count; ++i) {
      const double h = out.margin[i];
      double loss = math::softplus(-h), dloss_dh = -math::sigmoid(-h);
#if BROKEN_KIND == BROKEN_ORDER
      loss += 1e-3 * static_cast<double>(i);
#elif BROKEN_KIND == BROKEN_HIDDEN_STATE
      loss += 1e-9 * static_cast<double>(g_calls);
#elif BROKEN_KIND == BROKEN_UNSTABLE
      loss = std::log(1.0 + std::exp(-h));
      dloss_dh = -std::exp(-h) / (1.0 + std::exp(-h));
#endif
      out.loss[i] = loss;
      math::write_margin_gradient(beta_, dloss_dh, i, out);
#if BROKEN_KIND == BROKEN_WRONG_SIGN
      out.dloss_dmodel_w[i] = -out.dloss_dmodel_w[i];
#elif BROKEN_KIND == BROKEN_CHAIN_RULE
      out.dloss_dmodel_l[i] = dloss_dh * beta_;
#elif BROKEN_KIND == BROKEN_NAIVE_SAFEGUARD
      out.dloss_dmodel_l[i] *= 0.5;
#endif
    }
#if BROKEN_KIND == BROKEN_STATE
    out.diagnostics[0] = static_cast<double>(calls_);
#endif
  }
  std::string save_state() const override { return std::to_string(calls_); }
  void load_state(const std::string&) override {}

 private:
  double beta_;
  long long calls_ = 0;
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(Broken)
