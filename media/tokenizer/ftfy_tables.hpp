#pragma once
// Internal: the decision data of ftfy 6.3.1 (generated into ftfy_tables.inc by
// tools/generate_ftfy_tables.py), in the shapes the clean-up code looks them up.

#include <cstdint>
#include <string>
#include <unordered_map>

#include "tokenizer/pcre2_regex.hpp"

namespace prefdiff::tokenizer::ftfy_data {

// The single-byte code pages ftfy tries, in its order (ftfy.chardata.CHARMAP_ENCODINGS), then strict
// windows-1252.
enum CodePageId : int {
  kLatin1 = 0, kSloppy1252, kSloppy1251, kSloppy1250, kSloppy1253, kSloppy1254, kSloppy1257, kIso8859_2,
  kMacRoman, kCp437, kNumCharmapEncodings, kStrict1252 = kNumCharmapEncodings
};

struct CodePage {
  const char* name;
  bool sloppy;
  const int32_t* decode;                          // byte -> code point, -1 = undefined
  std::unordered_map<char32_t, uint8_t> encode;  // every encodable code point -> byte
};

const CodePage& code_page(int id);

struct Patterns {
  Regex32 badness;        // ftfy.badness.BADNESS_RE
  Regex32 utf8_detector;  // ftfy.chardata.UTF8_DETECTOR_RE
  Regex8 altered_utf8;    // ALTERED_UTF8_RE
  Regex8 lossy_utf8;      // LOSSY_UTF8_RE
  Regex8 a_grave_word;    // fixes.A_GRAVE_WORD_RE
  Regex32 ansi_escape;    // fixes.ANSI_RE
  Patterns();
};
const Patterns& patterns();

// '&name;' -> replacement (ftfy.chardata.HTML_ENTITIES).
const std::unordered_map<std::string, std::u32string>& html_entities();
// html.unescape's numeric rules: code point -> replacement (invalid charrefs), and code points dropped.
bool invalid_charref(int64_t cp, char32_t* replacement);
bool invalid_codepoint(int64_t cp);
// ftfy.chardata.WIDTH_MAP.
const std::unordered_map<char32_t, std::u32string>& width_map();

}  // namespace prefdiff::tokenizer::ftfy_data
