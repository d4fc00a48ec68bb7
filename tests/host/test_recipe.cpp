// Valid recipes: extends chains merge key by key, overrides apply with type checks, defaults fill in,
// paths resolve relative to the recipe that sets them, and `recipe show` output loads back unchanged.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "prefdiff/recipe/recipe.hpp"

using namespace prefdiff;
namespace fs = std::filesystem;

namespace {

const std::string kGood = std::string(TEST_RECIPES_DIR) + "/good";

PluginRegistry test_registry() {
  PluginRegistry registry;
  for (const char* name : {"test_objective", "test_throwing", "test_noise", "test_dataset"})
    registry.scan({std::string(TEST_PLUGIN_ROOT) + "/" + name});
  return registry;
}

Recipe load(const std::string& file, const std::vector<std::string>& overrides = {}) {
  PluginRegistry registry = test_registry();
  return load_recipe(kGood + "/" + file, overrides, registry);
}

std::string first_problem(const std::string& file, const std::vector<std::string>& overrides) {
  try {
    load(file, overrides);
  } catch (const RecipeError& e) {
    return e.diagnostics().at(0).str();
  }
  return "";
}

}  // namespace

TEST(Recipe, ExtendsMergesKeyByKeyAndFillsDefaults) {
  const Recipe r = load("variant.toml");
  ASSERT_EQ(r.files.size(), 2u);
  EXPECT_EQ(fs::path(r.files[0]).filename(), "base.toml");
  const auto& v = r.values;
  EXPECT_EQ(v["run"]["name"], "variant");                 // the variant wins
  EXPECT_EQ(v["run"]["seed"], 7);                         // the base's, kept
  EXPECT_EQ(v["run"]["output_dir"], "runs");              // a default
  EXPECT_DOUBLE_EQ(v["optim"]["lr"].get<double>(), 2e-5);
  EXPECT_DOUBLE_EQ(v["optim"]["weight_decay"].get<double>(), 0.0);
  EXPECT_EQ(v["train"]["steps"], 100);
  EXPECT_EQ(v["train"]["grad_accum"], 128);
  EXPECT_EQ(v["schedule"]["warmup_steps"], 500);
  ASSERT_TRUE(v["objective"].is_array());
  ASSERT_EQ(v["objective"].size(), 1u);
  const auto& objective = v["objective"][0];
  EXPECT_EQ(objective["id"], "test-objective");
  EXPECT_DOUBLE_EQ(objective["weight"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(objective["scale"].get<double>(), 0.25);
  EXPECT_EQ(objective["mode"], "b");
  EXPECT_EQ(objective["count"], 3);
  EXPECT_EQ(objective["flag"], false);
  EXPECT_EQ(v["noise"]["id"], "none-test");
  EXPECT_EQ(v["noise"]["seed"], 0);
}

TEST(Recipe, PathsResolveRelativeToTheRecipeThatSetsThem) {
  const Recipe r = load("variant.toml");
  EXPECT_EQ(r.values["objective"][0]["table_path"], kGood + "/tables/t.json");  // set in variant.toml
  EXPECT_EQ(r.values["data"]["shards"], kGood + "/shards/*.h5");               // set in base.toml
  EXPECT_EQ(r.values["plugins"]["paths"][0], kGood + "/plugins-here");
}

TEST(Recipe, OverridesAreTypeCheckedAndApplied) {
  const Recipe r = load("variant.toml", {"optim.lr=3e-4", "objective.scale=0.75", "run.name=123",
                                         "train.nan_policy=skip", "objective.table_path=rel/x", "eval.every=5"});
  EXPECT_DOUBLE_EQ(r.values["optim"]["lr"].get<double>(), 3e-4);
  EXPECT_DOUBLE_EQ(r.values["objective"][0]["scale"].get<double>(), 0.75);
  EXPECT_EQ(r.values["run"]["name"], "123");  // a string key takes the text as typed
  EXPECT_EQ(r.values["train"]["nan_policy"], "skip");
  EXPECT_EQ(r.values["objective"][0]["table_path"], "rel/x");  // overrides: relative to the working directory
  EXPECT_EQ(r.values["eval"]["every"], 5);                     // a section the files never mention
  EXPECT_EQ(r.overrides.size(), 6u);
}

TEST(Recipe, WeightedObjectivesAndIndexedOverrides) {
  const Recipe r = load("weighted.toml", {"objective.1.scale=0.2"});
  ASSERT_EQ(r.values["objective"].size(), 2u);
  EXPECT_DOUBLE_EQ(r.values["objective"][0]["weight"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(r.values["objective"][1]["weight"].get<double>(), 2.0);
  EXPECT_EQ(r.values["objective"][1]["count"], 5);
  EXPECT_DOUBLE_EQ(r.values["objective"][1]["scale"].get<double>(), 0.2);
  EXPECT_DOUBLE_EQ(r.values["objective"][0]["scale"].get<double>(), 0.1);
  const std::string problem = first_problem("weighted.toml", {"objective.scale=0.2"});
  EXPECT_NE(problem.find("'objective' has 2 entries; address one as objective.<index>.<key>"), std::string::npos)
      << problem;
  const std::string huge = first_problem("weighted.toml", {"objective.99999999999999999999999.scale=1"});
  EXPECT_NE(huge.find("'objective' has no table entry 99999999999999999999999 (it has 2)"), std::string::npos) << huge;
}

// Problems come in file order along the extends chain (base first), by line within a file.
TEST(Recipe, ProblemsFollowTheExtendsChainInLineOrder) {
  const fs::path dir = fs::temp_directory_path() / ("prefdiff_order_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "middle.toml") << "extends = \"" << kGood << "/base.toml\"\n[train]\nstepz = 1\n\n\nbatch_sise = 2\n";
  std::ofstream(dir / "child.toml") << "extends = \"middle.toml\"\n[optim]\nlrr = 1\n";
  PluginRegistry registry = test_registry();
  try {
    load_recipe((dir / "child.toml").string(), {}, registry);
    FAIL() << "expected a RecipeError";
  } catch (const RecipeError& e) {
    ASSERT_EQ(e.diagnostics().size(), 3u);
    EXPECT_NE(e.diagnostics()[0].str().find("middle.toml:3"), std::string::npos) << e.diagnostics()[0].str();
    EXPECT_NE(e.diagnostics()[1].str().find("middle.toml:6"), std::string::npos) << e.diagnostics()[1].str();
    EXPECT_NE(e.diagnostics()[2].str().find("child.toml:3"), std::string::npos) << e.diagnostics()[2].str();
  }
  fs::remove_all(dir);
}

TEST(Recipe, BadOverridesAreReportedAllAtOnce) {
  try {
    load("variant.toml", {"optim.lr", "lr=1", "optim..lr=1", "optim.lr=", "optim.lr=abc", "objective.scale=2",
                          "objective.colour=red", "objectiv.beta=1"});
    FAIL() << "expected a RecipeError";
  } catch (const RecipeError& e) {
    std::string all;
    for (const auto& d : e.diagnostics()) all += d.str() + "\n";
    EXPECT_EQ(e.diagnostics().size(), 8u) << all;
    for (const char* part : {"override 'optim.lr': error: bad override syntax: expected key.path=value",
                             "override 'lr=1': error: bad override key 'lr': name a section and a key",
                             "segment '' must be non-empty", "override 'optim.lr' has an empty value",
                             "override 'optim.lr=abc': error: [optim] key 'lr': expected float, got \"abc\"",
                             "override 'objective.scale=2': error: [objective] 'test-objective' key 'scale': 2 is out of range; allowed [0, 1)",
                             "unknown key 'colour'",
                             // a section only the override names: blamed on the override, not on the file
                             "override 'objectiv.beta=1': error: unknown section [objectiv]; did you mean 'objective'?"})
      EXPECT_NE(all.find(part), std::string::npos) << "missing: " << part << "\nin:\n" << all;
  }
}

TEST(Recipe, ShowOutputLoadsBackToTheSameValues) {
  const Recipe r = load("variant.toml", {"optim.lr=3e-4"});
  const fs::path dir = fs::temp_directory_path() / ("prefdiff_show_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path shown = dir / "resolved.toml";
  std::ofstream(shown) << r.to_toml();
  PluginRegistry registry = test_registry();
  const Recipe again = load_recipe(shown.string(), {}, registry);
  EXPECT_EQ(again.values, r.values) << r.to_toml();
  fs::remove_all(dir);
}
