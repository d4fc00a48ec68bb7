// Batch-coupled objectives over two Gloo processes equal one process on the concatenated batch
// (alpha-DPO's batch-mean alpha, Hoelder-DPO's contamination estimate), and a vanished rank ends the
// others with an error instead of a hang.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <sstream>

#include <gtest/gtest.h>

#include "prefdiff/torch_host/distributed.hpp"
#include "../common/free_port.hpp"

namespace {

using prefdiff::testing::free_port;

// Starts `world` ranks of objective_ranks and returns their exit codes.
std::vector<int> launch(int world, const std::string& objective, const std::string& prefix, bool die = false) {
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    const pid_t pid = fork();
    if (pid == 0) {
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      const std::string out = prefix + "." + std::to_string(rank);
      if (die)
        execl(OBJECTIVE_RANKS_EXE, OBJECTIVE_RANKS_EXE, out.c_str(), objective.c_str(), "--die", (char*)nullptr);
      else
        execl(OBJECTIVE_RANKS_EXE, OBJECTIVE_RANKS_EXE, out.c_str(), objective.c_str(), (char*)nullptr);
      _exit(127);
    }
    pids.push_back(pid);
  }
  std::vector<int> codes;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  return codes;
}

struct Result {
  std::map<int, std::vector<double>> pairs;  // index -> dloss_dmodel_w, dloss_dmodel_l, loss
  std::map<std::string, double> diagnostics;
};

void read_into(const std::string& file, Result& result) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string kind;
    fields >> kind;
    if (kind == "pair") {
      int index;
      double w, l, loss;
      fields >> index >> w >> l >> loss;
      result.pairs[index] = {w, l, loss};
    } else {
      std::string name;
      double value;
      fields >> name >> value;
      result.diagnostics[name] = value;
    }
  }
}

void expect_close(double a, double b, const std::string& what) {
  EXPECT_LE(std::fabs(a - b), 1e-14 * std::max(1.0, std::fabs(b))) << what << ": " << a << " vs " << b;
}

void compare_one_vs_two_ranks(const std::string& objective) {
  const std::string prefix = ::testing::TempDir() + "/ranks_" + objective + "_" + std::to_string(getpid());
  ASSERT_EQ(launch(1, objective, prefix + "_one"), std::vector<int>({0}));
  ASSERT_EQ(launch(2, objective, prefix + "_two"), std::vector<int>({0, 0}));
  Result one, two;
  read_into(prefix + "_one.0", one);
  read_into(prefix + "_two.0", two);
  read_into(prefix + "_two.1", two);
  ASSERT_EQ(one.pairs.size(), 10u);
  ASSERT_EQ(two.pairs.size(), 10u);
  for (const auto& [index, values] : one.pairs)
    for (int k = 0; k < 3; ++k) expect_close(two.pairs[index][k], values[k], objective + " pair " + std::to_string(index));
  ASSERT_FALSE(one.diagnostics.empty());
  for (const auto& [name, value] : one.diagnostics) expect_close(two.diagnostics[name], value, objective + " " + name);
}

}  // namespace

TEST(Distributed, BatchMeanAlphaOverTwoGlooRanksEqualsOneRank) { compare_one_vs_two_ranks("alpha-dpo"); }

TEST(Distributed, HolderContaminationEstimateOverTwoGlooRanksEqualsOneRank) { compare_one_vs_two_ranks("holder-dpo"); }

TEST(Distributed, AVanishedRankEndsTheOthersWithAnErrorNotAHang) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int> codes = launch(2, "alpha-dpo", ::testing::TempDir() + "/ranks_die", /*die=*/true);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(codes[1], 0);   // the rank that left
  EXPECT_EQ(codes[0], 1);   // the survivor fails cleanly
  EXPECT_LT(seconds, 30.0);  // within the 5 s collective timeout plus start-up, not a hang
}

// ---------------------------------------------------------------------------------------- environment

namespace {

// Sets exactly these launcher variables (every other one is unset) and reads the environment.
prefdiff::DistributedEnv env_with(const std::map<std::string, std::string>& vars) {
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS",
                           "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "MASTER_ADDR",
                           "MASTER_PORT"})
    unsetenv(name);
  for (const auto& [name, value] : vars) setenv(name.c_str(), value.c_str(), 1);
  return prefdiff::DistributedEnv::from_environment();
}

std::string error_of(const std::map<std::string, std::string>& vars) {
  try {
    env_with(vars);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(DistributedEnv, SlurmMultiNodeTaskCountsAndPortRange) {
  const std::map<std::string, std::string> slurm = {{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                                                    {"MASTER_ADDR", "node0"}};
  auto with = [&](std::map<std::string, std::string> extra) {
    extra.insert(slurm.begin(), slurm.end());
    return extra;
  };
  // Two nodes of four tasks: Slurm writes "4(x2)" and sets no SLURM_NTASKS_PER_NODE without --ntasks-per-node.
  prefdiff::DistributedEnv e = env_with(with({{"SLURM_TASKS_PER_NODE", "4(x2)"}}));
  EXPECT_EQ(e.launcher, "slurm");
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 4);
  EXPECT_EQ(env_with(with({{"SLURM_TASKS_PER_NODE", "3,2"}})).local_world_size, 3);
  // SLURM_NTASKS_PER_NODE wins, and the other is then not read at all.
  EXPECT_EQ(env_with(with({{"SLURM_NTASKS_PER_NODE", "4"}, {"SLURM_TASKS_PER_NODE", "garbage"}})).local_world_size, 4);
  EXPECT_NE(error_of(with({{"SLURM_TASKS_PER_NODE", "garbage"}})).find("SLURM_TASKS_PER_NODE='garbage'"),
            std::string::npos);
  // A port outside 1..65535 is named instead of wrapping around in the uint16 the store takes.
  const std::string port = error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}});
  EXPECT_NE(port.find("MASTER_PORT=70000 is not a TCP port"), std::string::npos) << port;
  EXPECT_EQ(env_with({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "29501"}}).master_port, 29501);
}
