// The name rule of run, sweep and variant names: what a hostile name is refused with, what is accepted.
#include <gtest/gtest.h>

#include <string>

#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/run/run_name.hpp"

using namespace prefdiff::run;

namespace {

// The problem, which must name the character, its position and the allowed set.
void expect_refused(const std::string& name, const std::string& shown_char, size_t position) {
  const std::string p = name_problem(name);
  EXPECT_NE(p.find("has '" + shown_char + "' at position " + std::to_string(position) + ", which is not allowed"),
            std::string::npos)
      << printable(name) << ": " << p;
  EXPECT_NE(p.find("use only letters A-Z a-z, digits, '.', '_', '+' and '-'"), std::string::npos) << p;
}

}  // namespace

TEST(RunName, RefusesQuotesBackticksDollarsControlCharactersAndTheTemporaryPattern) {
  expect_refused("a`touch pwned`", "`", 2);
  expect_refused("x$(touch pwned)", "$", 2);
  expect_refused("say\"hi\"", "\"", 4);
  expect_refused("it's", "'", 3);
  expect_refused("two\nlines", "\\n", 4);
  expect_refused(std::string("nul\0byte", 8), "\\0", 4);
  expect_refused("a/b", "/", 2);
  expect_refused("with space", " ", 5);
  expect_refused("tab\there", "\\t", 4);
  // A leading '.': hidden, and the pattern of the crash-safe writes' temporaries (.<name>.tmp-<pid>-<n>).
  expect_refused(".victim.tmp-999999-0", ".", 1);
  EXPECT_NE(name_problem(".victim.tmp-999999-0").find("temporaries"), std::string::npos);
  expect_refused("..", ".", 1);
  expect_refused("-rf", "-", 1);
  EXPECT_NE(name_problem("").find("is empty"), std::string::npos);
  const std::string long_name(300, 'a');
  EXPECT_NE(name_problem(long_name).find("is 300 characters long; at most 128"), std::string::npos)
      << name_problem(long_name);
}

TEST(RunName, AcceptsTheNamesPrefdiffItselfMakes) {
  for (const char* ok : {"toy-dpo", "sd15-alpha-dpo", "rdpo__noise.rate-0.2__run.seed-2", "_noise.rate-0.1", "a+b",
                         "run.seed-0", "holder-dpo", "x"})
    EXPECT_EQ(name_problem(ok), "") << ok;
  EXPECT_EQ(name_problem(std::string(kMaxNameLength, 'a')), "");
  EXPECT_NE(name_problem(std::string(kMaxNameLength + 1, 'a')), "");
}

TEST(RunName, ValidateThrowsWithTheNameShownSafely) {
  try {
    validate_run_name("a\nb`c`");
    FAIL() << "expected a RunError";
  } catch (const RunError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("run.name 'a\\nb`c`' has '\\n' at position 2"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "no raw newline in the message: " << m;
    EXPECT_NE(m.find("HINT:"), std::string::npos) << m;
  }
  EXPECT_NO_THROW(validate_run_name("toy-dpo"));
}

TEST(RunName, PrintableShowsControlCharactersAsEscapes) {
  EXPECT_EQ(printable(std::string("a\n\r\t\0\x1b\x7f" "b", 8)), "a\\n\\r\\t\\0\\x1b\\x7fb");
  EXPECT_EQ(printable("plain ünïcode"), "plain ünïcode");
}
