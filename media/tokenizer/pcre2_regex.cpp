#include "tokenizer/pcre2_regex.hpp"

#define PCRE2_CODE_UNIT_WIDTH 0
#include <pcre2.h>

#include <stdexcept>

namespace prefdiff::tokenizer {
namespace {

[[noreturn]] void compile_error(std::string_view pattern, int code, size_t offset, std::string message) {
  throw std::logic_error("internal error: PCRE2 cannot compile pattern at offset " + std::to_string(offset) + ": " +
                         message + " (error " + std::to_string(code) + ") in '" +
                         std::string(pattern.substr(0, 200)) + "'");
}

// One match-data block per thread and code-unit width: matching allocates nothing. Only the whole-match
// offsets are read, so a small ovector is enough (PCRE2 then returns 0 for "matched, groups dropped").
pcre2_match_data_32* match_data_32() {
  thread_local struct Holder {
    pcre2_match_data_32* data = pcre2_match_data_create_32(8, nullptr);
    ~Holder() { pcre2_match_data_free_32(data); }
  } holder;
  return holder.data;
}

pcre2_match_data_8* match_data_8() {
  thread_local struct Holder {
    pcre2_match_data_8* data = pcre2_match_data_create_8(8, nullptr);
    ~Holder() { pcre2_match_data_free_8(data); }
  } holder;
  return holder.data;
}

[[noreturn]] void match_error(int rc) {
  throw std::runtime_error("PCRE2 match failed with error " + std::to_string(rc) +
                           " (a pathological input for a tokenizer pattern?)");
}

}  // namespace

Regex32::Regex32(std::string_view pattern, uint32_t extra_options) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  std::u32string wide(pattern.begin(), pattern.end());
  pcre2_code_32* code = pcre2_compile_32(reinterpret_cast<PCRE2_SPTR32>(wide.data()), wide.size(),
                                         PCRE2_UTF | PCRE2_UCP | extra_options, &error, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR32 buffer[256];
    pcre2_get_error_message_32(error, buffer, 256);
    std::string message;
    for (size_t i = 0; i < 256 && buffer[i]; ++i) message.push_back(static_cast<char>(buffer[i] < 128 ? buffer[i] : '?'));
    compile_error(pattern, error, offset, message);
  }
  pcre2_jit_compile_32(code, PCRE2_JIT_COMPLETE);  // best effort: the interpreter is used without JIT
  code_ = code;
}

Regex32::~Regex32() { pcre2_code_free_32(static_cast<pcre2_code_32*>(code_)); }

bool Regex32::search(std::u32string_view text, size_t start, RegexMatch* match) const {
  auto* code = static_cast<pcre2_code_32*>(code_);
  pcre2_match_data_32* data = match_data_32();
  // Valid code points by construction (no surrogates): skip PCRE2's UTF check.
  int rc = pcre2_match_32(code, reinterpret_cast<PCRE2_SPTR32>(text.data()), text.size(), start, PCRE2_NO_UTF_CHECK,
                          data, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) match_error(rc);
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer_32(data);
  match->begin = ov[0];
  match->end = ov[1];
  return true;
}

std::u32string Regex32::substitute(
    std::u32string_view text,
    const std::function<std::u32string(std::u32string_view, const RegexMatch&)>& replace) const {
  std::u32string out;
  size_t pos = 0, copied = 0;
  RegexMatch m;
  while (pos <= text.size() && search(text, pos, &m)) {
    out.append(text.substr(copied, m.begin - copied));
    out += replace(text, m);
    copied = m.end;
    pos = m.end > m.begin ? m.end : m.end + 1;  // an empty match advances by one
  }
  out.append(text.substr(copied));
  return out;
}

Regex8::Regex8(std::string_view pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code_8* code = pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(pattern.data()), pattern.size(), 0, &error,
                                       &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR8 buffer[256];
    pcre2_get_error_message_8(error, buffer, 256);
    compile_error(pattern, error, offset, reinterpret_cast<const char*>(buffer));
  }
  pcre2_jit_compile_8(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex8::~Regex8() { pcre2_code_free_8(static_cast<pcre2_code_8*>(code_)); }

bool Regex8::search(std::string_view bytes, size_t start, RegexMatch* match) const {
  auto* code = static_cast<pcre2_code_8*>(code_);
  pcre2_match_data_8* data = match_data_8();
  int rc = pcre2_match_8(code, reinterpret_cast<PCRE2_SPTR8>(bytes.data()), bytes.size(), start, 0, data, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) match_error(rc);
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer_8(data);
  match->begin = ov[0];
  match->end = ov[1];
  return true;
}

std::string Regex8::substitute(std::string_view bytes,
                               const std::function<std::string(std::string_view, const RegexMatch&)>& replace) const {
  std::string out;
  size_t pos = 0, copied = 0;
  RegexMatch m;
  while (pos <= bytes.size() && search(bytes, pos, &m)) {
    out.append(bytes.substr(copied, m.begin - copied));
    out += replace(bytes, m);
    copied = m.end;
    pos = m.end > m.begin ? m.end : m.end + 1;
  }
  out.append(bytes.substr(copied));
  return out;
}

}  // namespace prefdiff::tokenizer
