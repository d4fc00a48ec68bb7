// `none`: the default noise injector. Keeps every source label, so a recipe without a [noise] table
// and one with `id = "none"` train on identical data.
#include <cstring>

#include "flip_report.hpp"
#include "prefdiff/sdk.hpp"

namespace {

class NoNoise final : public prefdiff::sdk::NoiseInjector {
 public:
  static prefdiff::sdk::PluginInfo info() {
    prefdiff::sdk::PluginInfo info;
    info.id = "none";
    info.version = "1.0.0";
    info.summary = "No label noise: every pair keeps its source label (the default).";
    info.citation = "-";
    info.formula_version = "1";
    return info;
  }
  NoNoise(const prefdiff::sdk::Params& /*params*/, const prefdiff::sdk::Host& host) : host_(host) {}
  void decide(const prefdiff::sdk::NoiseBatch& batch, uint8_t* flip) override {
    std::memset(flip, 0, batch.count);
    prefdiff::noise::report_flip_fraction(host_, flip, batch.count);
  }

 private:
  prefdiff::sdk::Host host_;
};

}  // namespace

PREFDIFF_EXPORT_NOISE_INJECTOR(NoNoise)
