// A valid objective for host tests, independent of the first-party plugins: DPO scaled by `scale`,
// with one parameter of every schema type, and the batch's global pair count as a diagnostic.
// TEST_PLUGIN_THROWS: create() refuses; TEST_PLUGIN_STATE_FAILS: stateful, but saving and loading fail.
#include <prefdiff/objective_math.hpp>
#include <prefdiff/sdk.hpp>

#ifndef TEST_PLUGIN_ID
#define TEST_PLUGIN_ID "test-objective"
#endif

namespace {
using namespace prefdiff::sdk;

class TestObjective final : public Objective {
 public:
  static PluginInfo info() {
    PluginInfo info;
    info.id = TEST_PLUGIN_ID;
    info.version = "0.0.1";
    info.summary = "host test objective";
    info.citation = "none";
    info.formula_version = "test-1";
    info.params = {ParamSpec::real("scale", 0.5, "Loss scale.").min(0.0).max(1.0, true),
                   ParamSpec::string("mode", "a", "A choice.").choices("a|b"),
                   ParamSpec::integer("count", 3, "An integer.").min(1),
                   ParamSpec::boolean("flag", false, "A flag."),
                   ParamSpec::string("table_path", "", "A path.").path().optional()};
    info.diagnostics = {"scale", "global_count"};
#ifdef TEST_PLUGIN_STATE_FAILS
    info.capabilities |= PD_CAP_STATEFUL;
#endif
    return info;
  }
  TestObjective(const Params& params, const Host&) : scale_(params.number("scale")) {
#ifdef TEST_PLUGIN_THROWS
    throw Error(PD_ERR_INVALID_ARGUMENT, "cannot create: the test plugin always refuses (scale " +
                                             std::to_string(scale_) + ")");
#endif
  }
  void evaluate(const ObjectiveBatch& batch, ObjectiveResult& out) override {
    math::dpo_margins(5000.0, batch, out.margin);
    for (size_t i = 0; i < batch.count; ++i) {
      out.loss[i] = scale_ * math::softplus(-out.margin[i]);
      math::write_margin_gradient(5000.0, scale_ * (math::sigmoid(out.margin[i]) - 1.0), i, out);
    }
    out.diagnostics[0] = scale_;
    out.diagnostics[1] = static_cast<double>(batch.global_count);
  }
#ifdef TEST_PLUGIN_STATE_FAILS
  std::string save_state() const override { throw Error(PD_ERR_INTERNAL, "the test state cannot be saved"); }
  void load_state(const std::string&) override { throw Error(PD_ERR_INVALID_ARGUMENT, "the test state cannot be loaded"); }
#endif

 private:
  double scale_;
};
}  // namespace

PREFDIFF_EXPORT_OBJECTIVE(TestObjective)
