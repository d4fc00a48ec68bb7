#include "image/decode.hpp"

#include <libexif/exif-data.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "image/codecs.hpp"

namespace prefdiff::image {
namespace fs = std::filesystem;

namespace detail {

void fail(DecodeErrorKind kind, const std::string& name, const std::string& message) {
  throw DecodeFailure(DecodeError{kind, name, "cannot decode image '" + name + "': " + message});
}

void check_pixel_limit(int64_t width, int64_t height, int64_t max_pixels, const std::string& name) {
  if (width <= 0 || height <= 0) fail(DecodeErrorKind::corrupt, name, "the header gives an empty size.");
  if (width * height > max_pixels) {
    fail(DecodeErrorKind::too_large, name,
         std::to_string(width) + "x" + std::to_string(height) + " pixels is more than the limit of " +
             std::to_string(max_pixels) + " (a decompression bomb?). HINT: raise DecodeOptions::max_pixels if the "
             "image is genuine.");
  }
}

int exif_orientation(const std::string& exif) {
  if (exif.empty()) return 1;
  // libexif wants the APP1 form; PNG eXIf and WebP EXIF chunks hold the bare TIFF structure.
  std::string payload = exif.compare(0, 6, std::string("Exif\0\0", 6)) == 0 ? exif : std::string("Exif\0\0", 6) + exif;
  ExifData* data = exif_data_new_from_data(reinterpret_cast<const unsigned char*>(payload.data()),
                                           static_cast<unsigned int>(payload.size()));
  if (!data) return 1;
  int orientation = 1;
  ExifEntry* entry = exif_content_get_entry(data->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
  if (entry && entry->format == EXIF_FORMAT_SHORT && entry->components >= 1 && entry->data)
    orientation = exif_get_short(entry->data, exif_data_get_byte_order(data));
  exif_data_unref(data);
  return orientation;
}

}  // namespace detail

const char* format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::jpeg: return "JPEG";
    case ImageFormat::png: return "PNG";
    case ImageFormat::webp: return "WebP";
  }
  return "?";
}

const char* error_kind_name(DecodeErrorKind kind) {
  switch (kind) {
    case DecodeErrorKind::missing: return "missing";
    case DecodeErrorKind::unreadable: return "unreadable";
    case DecodeErrorKind::not_an_image: return "not_an_image";
    case DecodeErrorKind::truncated: return "truncated";
    case DecodeErrorKind::corrupt: return "corrupt";
    case DecodeErrorKind::too_large: return "too_large";
  }
  return "?";
}

std::optional<ImageFormat> sniff_format(const uint8_t* data, size_t size) {
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return ImageFormat::jpeg;
  if (size >= 8 && std::memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return ImageFormat::png;
  if (size >= 12 && std::memcmp(data, "RIFF", 4) == 0 && std::memcmp(data + 8, "WEBP", 4) == 0) return ImageFormat::webp;
  return std::nullopt;
}

Image apply_orientation(const Image& in, int orientation) {
  if (orientation < 2 || orientation > 8) return in;
  const int32_t w = in.width, h = in.height;
  const bool swap = orientation >= 5;  // 5..8 transpose the axes
  Image out(swap ? h : w, swap ? w : h);
  for (int32_t y = 0; y < out.height; ++y) {
    uint8_t* dst = out.row(y);
    for (int32_t x = 0; x < out.width; ++x) {
      int32_t sx = x, sy = y;  // the source pixel of output (x, y), as PIL's Image.transpose
      switch (orientation) {
        case 2: sx = w - 1 - x; break;                        // FLIP_LEFT_RIGHT
        case 3: sx = w - 1 - x; sy = h - 1 - y; break;        // ROTATE_180
        case 4: sy = h - 1 - y; break;                        // FLIP_TOP_BOTTOM
        case 5: sx = y; sy = x; break;                        // TRANSPOSE
        case 6: sx = y; sy = h - 1 - x; break;                // ROTATE_270 (clockwise 90)
        case 7: sx = w - 1 - y; sy = h - 1 - x; break;        // TRANSVERSE
        case 8: sx = w - 1 - y; sy = x; break;                // ROTATE_90 (counter-clockwise)
      }
      std::memcpy(dst + 3 * x, in.row(sy) + 3 * sx, 3);
    }
  }
  return out;
}

DecodedImage decode_image_bytes(const uint8_t* data, size_t size, const std::string& name,
                                const DecodeOptions& options) {
  std::optional<ImageFormat> format = sniff_format(data, size);
  if (!format) {
    std::string start;
    for (size_t i = 0; i < size && i < 8; ++i) {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%02x", data[i]);
      start += hex;
    }
    detail::fail(size == 0 ? DecodeErrorKind::truncated : DecodeErrorKind::not_an_image, name,
                 size == 0 ? std::string("it is empty (0 bytes).")
                           : "it is not a JPEG, PNG or WebP image (its first bytes are " + start +
                                 "). HINT: check that the path points to an image; the file name's extension "
                                 "is not used.");
  }
  detail::RawImage raw;
  switch (*format) {
    case ImageFormat::jpeg: raw = detail::decode_jpeg(data, size, name, options.max_pixels); break;
    case ImageFormat::png: raw = detail::decode_png(data, size, name, options.max_pixels); break;
    case ImageFormat::webp: raw = detail::decode_webp(data, size, name, options.max_pixels); break;
  }
  DecodedImage out;
  out.format = *format;
  out.source_mode = std::move(raw.source_mode);
  out.bit_depth = raw.bit_depth;
  out.exif_orientation = detail::exif_orientation(raw.exif);
  out.image = options.apply_exif_orientation && out.exif_orientation != 1
                  ? apply_orientation(raw.image, out.exif_orientation)
                  : std::move(raw.image);
  return out;
}

DecodedImage decode_image(const fs::path& path, const DecodeOptions& options) {
  const std::string name = path.string();
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    detail::fail(DecodeErrorKind::missing, name, "no such file. HINT: check the path (relative paths in an "
                                                 "index file are relative to the image folder you passed).");
  }
  if (fs::is_directory(path, ec)) detail::fail(DecodeErrorKind::unreadable, name, "it is a folder, not a file.");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    detail::fail(DecodeErrorKind::unreadable, name,
                 std::string("cannot open it (") + std::strerror(errno) + "). HINT: check its permissions.");
  }
  const std::streamoff size = in.tellg();
  std::vector<uint8_t> bytes(size > 0 ? static_cast<size_t>(size) : 0);
  in.seekg(0);
  if (size < 0 || !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size())))
    detail::fail(DecodeErrorKind::unreadable, name, "reading it failed (I/O error).");
  return decode_image_bytes(bytes.data(), bytes.size(), name, options);
}

DecodeResult try_decode_image(const fs::path& path, const DecodeOptions& options) {
  DecodeResult result;
  try {
    result.image = decode_image(path, options);
  } catch (const DecodeFailure& e) {
    result.error = e.error();
  }
  return result;
}

DecodeResult try_decode_image_bytes(const uint8_t* data, size_t size, const std::string& name,
                                    const DecodeOptions& options) {
  DecodeResult result;
  try {
    result.image = decode_image_bytes(data, size, name, options);
  } catch (const DecodeFailure& e) {
    result.error = e.error();
  }
  return result;
}

}  // namespace prefdiff::image
