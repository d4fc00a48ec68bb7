#include "image/preprocess.hpp"

#include <cmath>
#include <cstring>
#include <string>

namespace prefdiff::image {
namespace {

// SplitMix64: a tiny, well-mixed generator; draws are fixed functions of the seed on every platform.
uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, n) without modulo bias.
uint64_t uniform_below(uint64_t* state, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do r = splitmix64(state);
  while (r >= limit);
  return r % n;
}

// Python's int(round(x / 2.0)) for an integer x: round half to even.
int32_t round_half_even_half(int32_t x) {
  const double v = x / 2.0;
  return static_cast<int32_t>(std::nearbyint(v));  // default rounding mode: to nearest, ties to even
}

void check_crop(int32_t width, int32_t height, int32_t crop_width, int32_t crop_height, const char* what) {
  if (crop_width <= 0 || crop_height <= 0 || crop_width > width || crop_height > height) {
    throw ImageError(std::string(what) + ": a " + std::to_string(crop_width) + "x" + std::to_string(crop_height) +
                     " crop does not fit a " + std::to_string(width) + "x" + std::to_string(height) +
                     " image. HINT: resize the short side to at least the crop size first.");
  }
}

}  // namespace

CropBox center_crop_box(int32_t width, int32_t height, int32_t crop_width, int32_t crop_height) {
  check_crop(width, height, crop_width, crop_height, "center_crop");
  return CropBox{round_half_even_half(width - crop_width), round_half_even_half(height - crop_height), crop_width,
                 crop_height};
}

CropBox random_crop_box(uint64_t seed, int32_t width, int32_t height, int32_t crop_width, int32_t crop_height) {
  check_crop(width, height, crop_width, crop_height, "random_crop");
  uint64_t state = seed;
  const auto top = static_cast<int32_t>(uniform_below(&state, static_cast<uint64_t>(height - crop_height) + 1));
  const auto left = static_cast<int32_t>(uniform_below(&state, static_cast<uint64_t>(width - crop_width) + 1));
  return CropBox{left, top, crop_width, crop_height};
}

Image crop(const Image& image, const CropBox& box) {
  if (box.left < 0 || box.top < 0 || box.width <= 0 || box.height <= 0 || box.left + box.width > image.width ||
      box.top + box.height > image.height) {
    throw ImageError("crop: box (left " + std::to_string(box.left) + ", top " + std::to_string(box.top) + ", " +
                     std::to_string(box.width) + "x" + std::to_string(box.height) + ") is not inside the " +
                     std::to_string(image.width) + "x" + std::to_string(image.height) + " image");
  }
  Image out(box.width, box.height);
  for (int32_t y = 0; y < box.height; ++y)
    std::memcpy(out.row(y), image.row(box.top + y) + 3 * static_cast<size_t>(box.left), out.row_bytes());
  return out;
}

Image center_crop(const Image& image, int32_t size) {
  return crop(image, center_crop_box(image.width, image.height, size, size));
}

Image flip_horizontal(const Image& image) {
  Image out(image.width, image.height);
  for (int32_t y = 0; y < image.height; ++y) {
    const uint8_t* src = image.row(y);
    uint8_t* dst = out.row(y);
    for (int32_t x = 0; x < image.width; ++x) std::memcpy(dst + 3 * x, src + 3 * (image.width - 1 - x), 3);
  }
  return out;
}

std::vector<float> to_float_chw_minus1_1(const Image& image) {
  return to_float_chw_minus1_1(image, CropBox{0, 0, image.width, image.height}, false);
}

std::vector<float> to_float_chw_minus1_1(const Image& image, const CropBox& box, bool flip) {
  if (box.left < 0 || box.top < 0 || box.width <= 0 || box.height <= 0 || box.left + box.width > image.width ||
      box.top + box.height > image.height) {
    throw ImageError("to_float_chw_minus1_1: box (left " + std::to_string(box.left) + ", top " +
                     std::to_string(box.top) + ", " + std::to_string(box.width) + "x" + std::to_string(box.height) +
                     ") is not inside the " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                     " image");
  }
  const size_t plane = static_cast<size_t>(box.width) * static_cast<size_t>(box.height);
  std::vector<float> out(plane * 3);
  // The 256 possible values, computed once in torchvision's order of float32 operations.
  float table[256];
  for (int v = 0; v < 256; ++v) table[v] = (static_cast<float>(v) / 255.0f - 0.5f) / 0.5f;
  float* r = out.data();
  float* g = r + plane;
  float* b = g + plane;
  for (int32_t y = 0; y < box.height; ++y) {
    const uint8_t* src = image.row(box.top + y) + 3 * static_cast<size_t>(box.left);
    const size_t o = static_cast<size_t>(y) * static_cast<size_t>(box.width);
    for (int32_t x = 0; x < box.width; ++x) {
      const uint8_t* p = src + 3 * static_cast<size_t>(flip ? box.width - 1 - x : x);
      r[o + static_cast<size_t>(x)] = table[p[0]];
      g[o + static_cast<size_t>(x)] = table[p[1]];
      b[o + static_cast<size_t>(x)] = table[p[2]];
    }
  }
  return out;
}

TrainingImage preprocess_for_training(const Image& image, const TrainingPreprocessOptions& options, uint64_t seed) {
  if (options.resolution <= 0) {
    throw ImageError("preprocess_for_training: resolution must be positive, got " + std::to_string(options.resolution));
  }
  const int32_t res = options.resolution;
  int32_t w = 0, h = 0;
  short_side_size(image.width, image.height, res, &w, &h);
  Image resized_storage;
  if (w != image.width || h != image.height) resized_storage = resize(image, w, h, ResampleFilter::bilinear);
  const Image& resized = resized_storage.empty() ? image : resized_storage;
  TrainingImage out;
  uint64_t state = seed;
  // Two independent streams from one seed: one for the crop, one for the flip.
  const uint64_t crop_seed = splitmix64(&state), flip_seed = splitmix64(&state);
  out.crop = options.random_crop ? random_crop_box(crop_seed, resized.width, resized.height, res, res)
                                 : center_crop_box(resized.width, resized.height, res, res);
  uint64_t flip_state = flip_seed;
  out.flipped = options.random_flip && (splitmix64(&flip_state) & 1u);
  out.pixels = to_float_chw_minus1_1(resized, out.crop, out.flipped);
  out.size = res;
  out.time_ids.original_height = static_cast<float>(image.height);
  out.time_ids.original_width = static_cast<float>(image.width);
  out.time_ids.crop_top = static_cast<float>(out.crop.top);
  out.time_ids.crop_left = static_cast<float>(out.crop.left);
  out.time_ids.target_height = static_cast<float>(res);
  out.time_ids.target_width = static_cast<float>(res);
  return out;
}

}  // namespace prefdiff::image
