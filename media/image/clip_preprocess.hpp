#pragma once
// CLIP image preprocessing as transformers' CLIPImageProcessor with PIL images (the classic 4.x
// processor; CLIPImageProcessorPil in transformers 5), which the CLIP-based scorers (PickScore, HPSv2,
// CLIP score) use:
//   resize: shortest edge -> size (long edge int(size * long / short)), Pillow BICUBIC, antialiased, uint8;
//   center crop: top = (H - h) // 2, left = (W - w) // 2 (zero padding where the image is smaller);
//   rescale: float32(double(v) * rescale_factor);  normalise: (x - mean) / std in float32;  CHW.
// Parameters come from a preprocessor_config.json when the model folder has one.

#include <array>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "image/image.hpp"
#include "image/resample.hpp"

namespace prefdiff::image {

struct ClipImageConfig {
  bool do_resize = true;
  int32_t shortest_edge = 224;  // "size": {"shortest_edge": n} (or a plain number)
  int32_t resize_height = 0;    // "size": {"height": h, "width": w}: resize to exactly this (0 = unused)
  int32_t resize_width = 0;
  ResampleFilter resample = ResampleFilter::bicubic;
  bool do_center_crop = true;
  int32_t crop_height = 224;
  int32_t crop_width = 224;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::array<float, 3> mean = {0.48145466f, 0.4578275f, 0.40821073f};  // OpenAI CLIP
  std::array<float, 3> std = {0.26862954f, 0.26130258f, 0.27577711f};

  // Reads the keys above from a transformers preprocessor_config.json; absent keys keep these defaults
  // (OpenAI CLIP's). Throws ImageError naming the file and key on malformed values.
  static ClipImageConfig from_json_file(const std::filesystem::path& path);
  // The folder's preprocessor_config.json when present, else the defaults.
  static ClipImageConfig from_model_folder(const std::filesystem::path& folder);

  // The size clip_preprocess returns: the crop size (0 when do_center_crop is off: then it depends on
  // the image).
  int32_t output_height() const;
  int32_t output_width() const;
};

// [3, output_height, output_width] float32, CHW.
std::vector<float> clip_preprocess(const Image& image, const ClipImageConfig& config = {});

}  // namespace prefdiff::image
