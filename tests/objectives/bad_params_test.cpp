// create() refuses bad parameters with a message naming the key, the value or range, and the fix.
#include "plugin_fixture.hpp"

#include <cmath>

namespace prefdiff_test {
namespace {

// The message create() gives for `params` (beta etc. filled with defaults), or "" if it succeeds. The
// values reach create() unchecked, as from a direct C caller: the plugin must refuse them itself.
std::string refusal(const std::string& stem, const pc::Params& params) {
  const pc::PluginLibrary plugin = objective(stem);
  pc::ParamSet values = resolve(plugin, {});
  for (const pc::GivenParam& p : params) values.set(p.name, p.value);
  try {
    pc::ObjectiveInstance instance(plugin, values);
  } catch (const pc::PluginError& e) {
    EXPECT_EQ(e.status(), PD_ERR_INVALID_ARGUMENT);
    return e.what();
  }
  return "";
}

void expect_mentions(const std::string& message, const std::vector<std::string>& parts) {
  ASSERT_FALSE(message.empty()) << "create() accepted the parameters";
  for (const std::string& part : parts) EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
}

TEST(BadParams, RdpoEpsHalfDividesByZero) {
  expect_mentions(refusal("rdpo", {real("eps", 0.5)}), {"'eps'", "0.5", "[0, 0.5)", "(1 - 2*eps)", "sign flips"});
  expect_mentions(refusal("rdpo", {real("eps", 0.7)}), {"'eps' = 0.7 ", "[0, 0.5)"});  // as typed, not 0.6999...
  expect_mentions(refusal("cdpo", {real("eps", 0.5)}), {"'eps'", "[0, 0.5)"});
  expect_mentions(refusal("cdpo", {real("eps", -0.1)}), {"'eps'", "-0.1"});
}

TEST(BadParams, RdpoSchemaCarriesTheRangeNote) {
  const pc::PluginLibrary library = objective("rdpo");
  const pd_plugin_descriptor& plugin = *library.descriptor;
  bool found = false;
  for (uint32_t k = 0; k < plugin.param_count; ++k)
    if (std::string(plugin.params[k].name) == "eps") {
      found = true;
      ASSERT_NE(plugin.params[k].range_note, nullptr);
      EXPECT_NE(std::string(plugin.params[k].range_note).find("divides by (1 - 2*eps)"), std::string::npos);
      EXPECT_TRUE(plugin.params[k].bounds & PD_PARAM_MAX_EXCLUSIVE);
      EXPECT_EQ(plugin.params[k].max, 0.5);
    }
  EXPECT_TRUE(found);
}

TEST(BadParams, HolderGammaMustBePositive) {
  expect_mentions(refusal("holder_dpo", {real("gamma", 0.0)}), {"'gamma'", "(0, inf)"});
  expect_mentions(refusal("holder_dpo", {real("gamma", -1.0)}), {"'gamma'", "-1"});
}

TEST(BadParams, BetaMustBePositive) {
  for (const char* stem : {"dpo", "cdpo", "rdpo", "holder_dpo", "alpha_dpo", "ipo", "dmpo", "sdpo"})
    expect_mentions(refusal(stem, {real("beta", 0.0)}), {"'beta'", "(0, inf)"});
}

TEST(BadParams, AlphaDpo) {
  expect_mentions(refusal("alpha_dpo", {real("mu", 1.5)}), {"'mu'", "1.5", "(0, 1]"});
  expect_mentions(refusal("alpha_dpo", {real("mu", 0.0)}), {"'mu'", "(0, 1]"});
  expect_mentions(refusal("alpha_dpo", {text("alpha_mode", "batch_mean")}),
                  {"'alpha_mode'", "batch_mean", "batch-mean|per-sample|fixed"});
  expect_mentions(refusal("alpha_dpo", {text("alpha_mode", "fixed")}), {"'alpha'", "fixed", "(0, 1)"});
  expect_mentions(refusal("alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", 1.0)}), {"'alpha'", "(0, 1)"});
  expect_mentions(refusal("alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", 0.0)}), {"'alpha'", "(0, 1)"});
  expect_mentions(refusal("alpha_dpo", {real("alpha", 0.5)}), {"'alpha'", "only used with alpha_mode"});
  expect_mentions(refusal("alpha_dpo", {integer("start_step", -2)}), {"'start_step'", "-2"});
}

