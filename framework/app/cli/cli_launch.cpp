// `prefdiff launch --nproc N -- train RECIPE ...`: N ranks on this machine with torchrun-style variables
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). The ranks never outlive the
// launcher, and the launcher never waits forever on a rank:
// - a rank that fails makes the launcher send SIGTERM to the others, and SIGKILL to any still there after
//   the grace period (a stopped or stuck rank ignores SIGTERM); the launcher exits with the failed rank's
//   status;
// - SIGINT, SIGTERM or SIGHUP to the launcher is forwarded to every rank (same grace, then SIGKILL); the
//   launcher then exits with 128 + that signal;
// - SIGKILL to the launcher: each rank gets SIGKILL from the kernel (PR_SET_PDEATHSIG).
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/dll/runtime_symbol_info.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <thread>

#include "cli.hpp"

namespace prefdiff {
namespace {

using Clock = std::chrono::steady_clock;

volatile sig_atomic_t g_forward_signal = 0;
void on_signal(int signal) { g_forward_signal = signal; }

int free_local_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    if (fd >= 0) close(fd);
    throw std::runtime_error("launch: could not find a free local port for the rendezvous; HINT: pass --master-port");
  }
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

// Handlers for the signals the launcher forwards, restored when the launch ends.
class ForwardedSignals {
 public:
  ForwardedSignals() {
    struct sigaction action{};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    g_forward_signal = 0;
    for (size_t i = 0; i < kCount; ++i) sigaction(kSignals[i], &action, &old_[i]);
  }
  ~ForwardedSignals() {
    for (size_t i = 0; i < kCount; ++i) sigaction(kSignals[i], &old_[i], nullptr);
  }
  ForwardedSignals(const ForwardedSignals&) = delete;
  ForwardedSignals& operator=(const ForwardedSignals&) = delete;

 private:
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
  static constexpr size_t kCount = sizeof(kSignals) / sizeof(kSignals[0]);
  struct sigaction old_[kCount]{};
};

int launch(int nproc, int port, const std::vector<std::string>& command, double grace_s) {
  const std::string self = boost::dll::program_location().string();
  ForwardedSignals forwarded;  // installed before the first fork: no signal is lost in between
  const pid_t launcher = getpid();
  std::vector<pid_t> children;
  std::vector<bool> running;
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = fork();
    if (pid < 0) {
      for (pid_t child : children) kill(child, SIGKILL);
      throw std::runtime_error("launch: fork failed");
    }
    if (pid == 0) {
      // The kernel ends this rank when the launcher dies, however it dies (SIGKILL included); the check
      // after it covers a launcher that died before the prctl.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != launcher) _exit(128 + SIGKILL);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      signal(SIGHUP, SIG_DFL);
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv{const_cast<char*>(self.c_str())};
      for (const std::string& arg : command) argv.push_back(const_cast<char*>(arg.c_str()));
      argv.push_back(nullptr);
      execv(self.c_str(), argv.data());
      std::perror("launch: exec");
      _exit(127);
    }
    children.push_back(pid);
    running.push_back(true);
  }

  int result = 0;
  size_t left = children.size();
  std::optional<Clock::time_point> kill_at;  // set once the ranks are being stopped
  bool killed = false;
  auto stop_all = [&](int signal) {
    for (size_t rank = 0; rank < children.size(); ++rank)
      if (running[rank]) kill(children[rank], signal);
    if (!kill_at)
      kill_at = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000.0));
  };
  while (left > 0) {
    if (g_forward_signal != 0 && result == 0) {
      const int signal = g_forward_signal;
      result = 128 + signal;
      std::cerr << "launch: got signal " << signal << "; forwarding it to the ranks\n";
      stop_all(signal);
    }
    if (kill_at && !killed && Clock::now() >= *kill_at) {
      killed = true;
      for (size_t rank = 0; rank < children.size(); ++rank)
        if (running[rank])
          std::cerr << "launch: rank " << rank << " (pid " << children[rank] << ") did not end within " << grace_s
                    << " s; sending SIGKILL\n";
      stop_all(SIGKILL);
    }
    int status = 0;
    const pid_t done = waitpid(-1, &status, WNOHANG);
    if (done == 0 || (done < 0 && errno == EINTR)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    if (done < 0) break;  // no children left
    size_t rank = 0;
    while (rank < children.size() && children[rank] != done) ++rank;
    if (rank == children.size() || !running[rank]) continue;
    running[rank] = false;
    --left;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && result == 0) {
      result = code;
      std::cerr << "launch: rank " << rank << " failed (status " << code << "); stopping the others (SIGTERM, then "
                << "SIGKILL after " << grace_s << " s)\n";
      stop_all(SIGTERM);
    }
  }
  return result;
}

}  // namespace

void add_launch_command(CLI::App& app, CliContext& context) {
  static int nproc = 1;
  static int port = 0;
  static double grace_s = 30.0;
  static std::vector<std::string> command;
  CLI::App* cmd = app.add_subcommand("launch", "Run a prefdiff command as N data-parallel ranks on this machine");
  cmd->add_option("--nproc", nproc, "Number of ranks")->required()->check(CLI::Range(1, 1024));
  cmd->add_option("--master-port", port, "Rendezvous port (default: a free one)");
  cmd->add_option("--grace-period", grace_s,
                  "Seconds a rank has to end after SIGTERM (a rank failed, or the launcher was stopped) before it "
                  "gets SIGKILL (default 30)")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("command", command, "The command after --, e.g. -- train recipe.toml")->required();
  cmd->callback([&] {
    context.exit_code = launch(nproc, port > 0 ? port : free_local_port(), command, grace_s);
  });
}

}  // namespace prefdiff
