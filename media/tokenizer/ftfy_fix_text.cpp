// Port of ftfy 6.3.1's fix_text (default TextFixerConfig), step for step; see text_cleanup.hpp.
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/ftfy_tables.hpp"
#include "tokenizer/text_cleanup.hpp"
#include "tokenizer/unicode_text.hpp"

namespace prefdiff::tokenizer {
namespace {

using namespace ftfy_data;

bool contains(std::u32string_view text, char32_t c) { return text.find(c) != std::u32string_view::npos; }

bool is_bad(std::u32string_view text) { return patterns().badness.search(text); }

// chardata.possible_encoding: every character has a byte in the code page (sloppy pages give U+FFFD the
// byte 0x1A, so a literal U+001A is not encodable there).
bool possible_encoding(std::u32string_view text, const CodePage& page) {
  for (char32_t c : text) {
    if (c < 0x80 && !(page.sloppy && c == 0x1A)) continue;
    if (!page.encode.count(c)) return false;
  }
  return true;
}

std::string encode(std::u32string_view text, const CodePage& page) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c < 0x80 && !(page.sloppy && c == 0x1A)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(page.encode.at(c)));
    }
  }
  return out;
}

// fixes.restore_byte_a0: "\xc3 " not starting a few Portuguese words -> "\xc3\xa0 ", then spaces inside
// sequences that would be UTF-8 with byte A0 become A0.
std::string restore_byte_a0(std::string_view bytes) {
  const Patterns& p = patterns();
  std::string step = p.a_grave_word.substitute(bytes, [](std::string_view, const RegexMatch&) {
    return std::string("\xc3\xa0 ");
  });
  return p.altered_utf8.substitute(step, [](std::string_view s, const RegexMatch& m) {
    std::string piece(s.substr(m.begin, m.end - m.begin));
    for (char& c : piece)
      if (c == ' ') c = '\xa0';
    return piece;
  });
}

// fixes.replace_lossy_sequences: UTF-8 sequences with a byte lost (0x1A or '?') become U+FFFD.
std::string replace_lossy_sequences(std::string_view bytes) {
  return patterns().lossy_utf8.substitute(bytes, [](std::string_view, const RegexMatch&) {
    return std::string("\xef\xbf\xbd");
  });
}

std::u32string decode_with(std::string_view bytes, const CodePage& page, bool* ok) {
  std::u32string out;
  out.reserve(bytes.size());
  *ok = true;
  for (char b : bytes) {
    int32_t cp = page.decode[static_cast<unsigned char>(b)];
    if (cp < 0) {
      *ok = false;
      return {};
    }
    out.push_back(static_cast<char32_t>(cp));
  }
  return out;
}

// fixes.fix_c1_controls: C1 control characters read as sloppy Windows-1252.
std::u32string fix_c1_controls(std::u32string_view text) {
  const CodePage& page = code_page(kSloppy1252);
  std::u32string out(text);
  for (char32_t& c : out)
    if (c >= 0x80 && c <= 0x9F) c = static_cast<char32_t>(page.decode[c]);
  return out;
}

bool has_c1_control(std::u32string_view text) {
  for (char32_t c : text)
    if (c >= 0x80 && c <= 0x9F) return true;
  return false;
}

std::u32string decode_inconsistent_utf8(std::u32string_view text) {
  return patterns().utf8_detector.substitute(text, [&](std::u32string_view s, const RegexMatch& m) {
    std::u32string_view piece = s.substr(m.begin, m.end - m.begin);
    if (piece.size() < text.size() && is_bad(piece)) return ftfy_fix_encoding(piece);
    return std::u32string(piece);
  });
}

