#pragma once
// Resizing exactly as Pillow's Image.resize(size, BILINEAR or BICUBIC) on an 8-bit image (what
// torchvision's Resize on a PIL image and transformers' PIL image processors call): separable, with the
// filter's support widened by the reduction factor when shrinking (antialiasing), coefficients normalised
// per output pixel and rounded to 22-bit fixed point, a horizontal pass then a vertical one, each rounded
// back to uint8 (vertical first when the height shrinks more than twice as much as the width, as Pillow 13).
// The arithmetic follows Pillow 13.0.0 src/libImaging/Resample.c, so results are bit-identical.

#include <cstdint>

#include "image/image.hpp"

namespace prefdiff::image {

enum class ResampleFilter {
  bilinear,  // PIL.Image.BILINEAR (2): triangle, support 1
  bicubic,   // PIL.Image.BICUBIC (3): Keys cubic with a = -0.5, support 2
};

// Image.resize((width, height), filter). The same size returns a copy.
Image resize(const Image& image, int32_t width, int32_t height, ResampleFilter filter);

// The output size of torchvision's Resize(short_side) / transformers' shortest_edge: the short side
// becomes `short_side`, the long one int(short_side * long / short) (truncated).
void short_side_size(int32_t width, int32_t height, int32_t short_side, int32_t* out_width, int32_t* out_height);
Image resize_short_side(const Image& image, int32_t short_side, ResampleFilter filter);

}  // namespace prefdiff::image
