#pragma once
// Training preprocessing as the official Diffusion-DPO script (torchvision on a PIL image):
//   Resize(resolution, BILINEAR)            -> resize_short_side(image, resolution, bilinear)
//   CenterCrop(resolution) | RandomCrop(..) -> center_crop_box / random_crop_box + crop
//   RandomHorizontalFlip()                  -> flip_horizontal (decided by the seed)
//   ToTensor(), Normalize([0.5], [0.5])     -> to_float_chw_minus1_1: (v / 255 - 0.5) / 0.5 in float32
// plus, for SDXL, the micro-conditioning the diffusers SDXL scripts feed as time ids:
// (original height, original width, crop top, crop left, target height, target width).

#include <array>
#include <cstdint>
#include <vector>

#include "image/image.hpp"
#include "image/resample.hpp"

namespace prefdiff::image {

struct CropBox {
  int32_t left = 0;
  int32_t top = 0;
  int32_t width = 0;
  int32_t height = 0;
};

// torchvision's CenterCrop offsets: int(round((size - crop) / 2.0)) with Python's round-half-to-even.
CropBox center_crop_box(int32_t width, int32_t height, int32_t crop_width, int32_t crop_height);
// A uniformly random crop position drawn from `seed` (same seed, same box). The crop must fit.
CropBox random_crop_box(uint64_t seed, int32_t width, int32_t height, int32_t crop_width, int32_t crop_height);
// The pixels inside `box`, which must lie inside the image.
Image crop(const Image& image, const CropBox& box);
Image center_crop(const Image& image, int32_t size);
Image flip_horizontal(const Image& image);

// CHW float32 in [-1, 1]: ((v / 255.f) - 0.5f) / 0.5f per channel, as ToTensor + Normalize([0.5], [0.5]).
std::vector<float> to_float_chw_minus1_1(const Image& image);
// The same for the pixels inside `box`, mirrored left-right when `flip`: crop, flip and conversion in one
// pass (no intermediate images).
std::vector<float> to_float_chw_minus1_1(const Image& image, const CropBox& box, bool flip);

struct SdxlTimeIds {
  float original_height = 0, original_width = 0;
  float crop_top = 0, crop_left = 0;
  float target_height = 0, target_width = 0;
  std::array<float, 6> as_array() const {
    return {original_height, original_width, crop_top, crop_left, target_height, target_width};
  }
};

struct TrainingPreprocessOptions {
  int32_t resolution = 512;
  bool random_crop = false;  // official default: centre crop
  bool random_flip = true;   // official default: RandomHorizontalFlip(p=0.5); false = never flip
};

struct TrainingImage {
  std::vector<float> pixels;  // [3, resolution, resolution], in [-1, 1]
  int32_t size = 0;           // resolution
  CropBox crop;               // in the resized image, before the flip
  bool flipped = false;
  SdxlTimeIds time_ids;       // original size = the decoded image's; crop = crop.top/left
};

// Resize the short side to the resolution (Pillow bilinear), crop, maybe flip, scale to [-1, 1].
// `seed` decides the random crop and the flip; the result is a pure function of (image, options, seed).
TrainingImage preprocess_for_training(const Image& image, const TrainingPreprocessOptions& options, uint64_t seed);

}  // namespace prefdiff::image
