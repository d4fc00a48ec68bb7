#include <gtest/gtest.h>

#include "prefdiff/host/did_you_mean.hpp"
#include "prefdiff/host/schema.hpp"

using namespace prefdiff;

TEST(DidYouMean, SuggestsCloseWordsOnly) {
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(closest_match("warmup_step", {"warmup_steps", "steps", "name"}), "warmup_steps");
  EXPECT_EQ(closest_match("trian", {"train", "run", "eval"}), "train");
  EXPECT_EQ(closest_match("banana", {"train", "run", "eval"}), "");
  EXPECT_EQ(did_you_mean("lrr", {"lr", "eps"}), "; did you mean 'lr'?");
}

TEST(Schema, RangesAreCheckedWithTheirBoundsKind) {
  KeySpec eps;
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
  KeySpec steps{"steps", ValueType::Int, "", 10, 1, 0, PD_PARAM_HAS_MIN, {}, ""};
  EXPECT_FALSE(check_value(steps, 3));
  EXPECT_TRUE(check_value(steps, 3.5));
  EXPECT_TRUE(check_value(steps, 0));
  KeySpec mode{"mode", ValueType::String, "", "a", 0, 0, 0, {"a", "b"}, ""};
  EXPECT_FALSE(check_value(mode, "b"));
  auto problem = check_value(mode, "c");
  ASSERT_TRUE(problem);
  EXPECT_EQ(*problem, "'c' is not allowed; expected one of a, b");
  KeySpec flag{"flag", ValueType::Bool, "", false, 0, 0, 0, {}, ""};
  EXPECT_TRUE(check_value(flag, 1));
  KeySpec list{"paths", ValueType::StringList, "", nlohmann::json::array(), 0, 0, 0, {}, ""};
  EXPECT_FALSE(check_value(list, nlohmann::json::array({"a", "b"})));
  EXPECT_TRUE(check_value(list, nlohmann::json::array({"a", 1})));
}

TEST(Schema, PluginSpecsConvertWithDefaultsAndOptional) {
  pd_param_spec spec{};
  spec.struct_size = sizeof(spec);
  spec.type = PD_PARAM_STRING;
  spec.name = "alpha_mode";
  spec.default_string = "batch-mean";
  spec.choices = "batch-mean|per-sample|fixed";
  KeySpec key = key_spec_from_plugin(spec);
  EXPECT_EQ(key.default_value, "batch-mean");
  EXPECT_EQ(key.choices.size(), 3u);
  spec.type = PD_PARAM_FLOAT;
  spec.bounds = PD_PARAM_OPTIONAL;
  EXPECT_TRUE(key_spec_from_plugin(spec).default_value.is_null());
}
