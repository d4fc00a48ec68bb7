// Flattened recipe comparison used by resume.
#include <gtest/gtest.h>

#include "prefdiff/run/recipe_diff.hpp"

using namespace prefdiff::run;
using nlohmann::json;

namespace {
json recipe() {
  return json::parse(R"({
    "run": {"name": "a", "output_dir": "runs", "seed": 0},
    "train": {"steps": 2000, "batch_size": 4, "grad_clip": 1.0},
    "log": {"every": 10, "progress": "auto"},
    "eval": {"every": 0, "pairs": 256},
    "plugins": {"paths": ["p1", "p2"]},
    "objective": [{"id": "dpo", "weight": 1.0, "beta": 5000}, {"id": "alpha-dpo", "weight": 0.5}],
    "noise": {}
  })");
}
std::vector<std::string> keys(const std::vector<RecipeDifference>& d) {
  std::vector<std::string> k;
  for (const RecipeDifference& x : d) k.push_back(x.key);
  return k;
}
}  // namespace

TEST(RecipeDiff, FlattensTablesAndArraysOfTables) {
  std::map<std::string, json> flat = flatten_recipe(recipe());
  EXPECT_EQ(flat.at("train.batch_size"), 4);
  EXPECT_EQ(flat.at("objective[1].id"), "alpha-dpo");
  EXPECT_EQ(flat.at("objective[0].beta"), 5000);
  EXPECT_EQ(flat.at("plugins.paths"), json::array({"p1", "p2"}));  // scalar arrays are one value
  EXPECT_EQ(flat.at("noise"), json::object());                      // an empty table is kept
  EXPECT_EQ(flat.count("train"), 0u);
}

TEST(RecipeDiff, ReportsChangedAddedAndRemovedKeysSorted) {
  json a = recipe(), b = recipe();
  b["train"]["batch_size"] = 8;
  b["objective"][0]["beta"] = 2500;
  b["objective"][1].erase("weight");
  b["optim"] = {{"lr", 1e-5}};
  b["plugins"]["paths"] = json::array({"p1"});
  std::vector<RecipeDifference> d = diff_recipes(a, b);
  EXPECT_EQ(keys(d), (std::vector<std::string>{"objective[0].beta", "objective[1].weight", "optim.lr",
                                               "plugins.paths", "train.batch_size"}));
  EXPECT_EQ(d[4].str(), "train.batch_size: 4 -> 8");
  EXPECT_EQ(d[1].str(), "objective[1].weight: 0.5 -> absent");
  EXPECT_EQ(d[2].str(), "optim.lr: absent -> 1e-05");
  EXPECT_TRUE(diff_recipes(a, a).empty());
}

TEST(RecipeDiff, NumbersCompareByValue) {
  json a = recipe(), b = recipe();
  b["train"]["grad_clip"] = 1;  // 1 and 1.0: the same setting
  EXPECT_TRUE(diff_recipes(a, b).empty());
  a["run"]["seed"] = 9007199254740993LL;  // 2^53 + 1: equal as doubles, different seeds
  b["run"]["seed"] = 9007199254740992LL;
  EXPECT_EQ(keys(diff_recipes(a, b)), std::vector<std::string>{"run.seed"});
  b["train"]["batch_size"] = "4";  // a string is not the number
  EXPECT_EQ(diff_recipes(a, b).size(), 2u);
}

TEST(RecipeDiff, Globs) {
  EXPECT_TRUE(key_matches("log.every", "log.*"));
  EXPECT_TRUE(key_matches("log.every", "log.every"));
  EXPECT_FALSE(key_matches("log.every", "log.ever"));
  EXPECT_FALSE(key_matches("logx.every", "log.*"));
  EXPECT_TRUE(key_matches("objective[3].weight", "objective[*].weight"));
  EXPECT_FALSE(key_matches("objective[3].beta", "objective[*].weight"));
  EXPECT_TRUE(key_matches("anything", "*"));
  EXPECT_TRUE(key_matches("a.b.c", "a*c"));
}

TEST(RecipeDiff, DefaultResumeRulesAllowLengthAndLoggingOnly) {
  json a = recipe(), b = recipe();
  b["train"]["steps"] = 4000;
  b["log"]["every"] = 50;
  b["log"]["progress"] = "plain";
  b["eval"]["every"] = 100;
  EXPECT_TRUE(disallowed_differences(a, b, default_resume_may_differ()).empty());
  b["train"]["batch_size"] = 8;
  b["eval"]["pairs"] = 10;
  b["objective"][0]["beta"] = 1;
  EXPECT_EQ(keys(disallowed_differences(a, b, default_resume_may_differ())),
            (std::vector<std::string>{"eval.pairs", "objective[0].beta", "train.batch_size"}));
  EXPECT_EQ(keys(disallowed_differences(a, b, {"train.*", "eval.*", "objective[*].beta", "log.*"})),
            std::vector<std::string>{});
}
