// PNG through libpng's classic interface with explicit transformations (the simplified API would apply
// gamma when reducing 16-bit data): palette looked up, 1/2/4-bit grey scaled to 8 bits, 16-bit samples
// reduced to their high byte, alpha and tRNS dropped, grey replicated to RGB. ICC, gAMA and sBIT are
// ignored, as Pillow ignores them.
#include <csetjmp>
#include <cstring>
#include <string>
#include <vector>

#include <png.h>

#include "image/codecs.hpp"

namespace prefdiff::image::detail {
namespace {

struct PngContext {
  const uint8_t* data;
  size_t size;
  size_t offset;
  bool truncated = false;
  char message[256] = {0};
};

void on_error(png_structp png, png_const_charp message) {
  auto* ctx = static_cast<PngContext*>(png_get_error_ptr(png));
  std::strncpy(ctx->message, message, sizeof ctx->message - 1);
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}  // e.g. "known incorrect sRGB profile": harmless

void on_read(png_structp png, png_bytep out, png_size_t length) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  if (ctx->size - ctx->offset < length) {
    ctx->truncated = true;
    png_error(png, "the data ends before the image does");
  }
  std::memcpy(out, ctx->data + ctx->offset, length);
  ctx->offset += length;
}

const char* mode_name(int color_type, int bit_depth) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: return bit_depth == 16 ? "I;16" : bit_depth == 1 ? "1" : "L";
    case PNG_COLOR_TYPE_GRAY_ALPHA: return "LA";
    case PNG_COLOR_TYPE_PALETTE: return "P";
    case PNG_COLOR_TYPE_RGB_ALPHA: return "RGBA";
    default: return "RGB";
  }
}

}  // namespace

RawImage decode_png(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels) {
  RawImage out;
  std::vector<png_bytep> rows;
  PngContext ctx{data, size, 0};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_read_struct(&png, &info, nullptr);
    fail(DecodeErrorKind::corrupt, name, "libpng could not allocate its decoder (out of memory?).");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    if (ctx.truncated)
      fail(DecodeErrorKind::truncated, name,
           "PNG data ends early. HINT: the file was cut off; download or copy it again.");
    fail(DecodeErrorKind::corrupt, name, "libpng cannot decode it: " + std::string(ctx.message) + ".");
  }
  png_set_read_fn(png, &ctx, on_read);
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  if (static_cast<int64_t>(width) * height > max_pixels) {
    png_destroy_read_struct(&png, &info, nullptr);
    check_pixel_limit(width, height, max_pixels, name);  // throws
  }
  const int color_type = png_get_color_type(png, info), bit_depth = png_get_bit_depth(png, info);
  out.source_mode = mode_name(color_type, bit_depth);
  out.bit_depth = bit_depth;
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (bit_depth == 16) png_set_strip_16(png);
  // Palette expansion also turns tRNS into alpha: drop it there too (Pillow's convert ignores tRNS).
  if ((color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
  if (!(color_type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out.image = Image(static_cast<int32_t>(width), static_cast<int32_t>(height));
  if (png_get_rowbytes(png, info) != out.image.row_bytes()) {
    png_destroy_read_struct(&png, &info, nullptr);
    fail(DecodeErrorKind::corrupt, name, "unexpected PNG layout after conversion to RGB (internal error).");
  }
  rows.resize(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = out.image.row(static_cast<int32_t>(y));
  png_read_image(png, rows.data());
  png_read_end(png, info);
#if defined(PNG_eXIf_SUPPORTED)
  png_uint_32 exif_size = 0;
  png_bytep exif = nullptr;
  if (png_get_eXIf_1(png, info, &exif_size, &exif) && exif && exif_size > 0)
    out.exif.assign(reinterpret_cast<const char*>(exif), exif_size);
#endif
  png_destroy_read_struct(&png, &info, nullptr);
  return out;
}

}  // namespace prefdiff::image::detail
