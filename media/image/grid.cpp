#include "image/grid.hpp"

#include <algorithm>
#include <cstring>
#include <string>

namespace prefdiff::image {

Image make_grid(const std::vector<Image>& images, const GridOptions& options) {
  if (images.empty()) throw ImageError("make_grid: no images");
  if (options.columns <= 0) throw ImageError("make_grid: columns must be positive, got " + std::to_string(options.columns));
  if (options.padding < 0) throw ImageError("make_grid: padding must not be negative, got " + std::to_string(options.padding));
  const int32_t w = images.front().width, h = images.front().height;
  for (size_t i = 0; i < images.size(); ++i) {
    if (images[i].width != w || images[i].height != h || images[i].empty()) {
      throw ImageError("make_grid: image " + std::to_string(i) + " is " + std::to_string(images[i].width) + "x" +
                       std::to_string(images[i].height) + " but image 0 is " + std::to_string(w) + "x" +
                       std::to_string(h) + ". HINT: resize the images to one size first.");
    }
  }
  const auto n = static_cast<int32_t>(images.size());
  const int32_t cols = std::min(options.columns, n), rows = (n + options.columns - 1) / options.columns;
  const int32_t pad = options.padding;
  Image grid(cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad, options.background[0], options.background[1],
             options.background[2]);
  for (int32_t i = 0; i < n; ++i) {
    const int32_t x0 = pad + (i % options.columns) * (w + pad), y0 = pad + (i / options.columns) * (h + pad);
    for (int32_t y = 0; y < h; ++y)
      std::memcpy(grid.row(y0 + y) + 3 * static_cast<size_t>(x0), images[static_cast<size_t>(i)].row(y),
                  images[static_cast<size_t>(i)].row_bytes());
  }
  return grid;
}

}  // namespace prefdiff::image
