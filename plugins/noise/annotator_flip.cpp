// `annotator-flip`: structured label noise clustered by annotator. Real preference sets (Pick-a-Pic's
// user_id) contain careless or adversarial raters whose labels are wrong far more often than average.
// Each annotator is unreliable with probability `annotator_fraction`, decided from (seed, annotator id);
// a pair flips with probability `unreliable_rate` if its annotator is unreliable, else `base_rate`,
// decided from (seed, pair id). Both draws are pure functions, so batching never changes the outcome.
#include <cmath>
#include <string>

#include "flip_report.hpp"
#include "prefdiff/sdk.hpp"

namespace {

using prefdiff::sdk::Error;

class AnnotatorFlip final : public prefdiff::sdk::NoiseInjector {
 public:
  static prefdiff::sdk::PluginInfo info() {
    using prefdiff::sdk::ParamSpec;
    prefdiff::sdk::PluginInfo info;
    info.id = "annotator-flip";
    info.version = "1.0.0";
    info.summary = "Flip labels of a seeded subset of unreliable annotators at a high rate, others at a base rate.";
    info.citation = "prefdiff structured-noise injector (annotator-clustered flips)";
    info.formula_version = "1";
    info.params.push_back(ParamSpec::string("column", "annotator", "Per-pair metadata column holding an integer annotator id."));
    info.params.push_back(ParamSpec::real("annotator_fraction", 0.2, "Probability that an annotator is unreliable.")
                              .min(0.0).max(1.0));
    info.params.push_back(ParamSpec::real("unreliable_rate", 0.5, "Flip probability of pairs labelled by an unreliable "
                                                                  "annotator (0.5 = random clicks, 1 = adversarial).")
                              .min(0.0).max(1.0));
    info.params.push_back(ParamSpec::real("base_rate", 0.0, "Flip probability of pairs labelled by a reliable annotator.")
                              .min(0.0).max(1.0));
    info.params.push_back(ParamSpec::integer("seed", 0, "Seed of the annotator and pair hashes.").min(0.0));
    return info;
  }

  AnnotatorFlip(const prefdiff::sdk::Params& params, const prefdiff::sdk::Host& host)
      : host_(host), column_(params.string("column")), annotator_fraction_(params.number("annotator_fraction")),
        unreliable_rate_(params.number("unreliable_rate")), base_rate_(params.number("base_rate")),
        seed_(static_cast<uint64_t>(params.integer("seed"))) {
    const char* names[] = {"annotator_fraction", "unreliable_rate", "base_rate"};
    const double values[] = {annotator_fraction_, unreliable_rate_, base_rate_};
    for (int k = 0; k < 3; ++k)
      if (!(values[k] >= 0.0 && values[k] <= 1.0))
        throw Error(PD_ERR_INVALID_ARGUMENT, std::string("annotator-flip: ") + names[k] + " = " +
                                                 std::to_string(values[k]) + " is outside [0, 1]");
  }

  void decide(const prefdiff::sdk::NoiseBatch& batch, uint8_t* flip) override {
    const double* annotator = batch.count > 0 ? batch.require_column(column_, "annotator-flip") : nullptr;
    for (size_t i = 0; i < batch.count; ++i) {
      const double a = annotator[i];
      if (!std::isfinite(a) || a != std::floor(a) || std::fabs(a) > 9007199254740992.0)
        throw Error(PD_ERR_INVALID_ARGUMENT, "annotator-flip: pair id " + std::to_string(batch.pair_ids[i]) + " has " +
                                                 column_ + " = " + std::to_string(a) + ", not an integer annotator id");
      const uint64_t id = static_cast<uint64_t>(static_cast<int64_t>(a));
      const bool unreliable =
          prefdiff::sdk::hash_uniform(seed_, id, prefdiff::noise::kStreamAnnotatorPick) < annotator_fraction_;
      const double p = unreliable ? unreliable_rate_ : base_rate_;
      flip[i] = prefdiff::sdk::hash_uniform(seed_, batch.pair_ids[i], prefdiff::noise::kStreamAnnotatorFlip) < p ? 1 : 0;
    }
    prefdiff::noise::report_flip_fraction(host_, flip, batch.count);
  }

 private:
  prefdiff::sdk::Host host_;
  std::string column_;
  double annotator_fraction_, unreliable_rate_, base_rate_;
  uint64_t seed_;
};

}  // namespace

PREFDIFF_EXPORT_NOISE_INJECTOR(AnnotatorFlip)
