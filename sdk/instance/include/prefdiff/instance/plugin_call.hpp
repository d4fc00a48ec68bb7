// Every call into a plugin goes through call_plugin(): it records which plugin and which call are in
// flight on this thread, and turns a C++ exception that escapes the plugin (the ABI forbids it) into a
// PluginError naming both. With install_crash_reporter(), a fatal signal or an exit() during a plugin call
// is reported the same way on the way down: the message is prepared before the call, so the signal
// handler only writes it.
#ifndef PREFDIFF_INSTANCE_PLUGIN_CALL_HPP
#define PREFDIFF_INSTANCE_PLUGIN_CALL_HPP

#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

#include "prefdiff/abi.h"

namespace prefdiff::instance {

// A plugin failure: refused parameters, a failed call, an escaped exception. `status` is what the plugin
// returned (PD_ERR_INTERNAL for failures on the host's side); plugin_message() is the plugin's own text.
class PluginError : public std::runtime_error {
 public:
  PluginError(pd_status status, const std::string& message, std::string plugin_message = {})
      : std::runtime_error(message), status_(status), plugin_message_(std::move(plugin_message)) {}
  pd_status status() const noexcept { return status_; }
  const std::string& plugin_message() const noexcept { return plugin_message_; }

 private:
  pd_status status_;
  std::string plugin_message_;
};

// Marks "`plugin` is in `call`" on this thread for its lifetime. Both strings must outlive it.
class PluginCallScope {
 public:
  PluginCallScope(const std::string& plugin, const char* call) noexcept;
  ~PluginCallScope();
  PluginCallScope(const PluginCallScope&) = delete;
  PluginCallScope& operator=(const PluginCallScope&) = delete;

 private:
  const char* previous_plugin_;
  const char* previous_call_;
};

[[noreturn]] void throw_escaped_exception(const std::string& plugin, const char* call, std::exception_ptr error);

// Runs `body` (a call into `plugin`) inside a PluginCallScope; an exception escaping it becomes a PluginError.
template <typename Body>
auto call_plugin(const std::string& plugin, const char* call, Body&& body) -> decltype(body()) {
  PluginCallScope scope(plugin, call);
  try {
    return body();
  } catch (...) {
    throw_escaped_exception(plugin, call, std::current_exception());
  }
}

// The plugin call in flight on this thread ("objective 'dpo' (/path/lib.so)", "evaluate"), or nulls.
const char* current_plugin();
const char* current_call();

// Installs the reporters, once per process: a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) writes
// "<program>: fatal signal SIGSEGV in <plugin> during <call>()" plus the crash context, then dies by the
// same signal (exit status 128 + signal); an exit() during a plugin call writes "<program>: <plugin> called
// exit(N) during <call>(); the host did not ask to exit" and ends the process with `exit_status` instead.
void install_crash_reporter(const char* program, int exit_status);
// Registers the exit check again, so it runs before exit handlers registered since (e.g. by libraries
// initialised during set-up). Cheap; call it once set-up is done.
void rearm_exit_reporter();
// Appended to every report, e.g. "last complete checkpoint: runs/x/checkpoints/step-00000004" ("" = none).
void set_crash_context(const std::string& text);
// Also write reports to this file descriptor (-1 = only stderr): an isolated child tells its parent.
void set_crash_report_fd(int fd);

}  // namespace prefdiff::instance

#endif  // PREFDIFF_INSTANCE_PLUGIN_CALL_HPP
