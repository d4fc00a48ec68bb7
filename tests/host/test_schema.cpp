#include <gtest/gtest.h>

#include "prefdiff/host/param_json.hpp"
#include "prefdiff/instance/did_you_mean.hpp"
#include "prefdiff/instance/params.hpp"

using namespace prefdiff;
using instance::ParamSpec;
using instance::ValueType;

namespace {

// A JSON value as the recipe gives it to the resolver.
std::optional<std::string> check_value(const ParamSpec& spec, const nlohmann::json& value) {
  return instance::check_value(spec, value_from_json(value));
}

ParamSpec spec(std::string name, ValueType type, const nlohmann::json& default_value, double min, double max,
               uint32_t bounds, std::vector<std::string> choices) {
  ParamSpec k;
  k.name = std::move(name);
  k.type = type;
  k.default_value = value_from_json(default_value);
  k.min = min;
  k.max = max;
  k.bounds = bounds;
  k.choices = std::move(choices);
  return k;
}

}  // namespace

TEST(DidYouMean, SuggestsCloseWordsOnly) {
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(closest_match("warmup_step", {"warmup_steps", "steps", "name"}), "warmup_steps");
  EXPECT_EQ(closest_match("trian", {"train", "run", "eval"}), "train");
  EXPECT_EQ(closest_match("banana", {"train", "run", "eval"}), "");
  EXPECT_EQ(did_you_mean("lrr", {"lr", "eps"}), "; did you mean 'lr'?");
}

TEST(Schema, RangesAreCheckedWithTheirBoundsKind) {
  ParamSpec eps;
  eps.name = "eps";
  eps.type = ValueType::Float;
  eps.min = 0;
  eps.max = 0.5;
  eps.bounds = PD_PARAM_HAS_MIN | PD_PARAM_HAS_MAX | PD_PARAM_MAX_EXCLUSIVE;
  eps.range_note = "1 - 2 eps divides";
  EXPECT_EQ(eps.describe_range(), "[0, 0.5)");
  EXPECT_FALSE(check_value(eps, 0.0));
  EXPECT_FALSE(check_value(eps, 0.4999));
  auto problem = check_value(eps, 0.5);
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find("allowed [0, 0.5)"), std::string::npos) << *problem;
  EXPECT_NE(problem->find("1 - 2 eps divides"), std::string::npos) << *problem;
  EXPECT_TRUE(check_value(eps, -1e-300));
  EXPECT_FALSE(check_value(eps, 0));  // an integer where a float is expected is fine
  EXPECT_TRUE(check_value(eps, "0.1"));
}

TEST(Schema, IntegersBooleansStringsAndChoices) {
  const ParamSpec steps = spec("steps", ValueType::Int, 10, 1, 0, PD_PARAM_HAS_MIN, {});
  EXPECT_FALSE(check_value(steps, 3));
  EXPECT_TRUE(check_value(steps, 3.5));
  EXPECT_TRUE(check_value(steps, 0));
  const ParamSpec mode = spec("mode", ValueType::String, "a", 0, 0, 0, {"a", "b"});
  EXPECT_FALSE(check_value(mode, "b"));
  auto problem = check_value(mode, "c");
  ASSERT_TRUE(problem);
  EXPECT_EQ(*problem, "'c' is not allowed; expected one of a, b");
  const ParamSpec flag = spec("flag", ValueType::Bool, false, 0, 0, 0, {});
  EXPECT_TRUE(check_value(flag, 1));
  const ParamSpec list = spec("paths", ValueType::StringList, nlohmann::json::array(), 0, 0, 0, {});
  EXPECT_FALSE(check_value(list, nlohmann::json::array({"a", "b"})));
  EXPECT_TRUE(check_value(list, nlohmann::json::array({"a", 1})));
}

TEST(Schema, PluginSpecsConvertWithDefaultsAndOptional) {
  pd_param_spec plugin{};
  plugin.struct_size = sizeof(plugin);
  plugin.type = PD_PARAM_STRING;
  plugin.name = "alpha_mode";
  plugin.default_string = "batch-mean";
  plugin.choices = "batch-mean|per-sample|fixed";
  const ParamSpec key = instance::spec_from_plugin(plugin);
  ASSERT_TRUE(key.default_value);
  EXPECT_EQ(key.default_value->text, "batch-mean");
  EXPECT_EQ(key.choices.size(), 3u);
  plugin.type = PD_PARAM_FLOAT;
  plugin.bounds = PD_PARAM_OPTIONAL;
  EXPECT_FALSE(instance::spec_from_plugin(plugin).default_value);
}
