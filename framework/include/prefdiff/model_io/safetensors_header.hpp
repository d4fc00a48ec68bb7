#pragma once
// Parser and validator for the safetensors header (spec: backbones.md section 5).
// Torch-free on purpose: it is the part that reads untrusted bytes, so it is small enough to fuzz
// (framework/src/model_io/fuzz_safetensors_header.cpp) and to build without LibTorch.

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace prefdiff::model_io {

// Every error about a safetensors file, a diffusers folder or a state dict. what() names the file
// and the tensor involved, and ends with a "HINT:" where there is an obvious fix.
class ModelIoError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The dtype strings of the format, in the reference enum order (the writer sorts by it).
enum class StDtype : uint8_t {
  BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
  I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64
};

const char* st_dtype_name(StDtype dtype);
uint32_t st_dtype_bits(StDtype dtype);
bool st_dtype_from_name(const std::string& name, StDtype* out);

struct TensorEntry {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets relative to the start of the byte buffer, end exclusive
  uint64_t end = 0;
};

struct SafetensorsHeader {
  uint64_t header_len = 0;   // N
  uint64_t data_start = 0;   // 8 + N
  uint64_t data_size = 0;    // bytes in the byte buffer
  std::vector<TensorEntry> tensors;  // sorted by begin offset
  std::map<std::string, std::string> metadata;
};

// Largest header the reference reader accepts; also our bound on the memory the parser can use.
constexpr uint64_t kMaxHeaderLen = 100000000;

// Parses and validates the header of a complete safetensors image of `file_size` bytes, of which
// at least the first min(file_size, 8 + N) are at `bytes` (`available` of them). Checks: N bound and
// in-file, JSON object starting with '{', known dtypes, integer shapes, exactly-sized offsets that tile
// the byte buffer without gaps or overlaps, no duplicate names, string-only __metadata__.
// Throws ModelIoError naming `origin` (a path, for messages).
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, uint64_t available, uint64_t file_size,
                                           const std::string& origin);

}  // namespace prefdiff::model_io
