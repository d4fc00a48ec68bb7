// `prefdiff launch` with real ranks training the tiny world: it never waits forever on a rank (a stopped
// rank is killed after the grace period) and never leaves ranks behind (SIGTERM is forwarded; SIGKILL of
// the launcher ends the ranks through PR_SET_PDEATHSIG). Issue 20, items 2 and 3.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "../common/prefdiff_process.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kRecipe = std::string(TEST_RECIPES_DIR) + "/tiny.toml";

std::string read(const fs::path& path) { return prefdiff::testing::read_file(path); }

// The process's state letter from /proc/<pid>/stat ('Z': a zombie), or 0 when there is no such process.
char state_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  const size_t close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? 0 : stat[close + 2];
}

// Ended: gone, or a zombie nobody reaped yet (pid 1 of a container may not reap).
bool ended(pid_t pid) {
  const char state = state_of(pid);
  return state == 0 || state == 'Z' || state == 'X';
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    long ppid = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %ld", &state, &ppid) == 2 && ppid == parent)
      out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

// The exit status (as wait_exit gives it) if `pid` ends within `limit`, else nullopt.
std::optional<int> wait_within(pid_t pid, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(20ms);
  }
  return std::nullopt;
}

bool all_end_within(const std::vector<pid_t>& pids, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    bool all = true;
    for (pid_t p : pids) all = all && ended(p);
    if (all) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// `prefdiff launch --nproc 2` of a long tiny-world run, returned once rank 0 has logged a step (both ranks
// are then in the training loop). Whatever a test leaves running is killed when it ends.
class Launch {
 public:
  // `launcher_options`: e.g. {"--grace-period", "2"}.
  Launch(const std::string& name, double timeout_s, const std::vector<std::string>& launcher_options = {}) {
    out_ = prefdiff::testing::fresh_dir("prefdiff_launch", name);
    log_ = out_ / "launch.log";
    std::vector<std::string> args{"launch", "--nproc", "2"};
    args.insert(args.end(), launcher_options.begin(), launcher_options.end());
    for (const std::string& a : {std::string("--"), std::string("train"), kRecipe, "run.output_dir=" + out_.string(),
                                 "run.name=" + name, std::string("train.steps=100000"),
                                 std::string("train.checkpoint_every=100000"), std::string("eval.every=0"),
                                 std::string("train.threads=1"), "distributed.timeout_s=" + std::to_string(timeout_s)})
      args.push_back(a);
    launcher_ = prefdiff::testing::spawn(PREFDIFF_EXE, args, log_, {std::string("PREFDIFF_CACHE=") + TEST_CACHE_DIR});
    const fs::path metrics = out_ / name / "metrics.jsonl";
    const auto deadline = Clock::now() + 600s;  // the first test may build the tiny world's cache
    std::error_code ec;
    while ((!fs::exists(metrics, ec) || fs::file_size(metrics, ec) == 0) && Clock::now() < deadline &&
           !ended(launcher_))
      std::this_thread::sleep_for(20ms);
    ranks_ = children_of(launcher_);
  }
  ~Launch() {
    for (pid_t p : ranks_) ::kill(p, SIGKILL);
    ::kill(launcher_, SIGKILL);
    ::waitpid(launcher_, nullptr, WNOHANG);
  }
  pid_t launcher() const { return launcher_; }
  const std::vector<pid_t>& ranks() const { return ranks_; }
  std::string log() const { return read(log_); }

 private:
  fs::path out_, log_;
  pid_t launcher_ = -1;
  std::vector<pid_t> ranks_;
};

}  // namespace

// A rank stopped with SIGSTOP: the other one times out, the launcher sends SIGTERM (which a stopped process
// does not act on), then SIGKILL after the grace period, and exits non-zero. It used to wait forever.
TEST(Launch, AStoppedRankIsKilledAfterTheGracePeriodAndTheLauncherFails) {
  Launch launch("stopped", 5.0, {"--grace-period", "2"});
  ASSERT_EQ(launch.ranks().size(), 2u) << launch.log();
  ASSERT_EQ(::kill(launch.ranks()[1], SIGSTOP), 0);
  const auto stopped_at = Clock::now();
  // The collective timeout (5 s), the grace period (2 s), and room for a busy machine.
  const std::optional<int> code = wait_within(launch.launcher(), 90s);
  ASSERT_TRUE(code.has_value()) << "the launcher still waits on the stopped rank:\n" << launch.log();
  EXPECT_NE(*code, 0) << launch.log();
  EXPECT_GE(std::chrono::duration<double>(Clock::now() - stopped_at).count(), 5.0) << "ended before the timeout?";
  EXPECT_NE(launch.log().find("did not end within 2 s; sending SIGKILL"), std::string::npos) << launch.log();
  EXPECT_TRUE(all_end_within(launch.ranks(), 5s));
}

// SIGTERM to the launcher is forwarded: the ranks end, the launcher exits with 128 + SIGTERM.
TEST(Launch, RanksEndWhenTheLauncherIsTerminated) {
  Launch launch("sigterm", 600.0);
  ASSERT_EQ(launch.ranks().size(), 2u) << launch.log();
  ASSERT_EQ(::kill(launch.launcher(), SIGTERM), 0);
  const std::optional<int> code = wait_within(launch.launcher(), 10s);
  ASSERT_TRUE(code.has_value()) << launch.log();
  EXPECT_EQ(*code, 128 + SIGTERM) << launch.log();
  EXPECT_TRUE(all_end_within(launch.ranks(), 5s)) << "ranks outlived their launcher:\n" << launch.log();
}

// SIGKILL to the launcher cannot be forwarded: the kernel ends the ranks (PR_SET_PDEATHSIG).
TEST(Launch, RanksEndWhenTheLauncherIsKilled) {
  Launch launch("sigkill", 600.0);
  ASSERT_EQ(launch.ranks().size(), 2u) << launch.log();
  ASSERT_EQ(::kill(launch.launcher(), SIGKILL), 0);
  ASSERT_EQ(prefdiff::testing::wait_exit(launch.launcher()), 128 + SIGKILL);
  EXPECT_TRUE(all_end_within(launch.ranks(), 5s)) << "ranks outlived their launcher:\n" << launch.log();
}
