// WebP through libwebp: still images with WebPDecode (fancy upsampling, the library default, as Pillow),
// animated ones through libwebpdemux's animation decoder, keeping the first frame as Pillow's
// Image.open() does. Alpha is dropped.
#include <cstring>
#include <string>

#include <webp/decode.h>
#include <webp/demux.h>

#include "image/codecs.hpp"

namespace prefdiff::image::detail {
namespace {

const char* status_text(VP8StatusCode status) {
  switch (status) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data";
    default: return "ok";
  }
}

[[noreturn]] void fail_status(VP8StatusCode status, const std::string& name) {
  if (status == VP8_STATUS_NOT_ENOUGH_DATA)
    fail(DecodeErrorKind::truncated, name, "WebP data ends early. HINT: the file was cut off; download or copy it again.");
  fail(DecodeErrorKind::corrupt, name, std::string("libwebp cannot decode it: ") + status_text(status) + ".");
}

void copy_rgba_to_rgb(const uint8_t* rgba, Image* image) {
  const size_t n = static_cast<size_t>(image->width) * static_cast<size_t>(image->height);
  uint8_t* dst = image->pixels.data();
  for (size_t i = 0; i < n; ++i) {
    dst[3 * i] = rgba[4 * i];
    dst[3 * i + 1] = rgba[4 * i + 1];
    dst[3 * i + 2] = rgba[4 * i + 2];
  }
}

}  // namespace

RawImage decode_webp(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels) {
  RawImage out;
  WebPBitstreamFeatures features;
  VP8StatusCode status = WebPGetFeatures(data, size, &features);
  if (status != VP8_STATUS_OK) fail_status(status, name);
  check_pixel_limit(features.width, features.height, max_pixels, name);
  out.source_mode = features.has_alpha ? "RGBA" : "RGB";
  out.image = Image(features.width, features.height);

  WebPData webp_data{data, size};
  if (WebPDemuxer* demux = WebPDemux(&webp_data)) {
    WebPChunkIterator chunk;
    if (WebPDemuxGetChunk(demux, "EXIF", 1, &chunk)) {
      out.exif.assign(reinterpret_cast<const char*>(chunk.chunk.bytes), chunk.chunk.size);
      WebPDemuxReleaseChunkIterator(&chunk);
    }
    WebPDemuxDelete(demux);
  }

  if (features.has_animation) {
    WebPAnimDecoderOptions options;
    WebPAnimDecoderOptionsInit(&options);
    options.color_mode = MODE_RGBA;
    WebPAnimDecoder* decoder = WebPAnimDecoderNew(&webp_data, &options);
    if (!decoder) fail(DecodeErrorKind::corrupt, name, "libwebp cannot decode this animated WebP.");
    WebPAnimInfo info;
    uint8_t* frame = nullptr;
    int timestamp = 0;
    const bool ok = WebPAnimDecoderGetInfo(decoder, &info) && WebPAnimDecoderGetNext(decoder, &frame, &timestamp) &&
                    static_cast<int>(info.canvas_width) == out.image.width &&
                    static_cast<int>(info.canvas_height) == out.image.height;
    if (ok) copy_rgba_to_rgb(frame, &out.image);
    WebPAnimDecoderDelete(decoder);
    if (!ok) fail(DecodeErrorKind::corrupt, name, "libwebp cannot decode the first frame of this animated WebP.");
    return out;
  }

  WebPDecoderConfig config;
  if (!WebPInitDecoderConfig(&config)) fail(DecodeErrorKind::corrupt, name, "libwebp version mismatch.");
  config.output.colorspace = MODE_RGB;
  config.output.is_external_memory = 1;
  config.output.u.RGBA.rgba = out.image.pixels.data();
  config.output.u.RGBA.stride = static_cast<int>(out.image.row_bytes());
  config.output.u.RGBA.size = out.image.pixels.size();
  status = WebPDecode(data, size, &config);
  WebPFreeDecBuffer(&config.output);
  if (status != VP8_STATUS_OK) fail_status(status, name);
  return out;
}

}  // namespace prefdiff::image::detail
