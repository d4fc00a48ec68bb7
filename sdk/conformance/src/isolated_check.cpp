// check_objective_isolated(): the checks in a forked child, so that a plugin that crashes or calls exit()
// fails a check instead of ending the caller. The child sends each result as soon as it is known, one
// line per result ("R\t<passed>\t<name>\t<detail>", tabs and newlines escaped); anything else it writes to
// the pipe is the crash reporter's account of what happened.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

#include "prefdiff/conformance.hpp"
#include "prefdiff/instance/plugin_call.hpp"

namespace prefdiff::conformance {
namespace {

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\t') out += "\\t";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string unescape(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    const char next = text[++i];
    out += next == 't' ? '\t' : next == 'n' ? '\n' : next;
  }
  return out;
}

void write_all(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace

Report check_objective_isolated(const PluginLibrary& plugin, const ParamSet& params) {
  int fds[2];
  if (::pipe(fds) != 0) return check_objective(plugin, params, nullptr);  // no pipe: run in this process
  const pid_t child = ::fork();
  if (child < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return check_objective(plugin, params, nullptr);
  }
  if (child == 0) {
    ::close(fds[0]);
    instance::install_crash_reporter("prefdiff plugin check", 4);
    instance::set_crash_report_fd(fds[1]);
    check_objective(plugin, params, [&](const CheckResult& r) {
      write_all(fds[1], "R\t" + std::string(r.passed ? "1" : "0") + "\t" + escape(r.name) + "\t" + escape(r.detail) + "\n");
    });
    ::_exit(0);  // no exit handlers: they belong to the parent
  }
  ::close(fds[1]);
  std::string received;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    received.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }

  Report report;
  report.plugin_id = plugin.id();
  std::string account;  // the crash reporter's lines
  size_t begin = 0;
  while (begin < received.size()) {
    size_t end = received.find('\n', begin);
    if (end == std::string::npos) end = received.size();
    const std::string line = received.substr(begin, end - begin);
    begin = end + 1;
    if (line.rfind("R\t", 0) == 0) {
      const size_t a = line.find('\t', 2), b = a == std::string::npos ? a : line.find('\t', a + 1);
      if (b == std::string::npos) continue;
      report.checks.push_back({unescape(line.substr(a + 1, b - a - 1)), line.substr(2, a - 2) == "1",
                               unescape(line.substr(b + 1))});
    } else if (!line.empty()) {
      account += (account.empty() ? "" : " ") + line;
    }
  }
  const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!clean) {
    std::string how = WIFSIGNALED(status) ? std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) +
                                                " (" + strsignal(WTERMSIG(status)) + ")"
                                          : "ended with exit status " + std::to_string(WEXITSTATUS(status));
    report.checks.push_back({"the plugin keeps the process alive", false,
                             "the checks' process " + how + (account.empty() ? "" : ": " + account) +
                                 ". A plugin must return a status, never crash or end the process"});
  }
  return report;
}

}  // namespace prefdiff::conformance
