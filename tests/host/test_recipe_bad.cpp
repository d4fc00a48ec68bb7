// Every file in recipes/bad/ is a deliberately broken recipe whose header states what the error must
// say: "# expect: <text>" (one or more), optionally "# at: line:column" of the first problem and
// "# count: N" problems in total.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "prefdiff/recipe/recipe.hpp"

using namespace prefdiff;
namespace fs = std::filesystem;

namespace {

struct Expectation {
  std::vector<std::string> messages;
  std::string at;
  int count = -1;
};

Expectation read_expectation(const fs::path& file) {
  Expectation e;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line) && line.rfind("#", 0) == 0) {
    if (line.rfind("# expect: ", 0) == 0) e.messages.push_back(line.substr(10));
    if (line.rfind("# at: ", 0) == 0) e.at = line.substr(6);
    if (line.rfind("# count: ", 0) == 0) e.count = std::stoi(line.substr(9));
  }
  return e;
}

std::vector<std::string> bad_recipes() {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(std::string(TEST_RECIPES_DIR) + "/bad"))
    if (entry.path().extension() == ".toml") files.push_back(entry.path().filename().string());
  std::sort(files.begin(), files.end());
  return files;
}

class BadRecipe : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(BadRecipe, IsRefusedWithTheExpectedMessage) {
  const fs::path file = fs::path(TEST_RECIPES_DIR) / "bad" / GetParam();
  const Expectation expected = read_expectation(file);
  ASSERT_FALSE(expected.messages.empty()) << file << " states no '# expect:' line";
  PluginRegistry registry;
  for (const char* name : {"test_objective", "test_throwing", "test_noise", "test_dataset"})
    registry.scan({std::string(TEST_PLUGIN_ROOT) + "/" + name});
  try {
    load_recipe(file.string(), {}, registry);
    FAIL() << file << " was accepted";
  } catch (const RecipeError& e) {
    std::string all;
    for (const Diagnostic& d : e.diagnostics()) all += d.str() + "\n";
    for (const std::string& message : expected.messages)
      EXPECT_NE(all.find(message), std::string::npos) << "expected: " << message << "\ngot:\n" << all;
    const Diagnostic& first = e.diagnostics().front();
    EXPECT_NE(first.where.file.find(GetParam()), std::string::npos) << "the error must name the file: " << all;
    if (!expected.at.empty())
      EXPECT_EQ(std::to_string(first.where.line) + ":" + std::to_string(first.where.column), expected.at) << all;
    if (expected.count >= 0) EXPECT_EQ(static_cast<int>(e.diagnostics().size()), expected.count) << all;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BadRecipe, ::testing::ValuesIn(bad_recipes()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = fs::path(info.param).stem().string();
                           for (char& c : name)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

TEST(BadRecipes, AtLeastFifteenFixtures) { EXPECT_GE(bad_recipes().size(), 15u); }
