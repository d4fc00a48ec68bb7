#pragma once
// Internal: one decoder per format, each from bytes to 8-bit RGB as Pillow's convert("RGB"), plus the
// EXIF payload when the file has one. They throw DecodeFailure (kind + a message naming `name`).

#include <cstddef>
#include <cstdint>
#include <string>

#include "image/decode.hpp"

namespace prefdiff::image::detail {

struct RawImage {
  Image image;
  std::string source_mode;
  int bit_depth = 8;
  std::string exif;  // EXIF payload (starting with "Exif\0\0" or the TIFF header), empty if none
};

RawImage decode_jpeg(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels);
RawImage decode_png(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels);
RawImage decode_webp(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels);

// The IFD0 Orientation tag of an EXIF payload (libexif), 1 when absent or unreadable.
int exif_orientation(const std::string& exif);

[[noreturn]] void fail(DecodeErrorKind kind, const std::string& name, const std::string& message);
void check_pixel_limit(int64_t width, int64_t height, int64_t max_pixels, const std::string& name);

}  // namespace prefdiff::image::detail
