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

// ---- plugins that break the contract are named, never a silent crash or a silent exit 0

namespace {

Result run_with(const std::string& plugin_folder, const std::string& args) {
  return run(std::string("--plugin-path ") + TEST_PLUGIN_ROOT + "/" + plugin_folder + " " + args);
}

void expect_contains(const Result& r, const std::string& part) {
  EXPECT_NE(r.output.find(part), std::string::npos) << "expected '" << part << "' in:\n" << r.output;
}

}  // namespace

TEST(CliPluginFaults, NullFunctionPointerIsRefusedAtLoadNamingTheFunction) {
  const std::string broken = std::string(TEST_PLUGIN_ROOT) + "/broken_null_function/libbroken_null_function.so";
  for (const std::string& args : {std::string("plugins list"), "plugins check " + broken, "plugins eval " + broken + " --margins 0",
                                  "recipe validate " + kGood + "objective_without_params.toml objective.id=broken",
                                  "train " + kGood + "objective_without_params.toml objective.id=broken --dry-run"}) {
    const Result r = run_with("broken_null_function", args);
    EXPECT_NE(r.code, 0) << args << "\n" << r.output;
    EXPECT_LT(r.code, 128) << "killed by a signal: " << args << "\n" << r.output;
    expect_contains(r, "libbroken_null_function.so");
    expect_contains(r, "objective 'broken' leaves 'create' NULL in its function table");
  }
}

TEST(CliPluginFaults, ACrashingPluginFailsItsCheckByName) {
  for (const auto& [folder, signal] : {std::pair<std::string, std::string>{"misbehaving_segv", "SIGSEGV"},
                                       {"misbehaving_abort", "SIGABRT"}}) {
    const std::string id = "misbehaving-" + folder.substr(12);
    const Result r = run_with(folder, "plugins check " + id);
    EXPECT_EQ(r.code, 4) << r.output;
    expect_contains(r, "FAIL the plugin keeps the process alive");
    expect_contains(r, "fatal signal " + signal);
    expect_contains(r, "objective '" + id + "'");
    expect_contains(r, "during evaluate()");
    expect_contains(r, "PASS descriptor");  // the checks before the crash are kept
  }
}

TEST(CliPluginFaults, AnExitInsideAPluginIsNeverSuccess) {
  Result r = run_with("misbehaving_exit", "plugins check misbehaving-exit");
  EXPECT_EQ(r.code, 4) << r.output;
  expect_contains(r, "objective 'misbehaving-exit'");
  expect_contains(r, "called exit(0) during evaluate()");
  // A load-time constructor that calls exit(0): every command that scans the plugin path says which file.
  for (const std::string& args : {std::string("plugins list"), "recipe validate " + kGood + "variant.toml",
                                  "train " + kGood + "variant.toml --dry-run"}) {
    r = run_with("misbehaving_exit_when_loaded", args);
    EXPECT_EQ(r.code, 4) << args << "\n" << r.output;
    expect_contains(r, "libmisbehaving_exit_when_loaded.so");
    expect_contains(r, "called exit(0) during dlopen");
  }
}

TEST(CliPluginFaults, EscapedExceptionsNameThePluginAndTheCall) {
  Result r = run_with("misbehaving_throw_in_entry", "plugins list");
  EXPECT_EQ(r.code, 4) << r.output;
  expect_contains(r, "libmisbehaving_throw_in_entry.so");
  expect_contains(r, "let a C++ exception (the misbehaving plugin throws out of its entry point) escape from its entry point");
  r = run_with("misbehaving_throw", "plugins eval misbehaving-throw --margins 0,1");
  EXPECT_EQ(r.code, 4) << r.output;
  expect_contains(r, "objective 'misbehaving-throw'");
  expect_contains(r, "escape from evaluate()");
}

// ---- recipe validation: paths, list form, bounded output

TEST(CliRecipeChecks, MissingModelAndShardsAreRefusedBeforeAnythingRuns) {
  const std::string sd15 = std::string(PREFDIFF_SOURCE_DIR) + "/recipes/sd15/dpo.toml";
  for (const std::string& command : {std::string("recipe validate "), std::string("train --dry-run ")}) {
    const Result r = run(command + sd15);
    EXPECT_EQ(r.code, 3) << r.output;
    expect_contains(r, "[backbone] pretrained = ");
    expect_contains(r, "does not exist");
    expect_contains(r, "[data] 'hdf5-pairs' key 'shards'");
    expect_contains(r, "matches no file");
  }
  const std::string empty = ::testing::TempDir() + "/prefdiff_empty_recipe.toml";
  std::fclose(std::fopen(empty.c_str(), "w"));
  const Result r = run("recipe validate " + empty);
  EXPECT_EQ(r.code, 3) << r.output;
  expect_contains(r, "[backbone] has no weights");
  expect_contains(r, "key 'shards' is empty");
  std::remove(empty.c_str());
}

TEST(CliRecipeChecks, ASingleObjectiveTableIsEntryZeroOfTheListForm) {
  Result r = run("recipe show " + kGood + "variant.toml objective.0.scale=0.75");
  EXPECT_EQ(r.code, 0) << r.output;
  expect_contains(r, "scale = 0.75");
  r = run("recipe validate " + kGood + "variant.toml objective.1.scale=0.75");
  EXPECT_EQ(r.code, 3) << r.output;
  expect_contains(r, "'objective' is a single [objective] table, so it has only entry 0");
  expect_contains(r, "several [[objective]] tables");
}

TEST(CliRecipeChecks, ThousandsOfUnknownKeysPrintTheFirstHundredAndACount) {
  const std::string file = ::testing::TempDir() + "/prefdiff_many_keys.toml";
  {
    FILE* f = std::fopen(file.c_str(), "w");
    std::fprintf(f, "extends = \"%sbase.toml\"\n[train]\n", kGood.c_str());
    for (int i = 0; i < 20000; ++i) std::fprintf(f, "unknown_%05d = %d\n", i, i);
    std::fclose(f);
  }
  const Result r = run("recipe validate " + file);
  EXPECT_EQ(r.code, 3) << r.output.substr(0, 2000);
  size_t lines = 0;
  for (char c : r.output) lines += c == '\n' ? 1 : 0;
  EXPECT_LE(lines, 110u) << r.output.substr(0, 2000);
  expect_contains(r, "prefdiff_many_keys.toml:3:17: error: [train] unknown key 'unknown_00000'");
  expect_contains(r, "... and 19900 more problem(s) not shown (20000 in all)");
  std::remove(file.c_str());
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
