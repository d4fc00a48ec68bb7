#include "prefdiff/data/expectations.hpp"

#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "prefdiff/data/shard_format.hpp"

namespace prefdiff::data {

std::vector<std::string> expectation_mismatches(const instance::DataSource& source, const DataExpectations& expected) {
  std::vector<std::string> out;
  auto compare = [&](const char* name, const std::optional<std::string>& want) {
    if (!want) return;
    const std::string have = source.attribute(name);
    if (have != *want)
      out.push_back(std::string("attribute '") + name + "' is '" + have + "' in the data but the recipe expects '" + *want + "'");
  };
  if (expected.format_version) compare("format_version", std::to_string(*expected.format_version));
  compare("backbone_family", expected.backbone_family);
  if (expected.latent_shape) compare("latent_shape", shape_string(*expected.latent_shape));
  if (expected.latent_scale_factor) {
    const std::string have = source.attribute("latent_scale_factor");
    char* end = nullptr;
    const double value = std::strtod(have.c_str(), &end);
    const double want = *expected.latent_scale_factor;
    if (have.empty() || end == have.c_str() || std::fabs(value - want) > 1e-6 * std::fabs(want))
      out.push_back("attribute 'latent_scale_factor' is '" + have + "' in the data but the recipe expects '" + std::to_string(want) + "'");
  }
  compare("vae_id", expected.vae_id);
  compare("text_encoder_id", expected.text_encoder_id);
  compare("text_encoder_2_id", expected.text_encoder_2_id);
  compare("encoder", expected.encoder);
  return out;
}

void check_expectations(const instance::DataSource& source, const DataExpectations& expected) {
  const std::vector<std::string> mismatches = expectation_mismatches(source, expected);
  if (mismatches.empty()) return;
  std::string message = "dataset " + source.label() + " does not match the recipe:";
  for (const std::string& m : mismatches) message += "\n  " + m;
  message += "\nHINT: point data.shards at shards encoded for this backbone and encoders, or re-import them "
             "(`prefdiff data inspect SHARD` shows a shard's attributes)";
  throw std::runtime_error(message);
}

}  // namespace prefdiff::data
