#include "tokenizer/ftfy_tables.hpp"

#include <algorithm>
#include <iterator>
#include <vector>

#include "tokenizer/unicode_text.hpp"

namespace prefdiff::tokenizer::ftfy_data {
namespace {
#include "tokenizer/ftfy_tables.inc"

static_assert(kNumCodePages == kNumCharmapEncodings + 1, "regenerate ftfy_tables.inc: code page list changed");
}  // namespace

const CodePage& code_page(int id) {
  static const std::vector<CodePage> pages = [] {
    std::vector<CodePage> out;
    for (int p = 0; p < kNumCodePages; ++p) {
      CodePage page{kCodePageNames[p], std::string(kCodePageNames[p]).rfind("sloppy-", 0) == 0, kCodePages[p], {}};
      for (int b = 0; b < 256; ++b)
        if (kCodePages[p][b] >= 0) page.encode.emplace(static_cast<char32_t>(kCodePages[p][b]), static_cast<uint8_t>(b));
      out.push_back(std::move(page));
    }
    return out;
  }();
  return pages.at(static_cast<size_t>(id));
}

Patterns::Patterns()
    : badness(kBadnessPattern),
      utf8_detector(kUtf8DetectorPattern),
      altered_utf8(kAlteredUtf8Pattern),
      lossy_utf8(kLossyUtf8Pattern),
      a_grave_word(kAGraveWordPattern),
      // "\033\[((?:\d|;)*)([a-zA-Z])"; \d is Unicode Nd in Python str patterns, as PCRE2's with UCP.
      ansi_escape("\\x{1b}\\[((?:\\d|;)*)([a-zA-Z])") {}

const Patterns& patterns() {
  static const Patterns p;
  return p;
}

const std::unordered_map<std::string, std::u32string>& html_entities() {
  static const auto map = [] {
    std::unordered_map<std::string, std::u32string> m;
    m.reserve(std::size(kHtmlEntities));
    for (const HtmlEntity& e : kHtmlEntities) m.emplace(e.name, utf8_to_u32(e.utf8));
    return m;
  }();
  return map;
}

bool invalid_charref(int64_t cp, char32_t* replacement) {
  for (const auto& entry : kInvalidCharrefs)
    if (entry[0] == cp) {
      *replacement = static_cast<char32_t>(entry[1]);
      return true;
    }
  return false;
}

bool invalid_codepoint(int64_t cp) {
  return std::binary_search(std::begin(kInvalidCodepoints), std::end(kInvalidCodepoints), cp);
}

const std::unordered_map<char32_t, std::u32string>& width_map() {
  static const auto map = [] {
    std::unordered_map<char32_t, std::u32string> m;
    for (const WidthEntry& e : kWidthMap) m.emplace(static_cast<char32_t>(e.cp), utf8_to_u32(e.utf8));
    return m;
  }();
  return map;
}

}  // namespace prefdiff::tokenizer::ftfy_data
