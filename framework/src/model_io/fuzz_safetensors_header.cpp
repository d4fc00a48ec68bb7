// libFuzzer entry: the input is a whole safetensors file image. Any outcome other than a parsed header
// or a ModelIoError (a crash, a leak, UB, an allocation beyond -rss_limit_mb) is a bug.
#include <cstddef>
#include <cstdint>

#include "prefdiff/model_io/safetensors_header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto h = prefdiff::model_io::parse_safetensors_header(data, size, size, "fuzz");
    // Validated offsets must lie inside the image.
    for (const auto& t : h.tensors)
      if (h.data_start + t.end > size) __builtin_trap();
  } catch (const prefdiff::model_io::ModelIoError&) {
  }
  return 0;
}
