// A plugin as a third party built it against prefdiff SDK 1.0 (ABI 1.0): compiled with the verbatim 1.0
// headers in tests/fixtures/sdk_abi_1_0 only. Its descriptor says ABI 1.0, its SDK layer reads
// pd_objective_inputs only up to global_count and always needs ref_w/ref_l. A 1.1 host must keep loading
// and calling it; its maths is dpo's, so its outputs must equal the first-party dpo's bit for bit.
#include <prefdiff/objective_math.hpp>
#include <prefdiff/sdk.hpp>

static_assert(PD_ABI_MINOR == 0, "this plugin must be built against the ABI 1.0 fixture headers");

namespace {

using namespace prefdiff::sdk;

class LegacyDpo final : public Objective {
 public:
  static PluginInfo info() {
    PluginInfo info;
    info.id = "legacy-dpo";
    info.version = "1.0.0";
    info.summary = "Diffusion-DPO built against the ABI 1.0 SDK (compatibility fixture)";
    info.citation = "Wallace et al., CVPR 2024";
    info.formula_version = "dpo/1";
    info.params = {ParamSpec::real("beta", 5000.0, "Diffusion-DPO beta.").min(0.0, true)};
    return info;
  }
  LegacyDpo(const Params& params, const Host&) : beta_(params.number("beta")) {}
  void evaluate(const ObjectiveBatch& batch, ObjectiveResult& out) override {
    math::dpo_margins(beta_, batch, out.margin);
    for (size_t i = 0; i < batch.count; ++i) {
      out.loss[i] = math::softplus(-out.margin[i]);
      math::write_margin_gradient(beta_, -math::sigmoid(-out.margin[i]), i, out);
    }
  }

 private:
  double beta_;
};

}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(LegacyDpo)
