#pragma once
// An 8-bit RGB image in memory: rows top to bottom, pixels interleaved R, G, B (HWC), no padding.
// The common currency of decoding, resampling, cropping, grids and the PNG writer.

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace prefdiff::image {

struct Image {
  int32_t width = 0;
  int32_t height = 0;
  std::vector<uint8_t> pixels;  // width * height * 3 bytes

  Image() = default;
  // A width x height image filled with one colour.
  Image(int32_t w, int32_t h, uint8_t r = 0, uint8_t g = 0, uint8_t b = 0);

  bool empty() const { return width == 0 || height == 0; }
  size_t row_bytes() const { return static_cast<size_t>(width) * 3; }
  uint8_t* row(int32_t y) { return pixels.data() + static_cast<size_t>(y) * row_bytes(); }
  const uint8_t* row(int32_t y) const { return pixels.data() + static_cast<size_t>(y) * row_bytes(); }
};

// Every image error that is not about one input file's contents (bad arguments, unwritable output).
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace prefdiff::image
