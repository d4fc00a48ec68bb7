// Progress for people: a bar redrawn in place on a terminal, plain lines elsewhere.
#include "prefdiff/run/progress.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sys/ioctl.h>
#include <unistd.h>

#include "prefdiff/run/atomic_dir.hpp"  // RunError

namespace prefdiff::run {
namespace {

bool is_terminal(std::FILE* f) {
  if (!f) return false;
  int fd = ::fileno(f);
  if (fd < 0 || !::isatty(fd)) return false;
  const char* term = std::getenv("TERM");
  return !(term && std::strcmp(term, "dumb") == 0);
}

int terminal_width(std::FILE* f) {
  winsize ws{};
  if (f && ::ioctl(::fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    int n = std::atoi(c);
    if (n > 0) return n;
  }
  return 80;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

}  // namespace

ProgressMode parse_progress_mode(const std::string& text) {
  if (text == "auto") return ProgressMode::automatic;
  if (text == "bar") return ProgressMode::bar;
  if (text == "plain") return ProgressMode::plain;
  if (text == "off") return ProgressMode::off;
  throw RunError("log.progress: '" + text + "' is not one of auto, bar, plain, off");
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--:--";
  long long s = static_cast<long long>(seconds + 0.5);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

Progress::Progress(std::int64_t total_steps, std::FILE* out, ProgressOptions options, std::int64_t start_step)
    : total_(total_steps), start_step_(start_step), out_(out), options_(std::move(options)) {
  mode_ = options_.mode;
  if (!out_) mode_ = ProgressMode::off;
  if (mode_ == ProgressMode::automatic) mode_ = is_terminal(out_) ? ProgressMode::bar : ProgressMode::plain;
  t0_ = now();
}

Progress::~Progress() { finish(); }

double Progress::now() const {
  if (options_.clock) return options_.clock();
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string Progress::status_text(std::int64_t step, const ProgressStats& stats, double t) const {
  std::string s = "step " + std::to_string(step) + "/" + std::to_string(total_);
  if (total_ > 0) s += " (" + std::to_string(std::clamp<std::int64_t>(step * 100 / total_, 0, 100)) + "%)";
  if (std::isfinite(stats.loss)) s += fmt(" loss %.4f", stats.loss);
  if (std::isfinite(stats.accuracy)) s += fmt(" acc %.2f", stats.accuracy);
  if (std::isfinite(stats.pairs_per_s))
    s += fmt(stats.pairs_per_s < 100 ? " %.1f pairs/s" : " %.0f pairs/s", stats.pairs_per_s);
  double elapsed = t - t0_;
  double done = static_cast<double>(step - start_step_);
  double eta = (done > 0 && elapsed > 0) ? elapsed / done * static_cast<double>(total_ - step) : NAN;
  return s + " eta " + format_duration(eta);
}

void Progress::draw_bar(std::int64_t step, const ProgressStats& stats, double t) {
  std::string text = status_text(step, stats, t);
  int width = options_.width > 0 ? options_.width : terminal_width(out_);
  // Stay one column short of the edge: writing the last column makes some terminals wrap.
  int cells = width - 1 - static_cast<int>(text.size()) - 3;
  std::string line = "\r";
  if (cells >= 10) {
    int filled = total_ > 0 ? static_cast<int>(std::clamp<double>(double(step) / double(total_), 0, 1) * cells) : 0;
    line += "[" + std::string(filled, '#') + std::string(cells - filled, '-') + "] ";
  }
  line += text + "\x1b[K";  // erase what a longer previous line left
  std::fputs(line.c_str(), out_);
  std::fflush(out_);
  bar_on_screen_ = true;
}

void Progress::update(std::int64_t step, const ProgressStats& stats) {
  if (mode_ == ProgressMode::off || finished_) return;
  double t = now();
  last_step_ = step;
  last_stats_ = stats;
  bool last = step >= total_;
  if (mode_ == ProgressMode::bar) {
    if (last || last_print_ < 0 || t - last_print_ >= options_.redraw_seconds) {
      draw_bar(step, stats, t);
      last_print_ = t;
    }
    return;
  }
  bool due = last_step_printed_ < 0 || last ||
             // at multiples of N (step 10, 20, ... for N = 10), also when steps jump past one
             (options_.every_steps > 0 && step / options_.every_steps > last_step_printed_ / options_.every_steps) ||
             (options_.every_seconds > 0 && t - last_print_ >= options_.every_seconds);
  if (!due || step == last_step_printed_) return;
  std::fputs((status_text(step, stats, t) + "\n").c_str(), out_);
  std::fflush(out_);
  last_print_ = t;
  last_step_printed_ = step;
}

void Progress::message(const std::string& line) {
  if (mode_ == ProgressMode::off || !out_) return;
  if (bar_on_screen_) std::fputs("\r\x1b[K", out_);
  std::fputs((line + "\n").c_str(), out_);
  if (bar_on_screen_ && !finished_) draw_bar(last_step_, last_stats_, now());
  std::fflush(out_);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (bar_on_screen_ && out_) {
    std::fputs("\n", out_);
    std::fflush(out_);
  }
}

}  // namespace prefdiff::run
