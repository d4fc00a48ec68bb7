// The plugin call in flight per thread, and what reports it when a plugin takes the process down.
#include "prefdiff/instance/plugin_call.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace prefdiff::instance {
namespace {

// Read by the signal handler of the same thread: initial-exec TLS needs no allocation there.
__attribute__((tls_model("initial-exec"))) thread_local const char* t_plugin = nullptr;
__attribute__((tls_model("initial-exec"))) thread_local const char* t_call = nullptr;

char g_program[64] = "prefdiff";
int g_exit_status = 4;
std::atomic<int> g_report_fd{-1};
// Two buffers and an index, so the handler never reads a half-written context.
char g_context[2][1024] = {{0}, {0}};
std::atomic<int> g_context_index{0};
std::mutex g_context_mutex;

void write_text(int fd, const char* text) {
  size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t written = ::write(fd, text, left);
    if (written <= 0) return;
    text += written;
    left -= static_cast<size_t>(written);
  }
}

void write_report(const char* what) {
  const char* context = g_context[g_context_index.load()];
  const int fds[2] = {STDERR_FILENO, g_report_fd.load()};
  for (int fd : fds) {
    if (fd < 0) continue;
    write_text(fd, "\n");
    write_text(fd, g_program);
    write_text(fd, ": ");
    write_text(fd, what);
    if (t_plugin != nullptr) {
      write_text(fd, " in ");
      write_text(fd, t_plugin);
      write_text(fd, " during ");
      write_text(fd, t_call != nullptr ? t_call : "a call");
    } else {
      write_text(fd, " (no plugin call in flight)");
    }
    if (context[0] != '\0') {
      write_text(fd, "; ");
      write_text(fd, context);
    }
    write_text(fd, "\n");
  }
}

const char* signal_text(int sig) {
  switch (sig) {
    case SIGSEGV: return "fatal signal SIGSEGV (invalid memory access)";
    case SIGBUS: return "fatal signal SIGBUS";
    case SIGILL: return "fatal signal SIGILL";
    case SIGFPE: return "fatal signal SIGFPE";
    case SIGABRT: return "fatal signal SIGABRT (abort)";
  }
  return "fatal signal";
}

void on_fatal_signal(int sig) {
  write_report(signal_text(sig));
  ::signal(sig, SIG_DFL);
  ::raise(sig);  // delivered with the default action once this handler returns: status 128 + sig
}

void on_process_exit(int status, void*) {
  if (t_plugin == nullptr) return;  // the host itself is exiting
  const char* context = g_context[g_context_index.load()];
  char text[2048];
  std::snprintf(text, sizeof(text), "\n%s: %s called exit(%d) during %s; the host did not ask to exit, so it "
                "ends with status %d%s%s\n", g_program, t_plugin, status, t_call != nullptr ? t_call : "a call",
                g_exit_status, context[0] != '\0' ? "; " : "", context);
  std::fflush(stdout);
  write_text(STDERR_FILENO, text);
  if (g_report_fd.load() >= 0) write_text(g_report_fd.load(), text);
  ::_exit(g_exit_status);
}

}  // namespace

PluginCallScope::PluginCallScope(const std::string& plugin, const char* call) noexcept
    : previous_plugin_(t_plugin), previous_call_(t_call) {
  t_plugin = plugin.c_str();
  t_call = call;
}

PluginCallScope::~PluginCallScope() {
  t_plugin = previous_plugin_;
  t_call = previous_call_;
}

const char* current_plugin() { return t_plugin; }
const char* current_call() { return t_call; }

void throw_escaped_exception(const std::string& plugin, const char* call, std::exception_ptr error) {
  std::string what = "an unknown C++ exception";
  try {
    std::rethrow_exception(error);
  } catch (const PluginError&) {
    throw;  // already worded by the host's side of the call
  } catch (const std::exception& e) {
    what = std::string("a C++ exception (") + e.what() + ")";
  } catch (...) {
  }
  throw PluginError(PD_ERR_INTERNAL, plugin + " let " + what + " escape from " + call +
                                         "; the plugin ABI allows no exception across the boundary. HINT: the "
                                         "plugin must catch it and return a pd_status (the SDK's PREFDIFF_EXPORT_* "
                                         "macros do that for you)");
}

void install_crash_reporter(const char* program, int exit_status) {
  static bool installed = false;
  if (installed) return;
  installed = true;
  std::snprintf(g_program, sizeof(g_program), "%s", program);
  g_exit_status = exit_status;
  // An alternate stack, so that a stack overflow can still be reported.
  static char alternate[64 * 1024];
  stack_t stack{};
  stack.ss_sp = alternate;
  stack.ss_size = sizeof(alternate);
  ::sigaltstack(&stack, nullptr);
  struct sigaction action {};
  action.sa_handler = &on_fatal_signal;
  action.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) ::sigaction(sig, &action, nullptr);
  ::on_exit(&on_process_exit, nullptr);
}

void rearm_exit_reporter() { ::on_exit(&on_process_exit, nullptr); }

void set_crash_context(const std::string& text) {
  std::lock_guard<std::mutex> lock(g_context_mutex);
  const int next = 1 - g_context_index.load();
  std::snprintf(g_context[next], sizeof(g_context[next]), "%s", text.c_str());
  g_context_index.store(next);
}

void set_crash_report_fd(int fd) { g_report_fd.store(fd); }

}  // namespace prefdiff::instance
