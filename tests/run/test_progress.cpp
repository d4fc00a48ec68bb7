// Progress: plain lines for logs, a bar redrawn in place on a terminal; output captured from a FILE*.
#include <cstdlib>
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/run/progress.hpp"

using namespace prefdiff::run;

namespace {

// A FILE* that is not a terminal, and its contents so far.
struct Capture {
  std::FILE* f = std::tmpfile();
  ~Capture() { std::fclose(f); }
  std::string text() {
    std::fflush(f);
    long pos = std::ftell(f);
    std::string s(static_cast<std::size_t>(pos), '\0');
    std::rewind(f);
    std::size_t n = std::fread(s.data(), 1, s.size(), f);
    s.resize(n);
    std::fseek(f, pos, SEEK_SET);
    return s;
  }
};

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i; (i = s.find('\n', start)) != std::string::npos; start = i + 1) out.push_back(s.substr(start, i - start));
  return out;
}

struct FakeClock {
  double t = 0;
  std::function<double()> fn() {
    return [this] { return t; };
  }
};

}  // namespace

TEST(Progress, PlainLineFormat) {
  Capture out;
  FakeClock clock;
  ProgressOptions o;
  o.mode = ProgressMode::plain;
  o.clock = clock.fn();
  Progress p(2000, out.f, o);
  clock.t = 60;  // 120 steps in 60 s: 1880 more take 940 s
  EXPECT_EQ(p.status_text(120, {0.67312, 0.58, 1.94}, clock.t),
            "step 120/2000 (6%) loss 0.6731 acc 0.58 1.9 pairs/s eta 00:15:40");
  EXPECT_EQ(p.status_text(0, {}, 0), "step 0/2000 (0%) eta --:--:--");
  EXPECT_EQ(p.status_text(2000, {NAN, NAN, 1234.4}, clock.t), "step 2000/2000 (100%) 1234 pairs/s eta 00:00:00");
}

TEST(Progress, PlainEveryNSteps) {
  Capture out;
  FakeClock clock;
  ProgressOptions o;
  o.mode = ProgressMode::plain;
  o.every_steps = 10;
  o.every_seconds = 0;
  o.clock = clock.fn();
  Progress p(35, out.f, o);
  EXPECT_EQ(p.mode(), ProgressMode::plain);
  for (int s = 1; s <= 35; ++s) {
    clock.t += 1;
    p.update(s, {0.5, 0.5, 2.0});
  }
  p.finish();
  std::vector<std::string> l = lines(out.text());
  ASSERT_EQ(l.size(), 5u) << out.text();  // the first step, 10, 20, 30, and the last
  EXPECT_EQ(l[0].rfind("step 1/35 (2%)", 0), 0u) << l[0];
  EXPECT_EQ(l[1].rfind("step 10/35 (28%)", 0), 0u) << l[1];
  EXPECT_EQ(l[3].rfind("step 30/35", 0), 0u) << l[3];
  EXPECT_EQ(l[4], "step 35/35 (100%) loss 0.5000 acc 0.50 2.0 pairs/s eta 00:00:00");
  EXPECT_EQ(out.text().find('\r'), std::string::npos) << "no carriage returns in logs";
  EXPECT_EQ(out.text().find('\x1b'), std::string::npos) << "no escape codes in logs";
}

TEST(Progress, PlainEveryTSeconds) {
  Capture out;
  FakeClock clock;
  ProgressOptions o;
  o.mode = ProgressMode::plain;
  o.every_seconds = 30;
  o.clock = clock.fn();
  Progress p(1000, out.f, o, /*start_step=*/500);  // resumed at 500
  for (int s = 501; s <= 520; ++s) {
    clock.t += 7;
    p.update(s, {});
  }
  std::vector<std::string> l = lines(out.text());
  // t = 7 (first), 42 (35 s later), 77, 112: every >= 30 s.
  ASSERT_EQ(l.size(), 4u) << out.text();
  EXPECT_EQ(l[1].rfind("step 506/1000", 0), 0u) << l[1];
  // ETA from the rate since the resume: 6 steps in 42 s, 494 to go.
  EXPECT_NE(l[1].find("eta " + format_duration(42.0 / 6 * 494)), std::string::npos) << l[1];
}