// ftfy._fix_encoding_one_step_and_explain.
std::u32string fix_encoding_one_step(std::u32string_view text) {
  if (text.empty() || is_ascii(text) || !is_bad(text)) return std::u32string(text);
  bool latin1_possible = false;
  for (int id = 0; id < kNumCharmapEncodings; ++id) {
    const CodePage& page = code_page(id);
    if (!possible_encoding(text, page)) continue;
    if (id == kLatin1) latin1_possible = true;
    std::string bytes = encode(text, page);
    if (id != kMacRoman) {
      RegexMatch m;
      if (patterns().altered_utf8.search(bytes, 0, &m)) bytes = restore_byte_a0(bytes);
    }
    if (page.sloppy) bytes = replace_lossy_sequences(bytes);
    bool variants = bytes.find('\xed') != std::string::npos || bytes.find('\xc0') != std::string::npos;
    std::u32string fixed;
    if (decode_utf8_strict(bytes, variants, &fixed)) return fixed;
  }
  if (patterns().utf8_detector.search(text)) {
    std::u32string fixed = decode_inconsistent_utf8(text);
    if (fixed != text) return fixed;
  }
  // ftfy compares against "windows-1252", a name its list never holds (it has "sloppy-windows-1252"),
  // so Latin-1 text is always tried as strict Windows-1252 here.
  if (latin1_possible) {
    bool ok = false;
    std::u32string fixed = decode_with(encode(text, code_page(kLatin1)), code_page(kStrict1252), &ok);
    if (ok && fixed != text) return fixed;
  }
  if (has_c1_control(text)) return fix_c1_controls(text);
  return std::u32string(text);
}

// fixes.unescape_html: '&name;' from ftfy's entity table, '&#N;' / '&#xH;' as html.unescape decodes them.
std::u32string unescape_numeric(std::u32string_view ref) {  // ref = "&#...;"
  std::u32string_view body = ref.substr(2, ref.size() - 3);
  const bool hex = !body.empty() && (body[0] == 'x' || body[0] == 'X');
  std::u32string_view digits = hex ? body.substr(1) : body;
  if (digits.empty()) return std::u32string(ref);
  int64_t value = 0;
  for (char32_t c : digits) {
    int d;
    if (c >= '0' && c <= '9') d = static_cast<int>(c - '0');
    else if (hex && c >= 'a' && c <= 'f') d = static_cast<int>(c - 'a' + 10);
    else if (hex && c >= 'A' && c <= 'F') d = static_cast<int>(c - 'A' + 10);
    else return std::u32string(ref);  // html.unescape leaves a ';' behind: ftfy keeps the reference
    value = value * (hex ? 16 : 10) + d;
    if (value > 0x10FFFF) value = 0x110000;  // saturate: anything above is U+FFFD
  }
  char32_t replacement;
  std::u32string out;
  if (invalid_charref(value, &replacement)) out.push_back(replacement);
  else if ((value >= 0xD800 && value <= 0xDFFF) || value > 0x10FFFF) out.push_back(0xFFFD);
  else if (invalid_codepoint(value)) return out;
  else out.push_back(static_cast<char32_t>(value));
  if (contains(out, U';')) return std::u32string(ref);
  return out;
}

bool is_ascii_alnum(char32_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::u32string unescape_html(std::u32string_view text) {
  if (!contains(text, U'&')) return std::u32string(text);
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '&') {
      out.push_back(text[i++]);
      continue;
    }
    // chardata.HTML_ENTITY_RE: &#?[0-9A-Za-z]{1,24};
    size_t j = i + 1;
    const bool numeric = j < text.size() && text[j] == '#';
    if (numeric) ++j;
    size_t run = 0;
    while (j + run < text.size() && is_ascii_alnum(text[j + run]) && run <= 24) ++run;
    if (run == 0 || run > 24 || j + run >= text.size() || text[j + run] != ';') {
      out.push_back(text[i++]);
      continue;
    }
    std::u32string_view ref = text.substr(i, j + run + 1 - i);
    if (numeric) {
      out += unescape_numeric(ref);
    } else {
      std::string key(ref.begin(), ref.end());  // ASCII by construction
      auto it = html_entities().find(key);
      out += it != html_entities().end() ? it->second : std::u32string(ref);
    }
    i = j + run + 1;
  }
  return out;
}

