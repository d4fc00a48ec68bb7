// What the recipe expects of a data set (backbone family, latent shape, scale factor, encoder ids), checked
// against the source's attributes before training. Every mismatch is reported at once, with both values.
#ifndef PREFDIFF_DATA_EXPECTATIONS_HPP
#define PREFDIFF_DATA_EXPECTATIONS_HPP

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "prefdiff/instance/data_source.hpp"

namespace prefdiff::data {

struct DataExpectations {
  std::optional<int64_t> format_version;
  std::optional<std::string> backbone_family;
  std::optional<std::vector<int64_t>> latent_shape;  // C, h, w
  std::optional<double> latent_scale_factor;         // compared with a relative tolerance of 1e-6
  std::optional<std::string> vae_id;
  std::optional<std::string> text_encoder_id;
  std::optional<std::string> text_encoder_2_id;
  std::optional<std::string> encoder;
};

// Mismatches as messages ("attribute 'backbone_family' is 'sdxl' in the data but the recipe expects 'sd15'").
std::vector<std::string> expectation_mismatches(const instance::DataSource& source, const DataExpectations& expected);
// Throws std::runtime_error naming the data set and listing every mismatch.
void check_expectations(const instance::DataSource& source, const DataExpectations& expected);

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_EXPECTATIONS_HPP
