// The `prefdiff` command end to end: output and documented exit codes.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>

#include <gtest/gtest.h>

namespace {

struct Result {
  int code;
  std::string output;  // stdout and stderr together
};

Result run(const std::string& args) {
  const std::string command = std::string(PREFDIFF_EXE) + " --plugin-path " + TEST_PLUGIN_ROOT +
                              "/test_objective --plugin-path " + TEST_PLUGIN_ROOT + "/test_noise --plugin-path " +
                              TEST_PLUGIN_ROOT + "/test_dataset " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  Result result{-1, ""};
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) result.output.append(buffer.data(), n);
  const int status = pclose(pipe);
  result.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

const std::string kGood = std::string(TEST_RECIPES_DIR) + "/good/";
const std::string kBad = std::string(TEST_RECIPES_DIR) + "/bad/";

}  // namespace

TEST(Cli, VersionNamesLibTorchCudaAndAbi) {
  const Result r = run("version");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("LibTorch 2."), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("CUDA: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("plugin ABI 1.1"), std::string::npos) << r.output;
}

TEST(Cli, ListsAndDescribesPlugins) {
  Result r = run("plugins list");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("test-objective   objective       0.0.1"), std::string::npos) << r.output;
  r = run("plugins describe test-objective");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("scale"), std::string::npos);
  EXPECT_NE(r.output.find("[0, 1)"), std::string::npos) << r.output;
  r = run("plugins describe test-objectiv");
  EXPECT_EQ(r.code, 4) << r.output;
  EXPECT_NE(r.output.find("did you mean 'test-objective'?"), std::string::npos) << r.output;
}

TEST(Cli, BrokenPluginOnThePathMakesListFailButStillList) {
  const Result r = run(std::string("--plugin-path ") + TEST_PLUGIN_ROOT + "/broken_abi_major plugins list");
  EXPECT_EQ(r.code, 4) << r.output;
  EXPECT_NE(r.output.find("test-objective"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ABI major mismatch"), std::string::npos) << r.output;
}

TEST(Cli, RecipeValidateShowAndDryRun) {
  Result r = run("recipe validate " + kGood + "variant.toml optim.lr=1e-4");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("valid (2 file(s) in the extends chain, 1 override(s))"), std::string::npos) << r.output;
  r = run("recipe show " + kGood + "variant.toml optim.lr=1e-4");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("lr = 0.0001"), std::string::npos) << r.output;
  r = run("train " + kGood + "weighted.toml --dry-run");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("objective 1:  test-objective"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("no data read, nothing written"), std::string::npos) << r.output;
}

TEST(Cli, InvalidRecipeExitsThreeWithEveryProblem) {
  const Result r = run("recipe validate " + kBad + "17_several_problems.toml");
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("4 problem(s); nothing was run."), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("17_several_problems.toml:7:8: error: [run] key 'seed'"), std::string::npos) << r.output;
}

TEST(Cli, BadCommandLineExitsTwo) {
  EXPECT_EQ(run("--no-such-flag version").code, 2);
  EXPECT_EQ(run("recipe validate").code, 2);
  EXPECT_EQ(run("").code, 2);
}

TEST(Cli, MissingRecipeFileIsAnError) {
  const Result r = run("recipe validate /nonexistent/recipe.toml");
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("recipe file '/nonexistent/recipe.toml' does not exist"), std::string::npos) << r.output;
}

// Issue 20: `data validate` exited 2 (the usage status) on a bad shard, while its help and the docs say 1.
TEST(Cli, DataValidateExitsOneOnABadShard) {
  if (run("data --help").code != 0) GTEST_SKIP() << "this build has no `data` commands";
  const std::string shard = ::testing::TempDir() + "/not_a_shard_" + std::to_string(::getpid()) + ".h5";
  FILE* f = std::fopen(shard.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("this is not HDF5\n", f);
  std::fclose(f);
  const Result r = run("data validate " + shard);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find(shard), std::string::npos) << r.output;
  std::remove(shard.c_str());
  EXPECT_EQ(run("data validate").code, 2) << "a missing argument is still a usage error";
}
