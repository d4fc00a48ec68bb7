#include "tokenizer/unicode_text.hpp"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <stdexcept>

namespace prefdiff::tokenizer {

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string u32_to_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) append_utf8(out, c);
  return out;
}

namespace {

// Length of the well-formed UTF-8 sequence at s[i] (Unicode Table 3-7), or 0 with `*bad` = length of
// the maximal ill-formed prefix (at least 1).
size_t utf8_sequence(std::string_view s, size_t i, char32_t* cp, size_t* bad) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  char32_t value;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    value = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    value = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    value = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) {
      *bad = k;
      return 0;
    }
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *bad = k;
      return 0;
    }
    value = (value << 6) | (b & 0x3F);
  }
  *cp = value;
  return need + 1;
}

icu::UnicodeString to_icu(std::u32string_view text) {
  return icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(text.data()),
                                       static_cast<int32_t>(text.size()));
}

std::u32string from_icu(const icu::UnicodeString& s) {
  std::u32string out(static_cast<size_t>(s.countChar32()), U'\0');
  UErrorCode status = U_ZERO_ERROR;
  s.toUTF32(reinterpret_cast<UChar32*>(out.data()), static_cast<int32_t>(out.size()), status);
  if (U_FAILURE(status)) throw std::runtime_error(std::string("ICU UTF-32 conversion failed: ") + u_errorName(status));
  return out;
}

std::u32string normalize(std::u32string_view text, const icu::Normalizer2* (*instance)(UErrorCode&)) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* norm = instance(status);
  if (U_FAILURE(status)) throw std::runtime_error(std::string("ICU normaliser unavailable: ") + u_errorName(status));
  icu::UnicodeString src = to_icu(text);
  if (norm->isNormalized(src, status) && U_SUCCESS(status)) return std::u32string(text);
  status = U_ZERO_ERROR;
  icu::UnicodeString dst = norm->normalize(src, status);
  if (U_FAILURE(status)) throw std::runtime_error(std::string("ICU normalisation failed: ") + u_errorName(status));
  return from_icu(dst);
}

}  // namespace

std::u32string utf8_to_u32(std::string_view utf8) {
  std::u32string out;
  out.reserve(utf8.size());
  for (size_t i = 0; i < utf8.size();) {
    char32_t cp = 0;
    size_t bad = 0;
    if (size_t n = utf8_sequence(utf8, i, &cp, &bad)) {
      out.push_back(cp);
      i += n;
    } else {
      out.push_back(0xFFFD);
      i += bad;
    }
  }
  return out;
}

bool decode_utf8_strict(std::string_view bytes, bool variants, std::u32string* out) {
  out->clear();
  out->reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const auto b0 = static_cast<unsigned char>(bytes[i]);
    if (variants && b0 == 0xC0 && i + 1 < bytes.size() && static_cast<unsigned char>(bytes[i + 1]) == 0x80) {
      out->push_back(0);  // Java's modified UTF-8 null
      i += 2;
      continue;
    }
    if (variants && b0 == 0xED && i + 5 < bytes.size()) {
      // CESU-8: ED [A0-AF] [80-BF] ED [B0-BF] [80-BF] encodes one supplementary character.
      auto u = [&](size_t k) { return static_cast<unsigned char>(bytes[i + k]); };
      if (u(1) >= 0xA0 && u(1) <= 0xAF && u(2) >= 0x80 && u(2) <= 0xBF && u(3) == 0xED && u(4) >= 0xB0 &&
          u(4) <= 0xBF && u(5) >= 0x80 && u(5) <= 0xBF) {
        char32_t hi = ((u(1) & 0x0F) << 6) | (u(2) & 0x3F), lo = ((u(4) & 0x0F) << 6) | (u(5) & 0x3F);
        out->push_back(0x10000 + (hi << 10) + lo);
        i += 6;
        continue;
      }
    }
    char32_t cp = 0;
    size_t bad = 0;
    size_t n = utf8_sequence(bytes, i, &cp, &bad);
    if (n == 0) return false;
    out->push_back(cp);
    i += n;
  }
  return true;
}

bool is_python_space(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

std::u32string nfc(std::u32string_view text) {
  if (is_ascii(text)) return std::u32string(text);
  return normalize(text, &icu::Normalizer2::getNFCInstance);
}

std::u32string nfkc(std::u32string_view text) {
  if (is_ascii(text)) return std::u32string(text);
  return normalize(text, &icu::Normalizer2::getNFKCInstance);
}

std::u32string python_lower(std::u32string_view text) {
  if (is_ascii(text)) {
    std::u32string out(text);
    for (char32_t& c : out)
      if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
    return out;
  }
  // The root locale: language-independent full mappings (İ -> i̇) and the final-sigma context, as Python.
  icu::UnicodeString s = to_icu(text);
  s.toLower(icu::Locale::getRoot());
  return from_icu(s);
}

}  // namespace prefdiff::tokenizer
