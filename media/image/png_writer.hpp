#pragma once
// Writing 8-bit RGB PNGs with text chunks, the way Stable Diffusion tools record how an image was made:
// AUTOMATIC1111 puts a "parameters" text chunk (prompt, "Negative prompt: ...", "Steps: ..., Seed: ...");
// we add a JSON chunk with the full settings. Latin-1 text goes into tEXt, anything else into iTXt
// (UTF-8), as Pillow's PngInfo.add_text does; Pillow reads both back as Image.open(path).text.
// Files are written atomically (a temporary sibling, fsync, rename) and never replace an existing file
// unless PngWriteOptions::overwrite.

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "image/image.hpp"

namespace prefdiff::image {

struct PngTextChunk {
  std::string keyword;  // 1-79 Latin-1 characters (ASCII recommended), no leading/trailing/double spaces
  std::string text;     // UTF-8
};

struct PngWriteOptions {
  bool overwrite = false;
  int compression_level = 6;  // zlib 0..9
};

std::string encode_png(const Image& image, const std::vector<PngTextChunk>& text = {}, int compression_level = 6);
void write_png(const std::filesystem::path& path, const Image& image, const std::vector<PngTextChunk>& text = {},
               const PngWriteOptions& options = {});

// AUTOMATIC1111's "parameters" text: the prompt, a "Negative prompt: " line when there is one, then
// "key: value" pairs joined by ", " (e.g. {"Steps", "30"}, {"Sampler", "Euler"}, {"CFG scale", "7.5"},
// {"Seed", "1"}, {"Size", "512x512"}, {"Model", "sd15-dpo"}).
std::string a1111_parameters(std::string_view prompt, std::string_view negative_prompt,
                             const std::vector<std::pair<std::string, std::string>>& settings);

}  // namespace prefdiff::image
