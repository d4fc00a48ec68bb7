// DPO that answers with a NaN loss and NaN gradients at one step (`nan_step`), to test the trainer's
// nan_policy. Deliberately non-conforming: only for tests.
#include <cmath>

#include <prefdiff/objective_math.hpp>
#include <prefdiff/sdk.hpp>

namespace {
using namespace prefdiff::sdk;

class NanAtStep final : public Objective {
 public:
  static PluginInfo info() {
    PluginInfo info;
    info.id = "nan-at-step";
    info.version = "0.0.1";
    info.summary = "DPO with a NaN at one step (tests only)";
    info.citation = "none";
    info.formula_version = "test";
    info.params = {ParamSpec::real("beta", 5000.0, "Margin scale.").min(0.0, true),
                   ParamSpec::integer("nan_step", 2, "The optimizer step whose loss is NaN (-1: every step).").min(-1)};
    return info;
  }
  NanAtStep(const Params& p, const Host&) : beta_(p.number("beta")), nan_step_(p.integer("nan_step")) {}
  void evaluate(const ObjectiveBatch& batch, ObjectiveResult& out) override {
    math::dpo_margins(beta_, batch, out.margin);
    for (size_t i = 0; i < batch.count; ++i) {
      const bool poison = nan_step_ < 0 || batch.step == nan_step_;
      out.loss[i] = poison ? NAN : math::softplus(-out.margin[i]);
      math::write_margin_gradient(beta_, poison ? NAN : math::sigmoid(out.margin[i]) - 1.0, i, out);
    }
  }

 private:
  double beta_;
  long long nan_step_;
};
}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(NanAtStep)