TEST(BadParams, Dmpo) {
  expect_mentions(refusal("dmpo", {real("dmpo_alpha", 0.5)}), {"'dmpo_alpha' = 0.5", "[1e-06, 0.5)"});
  expect_mentions(refusal("dmpo", {real("dmpo_alpha", 0.0)}), {"'dmpo_alpha' = 0 ", "[1e-06, 0.5)"});
  expect_mentions(refusal("sdpo", {text("base_objective", "dmpo"), real("dmpo_alpha", 0.7)}), {"'dmpo_alpha'", "0.7"});
}

TEST(BadParams, Mapo) {
  expect_mentions(refusal("mapo", {real("beta_mapo", 0.0)}), {"'beta_mapo'", "(0, inf)", "0.1"});
  expect_mentions(refusal("mapo", {real("snr_value", -0.5)}), {"'snr_value' = -0.5", "(0, inf)"});
  expect_mentions(refusal("mapo", {integer("num_train_timesteps", 0)}), {"'num_train_timesteps'", "1000"});
}

TEST(BadParams, Sdpo) {
  expect_mentions(refusal("sdpo", {real("winner_preserving_mu", 1.5)}), {"'winner_preserving_mu' = 1.5", "[0, 1]"});
  expect_mentions(refusal("sdpo", {real("winner_preserving_mu", -0.1)}), {"'winner_preserving_mu'", "-0.1"});
  expect_mentions(refusal("sdpo", {text("base_objective", "dspo")}), {"'base_objective'", "dspo", "dpo|dmpo"});
  expect_mentions(refusal("sdpo", {real("lambda_eps", -1e-9)}), {"'lambda_eps' = -1e-09", "[0, inf)"});
}

// The SDK's Params refuses these for every plugin, whatever its own range checks.
TEST(BadParams, NonFiniteNumbersAndFractionalIntegers) {
  for (const char* stem : {"dpo", "cdpo", "rdpo", "holder_dpo", "alpha_dpo", "ipo", "dmpo", "sdpo"})
    expect_mentions(refusal(stem, {real("beta", INFINITY)}), {"'beta'", "inf", "not a finite number"});
  expect_mentions(refusal("mapo", {real("beta_mapo", NAN)}), {"'beta_mapo'", "not a finite number"});
  expect_mentions(refusal("holder_dpo", {real("gamma", NAN)}), {"'gamma'", "not a finite number"});
  pc::GivenParam fractional = integer("start_step", 0);
  fractional.value.number = 2.7;
  expect_mentions(refusal("alpha_dpo", {fractional}), {"'start_step'", "2.7", "not a whole number"});
}

TEST(BadParams, GoodValuesAreAccepted) {
  EXPECT_EQ(refusal("rdpo", {real("eps", 0.499)}), "");
  EXPECT_EQ(refusal("cdpo", {real("eps", 0.0)}), "");
  EXPECT_EQ(refusal("alpha_dpo", {real("mu", 1.0)}), "");
  EXPECT_EQ(refusal("alpha_dpo", {text("alpha_mode", "per-sample"), integer("start_step", 200)}), "");
  EXPECT_EQ(refusal("alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", 1e-300)}), "");
}

TEST(BadParams, KitRefusesUnknownNamesWithTheKnownOnes) {
  try {
    resolve(objective("holder_dpo"), {real("gama", 2.0)});
    FAIL() << "unknown parameter accepted";
  } catch (const std::invalid_argument& e) {
    expect_mentions(e.what(), {"'gama'", "beta, gamma"});
  }
}

}  // namespace
}  // namespace prefdiff_test
