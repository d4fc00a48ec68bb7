#include "image/image.hpp"

namespace prefdiff::image {

Image::Image(int32_t w, int32_t h, uint8_t r, uint8_t g, uint8_t b) : width(w), height(h) {
  if (w < 0 || h < 0) throw ImageError("Image: negative size " + std::to_string(w) + "x" + std::to_string(h));
  pixels.resize(static_cast<size_t>(w) * static_cast<size_t>(h) * 3);
  if (r == 0 && g == 0 && b == 0) return;  // already zero
  for (size_t i = 0; i < pixels.size(); i += 3) {
    pixels[i] = r;
    pixels[i + 1] = g;
    pixels[i + 2] = b;
  }
}

}  // namespace prefdiff::image
