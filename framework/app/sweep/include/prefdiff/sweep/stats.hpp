// Spreads for sweep tables: mean, standard error over seeds, and a seeded percentile bootstrap.
#pragma once

#include <cstdint>
#include <vector>

namespace prefdiff::sweep {

double mean(const std::vector<double>& x);  // NaN when empty
// Sample standard deviation (n - 1) / sqrt(n); NaN when n < 2 (one seed has no spread).
double standard_error(const std::vector<double>& x);
// Quantile q in [0, 1] of sorted values, linear interpolation between order statistics (numpy's default).
double quantile_sorted(const std::vector<double>& sorted, double q);

struct Interval {
  double lo = 0.0, hi = 0.0;
};

// Percentile bootstrap interval of the mean at `level` (e.g. 0.95): `resamples` resamples with
// replacement drawn by a counter-based generator from `seed`, so the same inputs give the same interval
// on every machine. NaNs when x is empty.
Interval bootstrap_mean_interval(const std::vector<double>& x, double level = 0.95, int resamples = 10000,
                                 uint64_t seed = 0);

}  // namespace prefdiff::sweep
