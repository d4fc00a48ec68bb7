// The name rule for run, sweep and variant names.
#include "prefdiff/run/run_name.hpp"

#include <cstdio>

#include "prefdiff/run/atomic_dir.hpp"

namespace prefdiff::run {
namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '+' || c == '-';
}

bool is_first_char(char c) { return is_name_char(c) && c != '.' && c != '+' && c != '-'; }

constexpr const char* kAllowed =
    "use only letters A-Z a-z, digits, '.', '_', '+' and '-', starting with a letter, a digit or '_'";

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      out += c;
      continue;
    }
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\0': out += "\\0"; break;
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", u);
        out += buf;
      }
    }
  }
  return out;
}

std::string name_problem(std::string_view name) {
  if (name.empty()) return "is empty (" + std::string(kAllowed) + ")";
  if (name.size() > kMaxNameLength)
    return "is " + std::to_string(name.size()) + " characters long; at most " + std::to_string(kMaxNameLength) +
           " are allowed (the folder's temporary sibling and log file names must fit the file system's limit)";
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (i == 0 ? is_first_char(c) : is_name_char(c)) continue;
    const std::string shown = printable(std::string_view(&name[i], 1));
    std::string what = "has '" + shown + "' at position " + std::to_string(i + 1) + ", which is not allowed";
    if (i == 0 && is_name_char(c))
      what += c == '.' ? " first (a leading '.' hides the folder and is the pattern of prefdiff's temporaries)"
                       : " first (it would read as an option or a sign)";
    return what + " (" + kAllowed + ")";
  }
  return "";
}

void validate_run_name(std::string_view name) {
  const std::string problem = name_problem(name);
  if (problem.empty()) return;
  // A 300-character name is not worth repeating in full.
  const std::string shown = name.size() > 60 ? printable(name.substr(0, 40)) + "..." : printable(name);
  throw RunError("run.name '" + shown + "' " + problem +
                 ". HINT: the run folder is <run.output_dir>/<run.name>; choose a name such as toy-dpo-seed1.");
}

}  // namespace prefdiff::run
