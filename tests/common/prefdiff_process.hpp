// Running the `prefdiff` executable from end-to-end tests: a fresh work folder, a child process with
// its output in a log file and extra environment, its exit status, and reading files back.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace prefdiff::testing {

// The folders fresh_dir made: removed when the test program ends with every test passed, kept (for a
// look at the logs and run folders) when one failed. Training tests leave ~50 MB each otherwise.
struct ScratchFolders {
  std::vector<std::filesystem::path> dirs;
  ~ScratchFolders() {
    if (!::testing::UnitTest::GetInstance()->Passed()) return;
    for (const auto& dir : dirs) {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  }
};
inline ScratchFolders& scratch_folders() {
  static ScratchFolders folders;
  return folders;
}

// An empty folder under the test's temporary directory, unique per process.
inline std::filesystem::path fresh_dir(const std::string& prefix, const std::string& name) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / (prefix + "_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  scratch_folders().dirs.push_back(dir);
  return dir;
}

// Starts `exe args...` with stdout and stderr in `log`; `env` holds NAME=VALUE entries.
inline pid_t spawn(const std::string& exe, const std::vector<std::string>& args, const std::filesystem::path& log,
                   const std::vector<std::string>& env = {}) {
  const pid_t pid = fork();
  if (pid == 0) {
    for (const std::string& e : env) putenv(strdup(e.c_str()));
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv{const_cast<char*>(exe.c_str())};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// The exit status, or 128 + the signal that ended the process.
inline int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace prefdiff::testing
