// `ambiguity-flip`: structured label noise where close calls go wrong most often. Under a Bradley-Terry
// annotator, a pair whose source margin m (e.g. ImageReward rank gap, score gap, vote agreement above
// 1/2) is small is labelled almost at random, a clear pair almost never wrong:
//
//     p_flip(m) = 2 * max_rate * sigmoid(-m / temperature)       (= max_rate at m = 0, -> 0 as m grows)
//
// decided once per pair as hash_uniform(seed, pair id) < p_flip(m), so it is batching-independent.
#include <cmath>
#include <string>

#include "flip_report.hpp"
#include "prefdiff/sdk.hpp"

namespace {

using prefdiff::sdk::Error;

class AmbiguityFlip final : public prefdiff::sdk::NoiseInjector {
 public:
  static prefdiff::sdk::PluginInfo info() {
    using prefdiff::sdk::ParamSpec;
    prefdiff::sdk::PluginInfo info;
    info.id = "ambiguity-flip";
    info.version = "1.0.0";
    info.summary = "Flip a pair with probability 2*max_rate*sigmoid(-margin/temperature): ambiguous pairs flip most.";
    info.citation = "Bradley-Terry annotator model (Bradley & Terry 1952); prefdiff structured-noise injector";
    info.formula_version = "1";
    info.params.push_back(ParamSpec::string("column", "margin", "Per-pair metadata column holding the source margin "
                                                                "(>= 0, larger = clearer preference)."));
    info.params.push_back(ParamSpec::real("temperature", 1.0, "Margin scale over which the flip probability decays, in the column's units.")
                              .min(0.0, true));
    info.params.push_back(ParamSpec::real("max_rate", 0.5, "Flip probability of a pair with margin 0 (0.5 = a coin flip).")
                              .min(0.0).max(1.0).range_note("a flip rate is a probability"));
    info.params.push_back(ParamSpec::integer("seed", 0, "Seed of the per-pair hash.").min(0.0));
    return info;
  }

  AmbiguityFlip(const prefdiff::sdk::Params& params, const prefdiff::sdk::Host& host)
      : host_(host), column_(params.string("column")), temperature_(params.number("temperature")),
        max_rate_(params.number("max_rate")), seed_(static_cast<uint64_t>(params.integer("seed"))) {
    if (!(temperature_ > 0.0) || !std::isfinite(temperature_))
      throw Error(PD_ERR_INVALID_ARGUMENT, "ambiguity-flip: temperature = " + std::to_string(temperature_) + " must be > 0");
    if (!(max_rate_ >= 0.0 && max_rate_ <= 1.0))
      throw Error(PD_ERR_INVALID_ARGUMENT, "ambiguity-flip: max_rate = " + std::to_string(max_rate_) + " is outside [0, 1]");
  }

  // The model, exposed for tests: flip probability of a pair with margin m.
  double flip_probability(double margin) const {
    return 2.0 * max_rate_ / (1.0 + std::exp(margin / temperature_));
  }

  void decide(const prefdiff::sdk::NoiseBatch& batch, uint8_t* flip) override {
    const double* margin = batch.count > 0 ? batch.require_column(column_, "ambiguity-flip") : nullptr;
    double expected = 0.0;
    for (size_t i = 0; i < batch.count; ++i) {
      const double m = margin[i];
      if (!std::isfinite(m) || m < 0.0)
        throw Error(PD_ERR_INVALID_ARGUMENT, "ambiguity-flip: pair id " + std::to_string(batch.pair_ids[i]) + " has " +
                                                 column_ + " = " + std::to_string(m) +
                                                 "; margins must be finite and >= 0 (winner-first data)");
      const double p = flip_probability(m);
      expected += p;
      flip[i] = prefdiff::sdk::hash_uniform(seed_, batch.pair_ids[i], prefdiff::noise::kStreamAmbiguityFlip) < p ? 1 : 0;
    }
    if (batch.count > 0) host_.metric("expected_flip_fraction", expected / static_cast<double>(batch.count));
    prefdiff::noise::report_flip_fraction(host_, flip, batch.count);
  }

 private:
  prefdiff::sdk::Host host_;
  std::string column_;
  double temperature_;
  double max_rate_;
  uint64_t seed_;
};

}  // namespace

PREFDIFF_EXPORT_NOISE_INJECTOR(AmbiguityFlip)
