// safetensors header: bounds checks, then a SAX parse that accepts only the schema of the format, so a
// hostile header can neither nest deeply nor make the parser build a large DOM.
#include "prefdiff/model_io/safetensors_header.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <unordered_set>

namespace prefdiff::model_io {

namespace {

struct DtypeInfo {
  StDtype dtype;
  const char* name;
  uint32_t bits;
};

constexpr DtypeInfo kDtypes[] = {
    {StDtype::BOOL, "BOOL", 8},         {StDtype::F4, "F4", 4},
    {StDtype::F6_E2M3, "F6_E2M3", 6},   {StDtype::F6_E3M2, "F6_E3M2", 6},
    {StDtype::U8, "U8", 8},             {StDtype::I8, "I8", 8},
    {StDtype::F8_E5M2, "F8_E5M2", 8},   {StDtype::F8_E4M3, "F8_E4M3", 8},
    {StDtype::F8_E8M0, "F8_E8M0", 8},   {StDtype::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {StDtype::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    {StDtype::I16, "I16", 16},          {StDtype::U16, "U16", 16},
    {StDtype::F16, "F16", 16},          {StDtype::BF16, "BF16", 16},
    {StDtype::I32, "I32", 32},          {StDtype::U32, "U32", 32},
    {StDtype::F32, "F32", 32},          {StDtype::C64, "C64", 64},
    {StDtype::F64, "F64", 64},          {StDtype::I64, "I64", 64},
    {StDtype::U64, "U64", 64},
};

using json = nlohmann::json;

// Accepts exactly: { "__metadata__": {str: str}?, NAME: {"dtype": str, "shape": [uint...],
// "data_offsets": [uint, uint]}, ... }. Returns false (with a message) on anything else.
class HeaderSax : public nlohmann::json_sax<json> {
 public:
  std::string error;
  std::vector<TensorEntry> tensors;
  std::map<std::string, std::string> metadata;

  bool null() override { return fail("unexpected null"); }
  bool boolean(bool) override { return fail("unexpected boolean"); }
  bool number_integer(number_integer_t v) override {
    if (v < 0) return fail("negative number in '" + field_ + "'");
    return number_unsigned(static_cast<number_unsigned_t>(v));
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (state_ == State::kShape) {
      if (v > static_cast<uint64_t>(INT64_MAX)) return fail("dimension too large in 'shape'");
      cur_.shape.push_back(static_cast<int64_t>(v));
      return true;
    }
    if (state_ == State::kOffsets) {
      if (n_offsets_ >= 2) return fail("'data_offsets' must have exactly 2 entries");
      (n_offsets_ == 0 ? cur_.begin : cur_.end) = v;
      ++n_offsets_;
      return true;
    }
    return fail("unexpected number");
  }
  bool number_float(number_float_t, const string_t&) override {
    return fail("non-integer (or out of uint64 range) number");
  }
  bool binary(binary_t&) override { return fail("unexpected binary value"); }
  bool string(string_t& s) override {
    if (state_ == State::kMetadata) {
      metadata[field_] = s;
      return true;
    }
    if (state_ == State::kTensor && field_ == "dtype") {
      if (seen_dtype_) return fail("duplicate 'dtype'");
      if (!st_dtype_from_name(s, &cur_.dtype)) return fail("unknown dtype '" + s + "'");
      seen_dtype_ = true;
      return true;
    }
    return fail("unexpected string");
  }
  bool start_object(std::size_t) override {
    switch (state_) {
      case State::kStart: state_ = State::kTop; return true;
      case State::kTop:
        if (cur_.name == "__metadata__") {
          if (seen_metadata_) return fail("duplicate '__metadata__'");
          seen_metadata_ = true;
          state_ = State::kMetadata;
        } else {
          state_ = State::kTensor;
        }
        return true;
      default: return fail("unexpected object");
    }
  }
  bool key(string_t& k) override {
    if (state_ == State::kTop) {
      if (!names_.insert(k).second) return fail("duplicate tensor name '" + k + "'");
      cur_ = TensorEntry{};
      cur_.name = k;
      seen_dtype_ = seen_shape_ = false;
      n_offsets_ = 0;
      return true;
    }
    if (state_ == State::kMetadata) {
      field_ = k;
      if (metadata.count(k)) return fail("duplicate __metadata__ key '" + k + "'");
      return true;
    }
    if (state_ == State::kTensor) {
      if (k != "dtype" && k != "shape" && k != "data_offsets")
        return fail("unknown field '" + k + "' in tensor '" + cur_.name + "'");
      field_ = k;
      return true;
    }
    return fail("unexpected key");
  }
  bool end_object() override {
    if (state_ == State::kMetadata) { state_ = State::kTop; return true; }
    if (state_ == State::kTensor) {
      if (!seen_dtype_ || !seen_shape_ || n_offsets_ != 2)
        return fail("tensor '" + cur_.name + "' lacks one of dtype/shape/data_offsets");
      tensors.push_back(std::move(cur_));
      state_ = State::kTop;
      return true;
    }
    if (state_ == State::kTop) { state_ = State::kDone; return true; }
    return fail("unexpected end of object");
  }
  bool start_array(std::size_t) override {
    if (state_ == State::kTensor && field_ == "shape") {
      if (seen_shape_) return fail("duplicate 'shape'");
      seen_shape_ = true;
      state_ = State::kShape;
      return true;
    }
    if (state_ == State::kTensor && field_ == "data_offsets") {
      if (n_offsets_ != 0) return fail("duplicate 'data_offsets'");
      state_ = State::kOffsets;
      return true;
    }
    return fail("unexpected array");
  }
  bool end_array() override {
    if (state_ == State::kShape || state_ == State::kOffsets) { state_ = State::kTensor; return true; }
    return fail("unexpected end of array");
  }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& ex) override {
    if (error.empty()) error = "invalid JSON at byte " + std::to_string(pos) + ": " + ex.what();
    return false;
  }

 private:
  enum class State { kStart, kTop, kMetadata, kTensor, kShape, kOffsets, kDone };
  bool fail(const std::string& msg) {
    if (error.empty())
      error = msg + (cur_.name.empty() || state_ == State::kTop ? "" : " (in entry '" + cur_.name + "')");
    return false;
  }
  State state_ = State::kStart;
  TensorEntry cur_;
  std::string field_;
  std::unordered_set<std::string> names_;
  bool seen_metadata_ = false, seen_dtype_ = false, seen_shape_ = false;
  int n_offsets_ = 0;
};

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  throw ModelIoError("safetensors file '" + origin + "': " + what +
                     ". HINT: the file is truncated or not a safetensors file; re-download or re-export it.");
}

}  // namespace

const char* st_dtype_name(StDtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d.name;
  return "?";
}

uint32_t st_dtype_bits(StDtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d.bits;
  return 0;
}

bool st_dtype_from_name(const std::string& name, StDtype* out) {
  for (const auto& d : kDtypes) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t available, uint64_t file_size,
                                           const std::string& origin) {
  if (file_size < 8 || available < 8) bad(origin, "shorter than the 8-byte length prefix");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian on every host
  if (n > kMaxHeaderLen)
    bad(origin, "header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(kMaxHeaderLen));
  if (n > file_size - 8)
    bad(origin, "header length " + std::to_string(n) + " runs past the end of the " + std::to_string(file_size) +
                    "-byte file");
  if (available < 8 + n) bad(origin, "header not fully readable");
  if (n == 0 || bytes[8] != '{') bad(origin, "header does not start with '{'");

  const char* first = reinterpret_cast<const char*>(bytes + 8);
  HeaderSax sax;
  // strict=true: only whitespace (the writers' space padding) may follow the object.
  bool ok = json::sax_parse(first, first + n, &sax, nlohmann::detail::input_format_t::json, true);
  if (!ok) bad(origin, "invalid header: " + (sax.error.empty() ? std::string("malformed JSON") : sax.error));

  SafetensorsHeader h;
  h.header_len = n;
  h.data_start = 8 + n;
  h.data_size = file_size - 8 - n;
  h.metadata = std::move(sax.metadata);
  h.tensors = std::move(sax.tensors);

  for (const auto& t : h.tensors) {
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
        bad(origin, "tensor '" + t.name + "': shape overflows");
    }
    uint64_t bits = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(st_dtype_bits(t.dtype)), &bits))
      bad(origin, "tensor '" + t.name + "': byte size overflows");
    if (bits % 8 != 0) bad(origin, "tensor '" + t.name + "': sub-byte dtype with a size that is not whole bytes");
    if (t.end < t.begin) bad(origin, "tensor '" + t.name + "': data_offsets end < begin");
    if (t.end - t.begin != bits / 8)
      bad(origin, "tensor '" + t.name + "': data_offsets span " + std::to_string(t.end - t.begin) +
                      " bytes but dtype and shape need " + std::to_string(bits / 8));
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (const auto& t : h.tensors) {
    if (t.begin != expect)
      bad(origin, "tensor '" + t.name + "' starts at byte " + std::to_string(t.begin) + " of the data buffer but " +
                      std::to_string(expect) + " was expected (gap or overlap)");
    expect = t.end;
  }
  if (expect != h.data_size)
    bad(origin, "tensors cover " + std::to_string(expect) + " bytes but the data buffer has " +
                    std::to_string(h.data_size) + " (file truncated or trailing bytes)");
  return h;
}

}  // namespace prefdiff::model_io
