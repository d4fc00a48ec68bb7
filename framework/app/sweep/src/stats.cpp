#include "prefdiff/sweep/stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace prefdiff::sweep {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Unbiased index in [0, n): rejection of the top partial block.
size_t draw_index(uint64_t seed, uint64_t& counter, size_t n) {
  const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  while (true) {
    const uint64_t r = splitmix64(seed ^ splitmix64(counter++));
    if (r < limit) return static_cast<size_t>(r % n);
  }
}

}  // namespace

double mean(const std::vector<double>& x) {
  if (x.empty()) return kNaN;
  double s = 0.0;
  for (double v : x) s += v;
  return s / static_cast<double>(x.size());
}

double standard_error(const std::vector<double>& x) {
  if (x.size() < 2) return kNaN;
  const double m = mean(x);
  double ss = 0.0;
  for (double v : x) ss += (v - m) * (v - m);
  const double n = static_cast<double>(x.size());
  return std::sqrt(ss / (n - 1.0) / n);
}

double quantile_sorted(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return kNaN;
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + frac * (sorted[hi] - sorted[lo]);
}

Interval bootstrap_mean_interval(const std::vector<double>& x, double level, int resamples, uint64_t seed) {
  if (x.empty() || resamples < 1) return {kNaN, kNaN};
  const size_t n = x.size();
  std::vector<double> means(static_cast<size_t>(resamples));
  uint64_t counter = 0;
  const uint64_t key = splitmix64(seed ^ 0x626f6f7473747270ULL);  // "bootstrp"
  for (double& m : means) {
    double s = 0.0;
    for (size_t i = 0; i < n; ++i) s += x[draw_index(key, counter, n)];
    m = s / static_cast<double>(n);
  }
  std::sort(means.begin(), means.end());
  const double tail = (1.0 - level) / 2.0;
  return {quantile_sorted(means, tail), quantile_sorted(means, 1.0 - tail)};
}

}  // namespace prefdiff::sweep
