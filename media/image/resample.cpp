#include "image/resample.hpp"

#include <cmath>
#include <string>
#include <vector>

namespace prefdiff::image {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Per output pixel: the first input pixel, the number of taps and the fixed-point weights.
struct Coefficients {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // out_size * ksize
};

// precompute_coeffs + normalize_coeffs_8bpc for the box [in0, in1) of the input mapped onto out_size.
Coefficients compute_coefficients(int in_size, float in0, float in1, int out_size, ResampleFilter filter) {
  double (*fn)(double) = filter == ResampleFilter::bilinear ? bilinear_filter : bicubic_filter;
  const double filter_support = filter == ResampleFilter::bilinear ? 1.0 : 2.0;
  const double scale = static_cast<double>(in1 - in0) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = filter_support * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(static_cast<size_t>(out_size));
  c.count.resize(static_cast<size_t>(out_size));
  c.weights.assign(static_cast<size_t>(out_size) * static_cast<size_t>(c.ksize), 0);
  std::vector<double> k(static_cast<size_t>(c.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation, as the C cast
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = fn((x + xmin - center + 0.5) * ss);
      k[static_cast<size_t>(x)] = w;
      ww += w;
    }
    int32_t* out = &c.weights[static_cast<size_t>(xx) * static_cast<size_t>(c.ksize)];
    for (int x = 0; x < xmax; ++x) {
      double w = k[static_cast<size_t>(x)];
      if (ww != 0.0) w /= ww;
      out[x] = w < 0 ? static_cast<int32_t>(-0.5 + w * (1 << kPrecisionBits))
                     : static_cast<int32_t>(0.5 + w * (1 << kPrecisionBits));
    }
    c.first[static_cast<size_t>(xx)] = xmin;
    c.count[static_cast<size_t>(xx)] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;  // arithmetic shift, as Pillow's lookup index
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Rows [row0, row0 + out.height) of `in`, resampled horizontally into `out`.
void resample_horizontal(const Image& in, int row0, const Coefficients& c, Image* out) {
  for (int32_t y = 0; y < out->height; ++y) {
    const uint8_t* src = in.row(row0 + y);
    uint8_t* dst = out->row(y);
    for (int32_t xx = 0; xx < out->width; ++xx) {
      const int xmin = c.first[static_cast<size_t>(xx)], n = c.count[static_cast<size_t>(xx)];
      const int32_t* k = &c.weights[static_cast<size_t>(xx) * static_cast<size_t>(c.ksize)];
      int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      const uint8_t* p = src + 3 * xmin;
      for (int x = 0; x < n; ++x) {
        s0 += p[3 * x] * k[x];
        s1 += p[3 * x + 1] * k[x];
        s2 += p[3 * x + 2] * k[x];
      }
      dst[3 * xx] = clip8(s0);
      dst[3 * xx + 1] = clip8(s1);
      dst[3 * xx + 2] = clip8(s2);
    }
  }
}

void resample_vertical(const Image& in, const Coefficients& c, int row_offset, Image* out) {
  const size_t row_bytes = out->row_bytes();
  std::vector<int32_t> acc(row_bytes);
  for (int32_t yy = 0; yy < out->height; ++yy) {
    const int ymin = c.first[static_cast<size_t>(yy)] - row_offset, n = c.count[static_cast<size_t>(yy)];
    const int32_t* k = &c.weights[static_cast<size_t>(yy) * static_cast<size_t>(c.ksize)];
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < n; ++y) {
      const uint8_t* src = in.row(ymin + y);
      const int32_t w = k[y];
      for (size_t i = 0; i < row_bytes; ++i) acc[i] += src[i] * w;  // same sums as Pillow's per-pixel loop
    }
    uint8_t* dst = out->row(yy);
    for (size_t i = 0; i < row_bytes; ++i) dst[i] = clip8(acc[i]);
  }
}

}  // namespace

Image resize(const Image& image, int32_t width, int32_t height, ResampleFilter filter) {
  if (width <= 0 || height <= 0) {
    throw ImageError("resize: target size " + std::to_string(width) + "x" + std::to_string(height) +
                     " must be positive");
  }
  if (image.empty()) throw ImageError("resize: the input image is empty");
  const bool need_horizontal = width != image.width;
  const bool need_vertical = height != image.height;
  if (!need_horizontal && !need_vertical) return image;

  const Coefficients vertical =
      compute_coefficients(image.height, 0.0f, static_cast<float>(image.height), height, filter);
  const Coefficients horizontal =
      compute_coefficients(image.width, 0.0f, static_cast<float>(image.width), width, filter);
  // Pillow 13: when the height shrinks more than twice as much as the width, the vertical pass runs first
  // (fewer rows for the horizontal one). Older Pillow always went horizontal first; the two orders can
  // differ by one level where this rule applies.
  const int shrink_y = image.height - height, shrink_x = image.width - width;
  const bool horizontal_first = !(shrink_y > 0 && shrink_y > shrink_x * 2);
  if (!need_horizontal) {
    Image out(width, height);
    resample_vertical(image, vertical, 0, &out);
    return out;
  }
  if (!need_vertical) {
    Image out(width, height);
    resample_horizontal(image, 0, horizontal, &out);
    return out;
  }
  if (horizontal_first) {
    // Only the input rows the vertical pass reads are resampled horizontally.
    const int first_row = vertical.first.front();
    const int last_row = vertical.first.back() + vertical.count.back();
    Image temp(width, last_row - first_row);
    resample_horizontal(image, first_row, horizontal, &temp);
    Image out(width, height);
    resample_vertical(temp, vertical, first_row, &out);
    return out;
  }
  Image temp(image.width, height);
  resample_vertical(image, vertical, 0, &temp);
  Image out(width, height);
  resample_horizontal(temp, 0, horizontal, &out);
  return out;
}

void short_side_size(int32_t width, int32_t height, int32_t short_side, int32_t* out_width, int32_t* out_height) {
  if (short_side <= 0) throw ImageError("resize_short_side: the short side must be positive, got " + std::to_string(short_side));
  if (width <= 0 || height <= 0) throw ImageError("resize_short_side: the input image is empty");
  const bool portrait = width <= height;
  const double shorter = portrait ? width : height, longer = portrait ? height : width;
  // Python: int(requested_new_short * long / short), float division then truncation.
  const auto new_long = static_cast<int32_t>(static_cast<double>(short_side) * longer / shorter);
  *out_width = portrait ? short_side : new_long;
  *out_height = portrait ? new_long : short_side;
}

Image resize_short_side(const Image& image, int32_t short_side, ResampleFilter filter) {
  int32_t w = 0, h = 0;
  short_side_size(image.width, image.height, short_side, &w, &h);
  return resize(image, w, h, filter);
}

}  // namespace prefdiff::image