std::u32string fix_latin_ligatures(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    switch (c) {  // ftfy.chardata.LIGATURES
      case 0x0132: out += U"IJ"; break;
      case 0x0133: out += U"ij"; break;
      case 0x0149: out += U"\u02BCn"; break;
      case 0x01F1: out += U"DZ"; break;
      case 0x01F2: out += U"Dz"; break;
      case 0x01F3: out += U"dz"; break;
      case 0x01C4: out += U"D\u017D"; break;
      case 0x01C5: out += U"D\u017E"; break;
      case 0x01C6: out += U"d\u017E"; break;
      case 0x01C7: out += U"LJ"; break;
      case 0x01C8: out += U"Lj"; break;
      case 0x01C9: out += U"lj"; break;
      case 0x01CA: out += U"NJ"; break;
      case 0x01CB: out += U"Nj"; break;
      case 0x01CC: out += U"nj"; break;
      case 0xFB00: out += U"ff"; break;
      case 0xFB01: out += U"fi"; break;
      case 0xFB02: out += U"fl"; break;
      case 0xFB03: out += U"ffi"; break;
      case 0xFB04: out += U"ffl"; break;
      case 0xFB05: out += U"\u017Ft"; break;
      case 0xFB06: out += U"st"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::u32string fix_character_width(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto& map = width_map();
  for (char32_t c : text) {
    if (c == 0x3000 || (c >= 0xFF01 && c < 0xFFF0)) {
      auto it = map.find(c);
      if (it != map.end()) {
        out += it->second;
        continue;
      }
    }
    out.push_back(c);
  }
  return out;
}

std::u32string uncurl_quotes(std::u32string_view text) {
  std::u32string out(text);
  for (char32_t& c : out) {
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
    else if (c >= 0x201C && c <= 0x201F) c = '"';
  }
  return out;
}

std::u32string fix_line_breaks(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char32_t c = text[i];
    if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;  // CRLF -> LF
    if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85) c = '\n';
    out.push_back(c);
  }
  return out;
}

bool is_removed_control(char32_t c) {  // chardata.CONTROL_CHARS
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

std::u32string remove_control_chars(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text)
    if (!is_removed_control(c)) out.push_back(c);
  return out;
}

std::u32string remove_terminal_escapes(std::u32string_view text) {
  if (!contains(text, 0x1B)) return std::u32string(text);
  return patterns().ansi_escape.substitute(text, [](std::u32string_view, const RegexMatch&) { return std::u32string(); });
}

// ftfy.fix_and_explain on one segment. Surrogates cannot occur in code points decoded from UTF-8 (and
// ftfy's decoders never produce them), so fix_surrogates has nothing to do.
std::u32string fix_segment(std::u32string text, bool unescape) {
  if (contains(text, U'<')) unescape = false;
  while (true) {
    const std::u32string original = text;
    if (unescape) text = unescape_html(text);
    text = ftfy_fix_encoding(text);
    if (has_c1_control(text)) text = fix_c1_controls(text);
    text = fix_latin_ligatures(text);
    text = fix_character_width(text);
    text = uncurl_quotes(text);
    text = fix_line_breaks(text);
    text = remove_terminal_escapes(text);
    text = remove_control_chars(text);
    text = nfc(text);
    if (text == original) return text;
  }
}

}  // namespace

std::u32string ftfy_fix_encoding(std::u32string_view text) {
  std::u32string current(text);
  while (true) {
    std::u32string next = fix_encoding_one_step(current);
    if (next == current) return next;
    current = std::move(next);
  }
}

std::u32string ftfy_fix_text(std::u32string_view text) {
  constexpr size_t kMaxDecodeLength = 1000000;  // TextFixerConfig.max_decode_length
  std::u32string out;
  out.reserve(text.size());
  bool unescape = true;  // unescape_html="auto": off from the first segment that contains '<'
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(U'\n', pos);
    end = end == std::u32string_view::npos ? text.size() : end + 1;
    if (end - pos > kMaxDecodeLength) end = pos + kMaxDecodeLength;
    std::u32string_view segment = text.substr(pos, end - pos);
    if (unescape && contains(segment, U'<')) unescape = false;
    out += fix_segment(std::u32string(segment), unescape);
    pos = end;
  }
  return out;
}

std::u32string clip_clean_text(std::u32string_view text) {
  std::u32string fixed = ftfy_fix_text(text);
  // whitespace_clean: re.sub(r"\s+", " ", text).strip()
  std::u32string collapsed;
  collapsed.reserve(fixed.size());
  bool pending_space = false;
  for (char32_t c : fixed) {
    if (is_python_space(c)) {
      pending_space = true;
      continue;
    }
    if (pending_space && !collapsed.empty()) collapsed.push_back(U' ');
    pending_space = false;
    collapsed.push_back(c);
  }
  return python_lower(collapsed);
}

std::string clip_clean_text(std::string_view utf8) { return u32_to_utf8(clip_clean_text(utf8_to_u32(utf8))); }

}  // namespace prefdiff::tokenizer
