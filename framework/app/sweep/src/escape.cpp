// Escaping for the languages a sweep report writes.
#include "prefdiff/sweep/escape.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "prefdiff/run/run_name.hpp"

namespace prefdiff::sweep {
namespace {

bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// Characters that never start markup in CommonMark/GFM text. '_' only inside a word (intraword
// underscores never emphasise); bytes of UTF-8 sequences are text.
bool plain_markdown(std::string_view text) {
  if (text.empty()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (is_alnum(c) || static_cast<unsigned char>(c) >= 0x80) continue;
    if (c == ' ' || c == '.' || c == ',' || c == '+' || c == '=' || c == ':' || c == '/' || c == '%') continue;
    if (c == '-' && i > 0) continue;  // a leading '-' starts a list item
    if (c == '_' && i > 0 && i + 1 < text.size() && is_alnum(text[i - 1]) && is_alnum(text[i + 1])) continue;
    return false;
  }
  return text.front() != ' ' && text.back() != ' ';
}

bool is_number(std::string_view text) {
  const std::string s(text);
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

}  // namespace

std::string gnuplot_string(std::string_view text) {
  std::string q = "'";
  for (char c : run::printable(text)) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

std::string markdown_code(std::string_view text_in, bool in_table) {
  const std::string text = run::printable(text_in);
  size_t longest = 0, run = 0;
  for (char c : text) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  const std::string fence(longest + 1, '`');
  // A space inside the fence when the text starts or ends with a backtick (stripped again by renderers).
  const bool pad = !text.empty() && (text.front() == '`' || text.back() == '`');
  std::string body;
  for (char c : text) body += (in_table && c == '|') ? std::string("\\|") : std::string(1, c);
  return fence + (pad ? " " : "") + body + (pad ? " " : "") + fence;
}

std::string markdown_text(std::string_view text, bool in_table) {
  if (plain_markdown(text)) return std::string(text);
  return markdown_code(text, in_table);
}

std::string csv_field(std::string_view text_in) {
  // Line breaks are kept (a quoted field may span lines); other control characters are shown as escapes.
  std::string text;
  for (char c : text_in) text += (c == '\n' || c == '\r') ? std::string(1, c) : run::printable(std::string_view(&c, 1));
  if (!text.empty() && (text[0] == '=' || text[0] == '+' || text[0] == '-' || text[0] == '@') && !is_number(text))
    text.insert(text.begin(), '\'');
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string q = "\"";
  for (char c : text) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace prefdiff::sweep
