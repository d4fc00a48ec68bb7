#pragma once
// Decoding JPEG (libjpeg-turbo), PNG (libpng) and WebP (libwebp) files or in-memory bytes to 8-bit RGB,
// with the conversions of Pillow's Image.open(...).convert("RGB") that the training scripts use:
//   greyscale -> R = G = B; alpha dropped (not composited, as Pillow's convert); palette looked up;
//   CMYK / YCCK JPEG -> inverted (Adobe convention, as Pillow) and converted with Pillow's formula;
//   16-bit PNG -> high byte (Pillow does this for RGB(A); for 16-bit greyscale it clips at 255 instead,
//   which whitens the image: we take the high byte there too);
//   EXIF orientation applied as PIL.ImageOps.exif_transpose (DecodeOptions::apply_exif_orientation).
// The format is recognised from the bytes, not the file name.
//
// Problems with one input (missing, unreadable, not an image, truncated, corrupt) are DecodeErrors that
// name the file: try_decode_* returns them as values for an importer to count and report;
// decode_* throws them as DecodeFailure.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "image/image.hpp"

namespace prefdiff::image {

enum class ImageFormat { jpeg, png, webp };
const char* format_name(ImageFormat format);

enum class DecodeErrorKind {
  missing,      // no such file
  unreadable,   // exists but cannot be read (permissions, I/O error, a folder)
  not_an_image, // not JPEG, PNG or WebP (by content)
  truncated,    // the data ends before the image does
  corrupt,      // the decoder rejected the data
  too_large,    // larger than DecodeOptions::max_pixels
};
const char* error_kind_name(DecodeErrorKind kind);

struct DecodeError {
  DecodeErrorKind kind = DecodeErrorKind::corrupt;
  std::string source;   // the path, or the name given for in-memory bytes
  std::string message;  // full sentence naming the source, with a HINT where there is one
};

class DecodeFailure : public std::runtime_error {
 public:
  explicit DecodeFailure(DecodeError error) : std::runtime_error(error.message), error_(std::move(error)) {}
  const DecodeError& error() const { return error_; }

 private:
  DecodeError error_;
};

struct DecodeOptions {
  bool apply_exif_orientation = true;
  int64_t max_pixels = 178956970;  // Pillow's decompression-bomb error threshold (2 x MAX_IMAGE_PIXELS)
};

struct DecodedImage {
  Image image;                 // 8-bit RGB after orientation: its size is the "original size" for SDXL
  ImageFormat format = ImageFormat::png;
  std::string source_mode;     // what was converted: "RGB", "L", "LA", "RGBA", "P", "CMYK", "I;16", ...
  int bit_depth = 8;           // per channel, as stored
  int exif_orientation = 1;    // 1..8 as found (1 when absent); applied when the option is on
};

struct DecodeResult {
  std::optional<DecodedImage> image;
  DecodeError error;  // meaningful when !image
  bool ok() const { return image.has_value(); }
};

DecodedImage decode_image(const std::filesystem::path& path, const DecodeOptions& options = {});
DecodeResult try_decode_image(const std::filesystem::path& path, const DecodeOptions& options = {});
// In-memory bytes (Pick-a-Pic's parquet columns); `name` identifies them in messages.
DecodedImage decode_image_bytes(const uint8_t* data, size_t size, const std::string& name,
                                const DecodeOptions& options = {});
DecodeResult try_decode_image_bytes(const uint8_t* data, size_t size, const std::string& name,
                                    const DecodeOptions& options = {});

// The format of encoded bytes by their signature, or nullopt.
std::optional<ImageFormat> sniff_format(const uint8_t* data, size_t size);

// Pillow's transpose for an EXIF orientation (1..8; others leave the image as is).
Image apply_orientation(const Image& image, int orientation);

}  // namespace prefdiff::image
