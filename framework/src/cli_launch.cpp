// `prefdiff launch --nproc N -- train RECIPE ...`: N ranks on this machine with torchrun-style variables
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). If a rank fails, the others
// are stopped and the launcher exits with that rank's status, so a job never hangs on a dead peer.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/dll/runtime_symbol_info.hpp>
#include <cstdio>
#include <iostream>

#include "prefdiff/host/cli.hpp"

namespace prefdiff {
namespace {

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

int launch(int nproc, int port, const std::vector<std::string>& command) {
  const std::string self = boost::dll::program_location().string();
  std::vector<pid_t> children;
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("launch: fork failed");
    if (pid == 0) {
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
  }
  int result = 0;
  size_t running = children.size();
  while (running > 0) {
    int status = 0;
    const pid_t done = wait(&status);
    if (done < 0) break;
    --running;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && result == 0) {
      result = code;
      for (size_t rank = 0; rank < children.size(); ++rank)
        if (children[rank] == done)
          std::cerr << "launch: rank " << rank << " failed (status " << code << "); stopping the others\n";
      for (pid_t other : children)
        if (other != done) kill(other, SIGTERM);
    }
  }
  return result;
}

}  // namespace

void add_launch_command(CLI::App& app, CliContext& context) {
  static int nproc = 1;
  static int port = 0;
  static std::vector<std::string> command;
  CLI::App* cmd = app.add_subcommand("launch", "Run a prefdiff command as N data-parallel ranks on this machine");
  cmd->add_option("--nproc", nproc, "Number of ranks")->required()->check(CLI::Range(1, 1024));
  cmd->add_option("--master-port", port, "Rendezvous port (default: a free one)");
  cmd->add_option("command", command, "The command after --, e.g. -- train recipe.toml")->required();
  cmd->callback([&] {
    context.exit_code = launch(nproc, port > 0 ? port : free_local_port(), command);
  });
}

}  // namespace prefdiff
