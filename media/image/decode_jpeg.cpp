// JPEG through libjpeg-turbo with the library's defaults (accurate integer IDCT, fancy upsampling), as
// Pillow decodes it. libjpeg reports errors by longjmp: everything the jump may cross lives in the
// context struct (no C++ objects are created between setjmp and a possible longjmp).
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>

#include "image/codecs.hpp"

namespace prefdiff::image::detail {
namespace {

struct JpegContext {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  bool truncated = false;
  char message[JMSG_LENGTH_MAX] = {0};
};

void on_error(j_common_ptr cinfo) {
  auto* ctx = reinterpret_cast<JpegContext*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, ctx->message);
  std::longjmp(ctx->jump, 1);
}

// Warnings are recoverable, as Pillow treats them, except running out of data: Pillow refuses truncated
// files ("image file is truncated") and so do we.
void on_message(j_common_ptr cinfo, int level) {
  auto* ctx = reinterpret_cast<JpegContext*>(cinfo->err);
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    ctx->truncated = true;
    (*cinfo->err->format_message)(cinfo, ctx->message);
    std::longjmp(ctx->jump, 1);
  }
}

// Pillow's cmyk2rgb on the inverted ("CMYK;I") samples: MULDIV255(a, b) = ((a*b + 128) >> 8 + a*b + 128) >> 8.
inline uint8_t cmyk_channel(int c, int nk) {
  int tmp = c * nk + 128;
  int v = nk - (((tmp >> 8) + tmp) >> 8);
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

}  // namespace

RawImage decode_jpeg(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels) {
  RawImage out;
  std::vector<uint8_t> row;
  jpeg_decompress_struct cinfo;
  JpegContext ctx;
  cinfo.err = jpeg_std_error(&ctx.mgr);
  ctx.mgr.error_exit = on_error;
  ctx.mgr.emit_message = on_message;
  if (setjmp(ctx.jump)) {
    jpeg_destroy_decompress(&cinfo);
    if (ctx.truncated)
      fail(DecodeErrorKind::truncated, name,
           "JPEG data ends early (" + std::string(ctx.message) + "). HINT: the file was cut off; download or copy it again.");
    fail(DecodeErrorKind::corrupt, name, "libjpeg cannot decode it: " + std::string(ctx.message) + ".");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&cinfo, TRUE);
  if (static_cast<int64_t>(cinfo.image_width) * cinfo.image_height > max_pixels) {
    const int64_t w = cinfo.image_width, h = cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    check_pixel_limit(w, h, max_pixels, name);  // throws
  }
  const int components = cinfo.num_components;
  if (components == 1) {
    cinfo.out_color_space = JCS_GRAYSCALE;
    out.source_mode = "L";
  } else if (components == 3) {
    cinfo.out_color_space = JCS_RGB;
    out.source_mode = "RGB";
  } else if (components == 4) {
    cinfo.out_color_space = JCS_CMYK;  // YCCK is converted to CMYK by libjpeg
    out.source_mode = "CMYK";
  } else {
    std::snprintf(ctx.message, sizeof ctx.message, "%d colour components (only 1, 3 and 4 exist in practice)", components);
    jpeg_destroy_decompress(&cinfo);
    fail(DecodeErrorKind::corrupt, name, "unsupported JPEG: " + std::string(ctx.message) + ".");
  }
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0) {
      out.exif.assign(reinterpret_cast<const char*>(m->data), m->data_length);
      break;
    }
  }
  jpeg_start_decompress(&cinfo);
  const int w = static_cast<int>(cinfo.output_width), h = static_cast<int>(cinfo.output_height);
  out.image = Image(w, h);
  row.resize(static_cast<size_t>(w) * static_cast<size_t>(cinfo.output_components));
  while (cinfo.output_scanline < cinfo.output_height) {
    const int y = static_cast<int>(cinfo.output_scanline);
    JSAMPROW rows[1] = {row.data()};
    jpeg_read_scanlines(&cinfo, rows, 1);
    uint8_t* dst = out.image.row(y);
    if (components == 1) {
      for (int x = 0; x < w; ++x) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[static_cast<size_t>(x)];
    } else if (components == 3) {
      std::memcpy(dst, row.data(), static_cast<size_t>(w) * 3);
    } else {
      for (int x = 0; x < w; ++x) {
        const uint8_t* s = &row[static_cast<size_t>(x) * 4];
        // Pillow assumes Adobe's inverted CMYK for every 4-component JPEG.
        const int c = 255 - s[0], m = 255 - s[1], yy = 255 - s[2], k = 255 - s[3];
        const int nk = 255 - k;
        dst[3 * x] = cmyk_channel(c, nk);
        dst[3 * x + 1] = cmyk_channel(m, nk);
        dst[3 * x + 2] = cmyk_channel(yy, nk);
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return out;
}

}  // namespace prefdiff::image::detail
