// An IPO-style objective (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from
// Human Preferences") directly on the Diffusion-DPO margin: loss = (h - 1/(2 tau))^2. A complete
// third-party plugin: one class, one export macro, nothing but the SDK. Its id is example-ipo: prefdiff
// ships its own `ipo` (TRL's and diffusers' parametrisation, ((h - 1/2)/beta)^2; with tau = 1 this
// example is beta^2 times it, see docs/objectives.md).
#include <cmath>
#include <string>

#include <prefdiff/objective_math.hpp>
#include <prefdiff/sdk.hpp>

namespace {

using namespace prefdiff::sdk;

class Ipo final : public Objective {
 public:
  static PluginInfo info() {
    PluginInfo info;
    info.id = "example-ipo";
    info.version = "1.0.0";
    info.summary = "Identity preference optimisation: squared distance of the margin h to 1/(2 tau)";
    info.citation = "Azar et al., A General Theoretical Paradigm to Understand Learning from Human Preferences, AISTATS 2024";
    info.formula_version = "example-ipo/1: (h - 1/(2 tau))^2, h = -0.5 beta ((mw - rw) - (ml - rl))";
    info.params = {ParamSpec::real("beta", 5000.0, "Scale of the Diffusion-DPO margin (DiffusionDPO convention).").min(0.0, true),
                   ParamSpec::real("tau", 0.1, "Regularisation; the loss pulls h towards 1/(2 tau).").min(0.0, true)};
    return info;
  }

  Ipo(const Params& params, const Host&) : beta_(params.number("beta")), target_(0.5 / params.number("tau")) {}

  void evaluate(const ObjectiveBatch& batch, ObjectiveResult& out) override {
    math::dpo_margins(beta_, batch, out.margin);
    for (size_t i = 0; i < batch.count; ++i) {
      const double d = out.margin[i] - target_;
      out.loss[i] = d * d;
      // A quadratic loss overflows for |h| above ~1e154: say so rather than return inf.
      if (!std::isfinite(out.loss[i]))
        throw Error(PD_ERR_NON_FINITE, "example-ipo: the loss (h - 1/(2 tau))^2 overflows at h = " + std::to_string(out.margin[i]));
      math::write_margin_gradient(beta_, 2.0 * d, i, out);
    }
  }

 private:
  double beta_, target_;
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(Ipo)