TEST(Progress, BarRedrawsInPlaceAndFitsTheWidth) {
  Capture out;
  FakeClock clock;
  ProgressOptions o;
  o.mode = ProgressMode::bar;
  o.width = 100;
  o.clock = clock.fn();
  {
    Progress p(200, out.f, o);
    for (int s = 1; s <= 200; ++s) {
      clock.t += 0.06;  // redraws at most every 0.1 s: every other step
      p.update(s, {0.6931, 0.5, 40.0});
    }
    std::string shown = out.text();
    EXPECT_EQ(shown.find('\n'), std::string::npos) << "the bar stays on one line";
    std::size_t redraws = 0;
    for (char c : shown) redraws += c == '\r';
    EXPECT_GE(redraws, 100u);
    EXPECT_LE(redraws, 101u);
    // Each frame: [###---] status, cleared to the end of the line, within the width.
    std::size_t last = shown.rfind('\r');
    std::string frame = shown.substr(last + 1);
    ASSERT_GE(frame.size(), 3u);
    EXPECT_EQ(frame.substr(frame.size() - 3), "\x1b[K");
    frame.resize(frame.size() - 3);
    EXPECT_LE(frame.size(), 99u);
    EXPECT_EQ(frame.front(), '[');
    EXPECT_EQ(frame.find('-'), std::string::npos) << "full at the last step: " << frame;
    EXPECT_NE(frame.find("] step 200/200 (100%) loss 0.6931 acc 0.50 40.0 pairs/s eta 00:00:00"), std::string::npos)
        << frame;
    p.message("validation: acc 0.61");
    std::string after = out.text().substr(shown.size());
    EXPECT_EQ(after.rfind("\r\x1b[Kvalidation: acc 0.61\n\r[", 0), 0u) << "clear, print, redraw: " << after;
  }
  EXPECT_EQ(out.text().back(), '\n') << "the destructor ends the bar's line";
}

TEST(Progress, NarrowTerminalDropsTheBarNotTheNumbers) {
  Capture out;
  ProgressOptions o;
  o.mode = ProgressMode::bar;
  o.width = 40;
  Progress p(100, out.f, o);
  p.update(50, {0.5, 0.5, 1.0});
  std::string s = out.text();
  EXPECT_EQ(s.rfind("\rstep 50/100", 0), 0u) << s;
  EXPECT_EQ(s.find('#'), std::string::npos) << s;
  EXPECT_NE(s.find("step 50/100"), std::string::npos) << s;
}

TEST(Progress, AutoPicksTheBarOnATerminalAndLinesElsewhere) {
  Capture file;
  Progress plain(10, file.f);
  EXPECT_EQ(plain.mode(), ProgressMode::plain);

  int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  std::FILE* tty = std::fopen(::ptsname(master), "w");
  ASSERT_NE(tty, nullptr);
  const char* old_term = std::getenv("TERM");
  std::string saved = old_term ? old_term : "";
  ::setenv("TERM", "xterm", 1);
  EXPECT_EQ(Progress(10, tty).mode(), ProgressMode::bar);
  ::setenv("TERM", "dumb", 1);
  EXPECT_EQ(Progress(10, tty).mode(), ProgressMode::plain);
  if (old_term)
    ::setenv("TERM", saved.c_str(), 1);
  else
    ::unsetenv("TERM");
  std::fclose(tty);
  ::close(master);
}

TEST(Progress, OffPrintsNothing) {
  Capture out;
  ProgressOptions o;
  o.mode = ProgressMode::off;
  {
    Progress p(10, out.f, o);
    p.update(1, {});
    p.update(10, {});
    p.message("hello");
  }
  EXPECT_EQ(out.text(), "");
}

TEST(Progress, Durations) {
  EXPECT_EQ(format_duration(0), "00:00:00");
  EXPECT_EQ(format_duration(3661), "01:01:01");
  EXPECT_EQ(format_duration(100000), "27:46:40");
  EXPECT_EQ(format_duration(NAN), "--:--:--");
  EXPECT_EQ(format_duration(-1), "--:--:--");
  EXPECT_EQ(parse_progress_mode("auto"), ProgressMode::automatic);
  EXPECT_EQ(parse_progress_mode("off"), ProgressMode::off);
  EXPECT_THROW(parse_progress_mode("fancy"), RunError);
}
