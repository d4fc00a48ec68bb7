// The label-noise decision for a whole data set, made once at start-up by a noise-injector plugin and kept
// as a mask by pair index. One decide() call over every pair (with its pair id and every metadata column)
// serves all injectors, including exact-count ones that rank the whole set, and makes the flips
// independent of batching, ranks, epochs and resumes by construction.
#ifndef PREFDIFF_DATA_FLIP_TABLE_HPP
#define PREFDIFF_DATA_FLIP_TABLE_HPP

#include <cstdint>
#include <vector>

#include "prefdiff/instance/data_source.hpp"
#include "prefdiff/instance/noise_instance.hpp"

namespace prefdiff::data {

class FlipTable {
 public:
  FlipTable() = default;  // no noise
  // Calls the injector's decide() once with every pair of `source`.
  static FlipTable decide(instance::DataSource& source, instance::NoiseInstance& noise);
  // From a mask by pair index (tests, resumed runs).
  explicit FlipTable(std::vector<uint8_t> mask);

  bool flipped(uint64_t index) const { return index < mask_.size() && mask_[index] != 0; }
  uint64_t size() const { return mask_.size(); }
  uint64_t flipped_count() const { return flipped_; }
  double fraction() const { return mask_.empty() ? 0.0 : static_cast<double>(flipped_) / static_cast<double>(mask_.size()); }
  const std::vector<uint8_t>& mask() const { return mask_; }

 private:
  std::vector<uint8_t> mask_;
  uint64_t flipped_ = 0;
};

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_FLIP_TABLE_HPP
