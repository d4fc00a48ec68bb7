#pragma once
// Unicode helpers for the tokenizer's text clean-up, with Python's str semantics: text is a sequence of
// code points (std::u32string), lower-casing is Python's str.lower() (full case mapping with the final
// sigma rule) and whitespace is what str.isspace() accepts. Normalisation and case mapping come from ICU.

#include <string>
#include <string_view>

namespace prefdiff::tokenizer {

// UTF-8 -> code points. Bytes that are not well-formed UTF-8 become U+FFFD (one per maximal ill-formed
// subsequence, as Python's decode(errors="replace")).
std::u32string utf8_to_u32(std::string_view utf8);
std::string u32_to_utf8(std::u32string_view text);
void append_utf8(std::string& out, char32_t cp);

// Strict UTF-8 decoding as Python's bytes.decode("utf-8"); with `variants`, also ftfy's "utf-8-variants":
// Java's C0 80 for U+0000 and CESU-8 surrogate pairs. Returns false on any error.
bool decode_utf8_strict(std::string_view bytes, bool variants, std::u32string* out);

// str.isspace(): the characters Python's re treats as \s in str patterns (Unicode 14).
bool is_python_space(char32_t cp);
inline bool is_ascii(std::u32string_view text) {
  for (char32_t c : text)
    if (c >= 0x80) return false;
  return true;
}

// unicodedata.normalize("NFC" / "NFKC", text) and str.lower(), via ICU.
std::u32string nfc(std::u32string_view text);
std::u32string nfkc(std::u32string_view text);
std::u32string python_lower(std::u32string_view text);

}  // namespace prefdiff::tokenizer
