#pragma once
// A contact sheet of same-sized images, row by row with `columns` per row (the last row may be short;
// empty cells and the gaps keep the background colour).

#include <array>
#include <cstdint>
#include <vector>

#include "image/image.hpp"

namespace prefdiff::image {

struct GridOptions {
  int32_t columns = 4;
  int32_t padding = 0;                          // pixels between cells and around the border
  std::array<uint8_t, 3> background = {0, 0, 0};
};

Image make_grid(const std::vector<Image>& images, const GridOptions& options = {});

}  // namespace prefdiff::image
