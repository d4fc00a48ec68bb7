// `label-flip`: symmetric label noise, the protocol of the robust-DPO papers (Hölder-DPO section 5):
// each pair's winner and loser are swapped with probability `rate`, decided once from (seed, pair id).
//
// mode = "iid":   flip iff hash_uniform(seed, pair id) < rate. A pure per-pair function, so any batching,
//                 rank split, epoch or resume gives the same flips; the realised fraction is Binomial.
// mode = "exact": flip exactly round(rate * dataset_size) pairs: those whose hash values are the smallest
//                 in the dataset (ties broken by pair id). Ranking needs every pair id at once, so this mode
//                 only accepts a decide() call covering the whole dataset (count == dataset_size); the host
//                 makes that call once at start-up and keeps the mask, which makes it batching-independent.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "flip_report.hpp"
#include "prefdiff/sdk.hpp"

namespace {

using prefdiff::sdk::Error;

class LabelFlip final : public prefdiff::sdk::NoiseInjector {
 public:
  static prefdiff::sdk::PluginInfo info() {
    using prefdiff::sdk::ParamSpec;
    prefdiff::sdk::PluginInfo info;
    info.id = "label-flip";
    info.version = "1.0.0";
    info.summary = "Swap winner and loser of a pair with probability `rate`, decided once from (seed, pair id).";
    info.citation = "Fujisawa, Adachi, Osborne, Hölder-DPO, NeurIPS 2025, arXiv 2505.17859, section 5";
    info.formula_version = "1";
    info.params.push_back(ParamSpec::real("rate", 0.2, "Fraction of pairs whose label is flipped (0.2 is the papers' main setting).")
                              .min(0.0).max(1.0).range_note("a flip rate is a probability"));
    info.params.push_back(ParamSpec::integer("seed", 0, "Seed of the per-pair hash; the same seed flips the same pairs in every run.")
                              .min(0.0));
    info.params.push_back(ParamSpec::string("mode", "iid", "iid: independent Bernoulli(rate) per pair; exact: exactly "
                                                           "round(rate * dataset size) pairs, decided over the whole dataset at once.")
                              .choices("iid|exact"));
    return info;
  }

  LabelFlip(const prefdiff::sdk::Params& params, const prefdiff::sdk::Host& host)
      : host_(host), rate_(params.number("rate")), seed_(static_cast<uint64_t>(params.integer("seed"))),
        exact_(params.string("mode") == "exact") {
    if (!(rate_ >= 0.0 && rate_ <= 1.0))
      throw Error(PD_ERR_INVALID_ARGUMENT, "label-flip: rate = " + std::to_string(rate_) + " is outside [0, 1]");
    const std::string mode = params.string("mode");
    if (mode != "iid" && mode != "exact")
      throw Error(PD_ERR_INVALID_ARGUMENT, "label-flip: mode = '" + mode + "' is not one of iid, exact");
  }

  void decide(const prefdiff::sdk::NoiseBatch& batch, uint8_t* flip) override {
    if (exact_)
      decide_exact(batch, flip);
    else
      for (size_t i = 0; i < batch.count; ++i) flip[i] = uniform(batch.pair_ids[i]) < rate_ ? 1 : 0;
    prefdiff::noise::report_flip_fraction(host_, flip, batch.count);
  }

 private:
  double uniform(uint64_t pair_id) const {
    return prefdiff::sdk::hash_uniform(seed_, pair_id, prefdiff::noise::kStreamLabelFlip);
  }

  void decide_exact(const prefdiff::sdk::NoiseBatch& batch, uint8_t* flip) const {
    if (batch.dataset_size == 0 || batch.count != batch.dataset_size)
      throw Error(PD_ERR_INVALID_ARGUMENT,
                  "label-flip mode = \"exact\" ranks every pair of the dataset, so decide() must get all of them in "
                  "one call: got " + std::to_string(batch.count) + " pairs of a dataset of " +
                      std::to_string(batch.dataset_size) +
                      ". HINT: decide the flip mask once over the whole dataset at start-up (prefdiff::data::FlipTable "
                      "does), or use mode = \"iid\".");
    struct Key {
      double u;
      uint64_t pair_id;
      size_t index;
    };
    std::vector<Key> keys(batch.count);
    for (size_t i = 0; i < batch.count; ++i) keys[i] = Key{uniform(batch.pair_ids[i]), batch.pair_ids[i], i};
    auto before = [](const Key& a, const Key& b) { return a.u != b.u ? a.u < b.u : a.pair_id < b.pair_id; };
    std::sort(keys.begin(), keys.end(), before);
    for (size_t i = 1; i < keys.size(); ++i)
      if (keys[i].pair_id == keys[i - 1].pair_id)
        throw Error(PD_ERR_INVALID_ARGUMENT, "label-flip mode = \"exact\": pair id " + std::to_string(keys[i].pair_id) +
                                                 " occurs twice, so an exact count is ill-defined. HINT: deduplicate "
                                                 "the dataset's pair ids (`prefdiff data validate` reports duplicates).");
    const size_t target = static_cast<size_t>(std::llround(rate_ * static_cast<double>(batch.count)));
    std::memset(flip, 0, batch.count);
    for (size_t k = 0; k < target; ++k) flip[keys[k].index] = 1;
  }

  prefdiff::sdk::Host host_;
  double rate_;
  uint64_t seed_;
  bool exact_;
};

}  // namespace

PREFDIFF_EXPORT_NOISE_INJECTOR(LabelFlip)
