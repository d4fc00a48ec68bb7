#pragma once
// Small RAII wrappers over PCRE2: Regex32 matches code-point strings (std::u32string, one unit per code
// point, so offsets are Python's str indices); Regex8 matches byte strings. Compiled once (JIT where the
// library has it); matching is const and thread-safe.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace prefdiff::tokenizer {

struct RegexMatch {
  size_t begin = 0;
  size_t end = 0;
};

class Regex32 {
 public:
  // `pattern` is ASCII (non-ASCII written as \x{...}). Flags: PCRE2_UTF and PCRE2_UCP are always set.
  explicit Regex32(std::string_view pattern, uint32_t extra_options = 0);
  ~Regex32();
  Regex32(const Regex32&) = delete;
  Regex32& operator=(const Regex32&) = delete;

  // First match at or after `start`.
  bool search(std::u32string_view text, size_t start, RegexMatch* match) const;
  bool search(std::u32string_view text) const {
    RegexMatch m;
    return search(text, 0, &m);
  }
  // re.sub: every non-overlapping match replaced by `replace(text, match)`.
  std::u32string substitute(std::u32string_view text,
                            const std::function<std::u32string(std::u32string_view, const RegexMatch&)>& replace) const;

 private:
  void* code_ = nullptr;
};

class Regex8 {
 public:
  explicit Regex8(std::string_view pattern);
  ~Regex8();
  Regex8(const Regex8&) = delete;
  Regex8& operator=(const Regex8&) = delete;

  bool search(std::string_view bytes, size_t start, RegexMatch* match) const;
  std::string substitute(std::string_view bytes,
                         const std::function<std::string(std::string_view, const RegexMatch&)>& replace) const;

 private:
  void* code_ = nullptr;
};

}  // namespace prefdiff::tokenizer
