// Noise-injector plugins, loaded from their .so files: determinism over (seed, pair id), realised flip
// fractions against binomial bounds, the exact-count mode, the structured injectors' models, errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "flip_report.hpp"
#include "noise_harness.hpp"

using prefdiff::test::NoiseInstance;
using prefdiff::test::ParamList;

namespace {

std::vector<uint64_t> sample_ids(size_t n, uint64_t salt = 0) {
  // Pair ids look like hashes in real shards: spread over 64 bits.
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = prefdiff::sdk::mix64(i * 7919 + salt);
  return ids;
}

size_t count(const std::vector<uint8_t>& flips) { return static_cast<size_t>(std::count(flips.begin(), flips.end(), 1)); }

// |k - n p| within 5 standard deviations of Binomial(n, p).
void expect_binomial(size_t k, size_t n, double p) {
  const double sd = std::sqrt(static_cast<double>(n) * p * (1 - p));
  EXPECT_LE(std::fabs(static_cast<double>(k) - static_cast<double>(n) * p), 5 * sd + 1e-9)
      << k << " of " << n << " flipped, rate " << p;
}

}  // namespace

TEST(NoisePlugins, DescriptorsAreNoiseInjectorsWithIds) {
  for (auto [file, id] : {std::pair<const char*, const char*>{"libprefdiff_noise_none.so", "none"},
                          {"libprefdiff_noise_label_flip.so", "label-flip"},
                          {"libprefdiff_noise_ambiguity_flip.so", "ambiguity-flip"},
                          {"libprefdiff_noise_annotator_flip.so", "annotator-flip"}}) {
    prefdiff::test::PluginLibrary library(file);
    EXPECT_EQ(library.descriptor()->kind, static_cast<uint32_t>(PD_KIND_NOISE_INJECTOR)) << file;
    EXPECT_STREQ(library.descriptor()->id, id);
  }
}

TEST(NoisePlugins, NoneFlipsNothing) {
  NoiseInstance none("libprefdiff_noise_none.so", ParamList());
  ASSERT_EQ(none.create_status(), PD_OK) << none.message();
  std::vector<uint8_t> flips;
  ASSERT_EQ(none.decide(sample_ids(1000), flips, 1000), PD_OK);
  EXPECT_EQ(count(flips), 0u);
}

TEST(LabelFlip, IidMatchesTheDocumentedRuleAndIgnoresBatching) {
  NoiseInstance noise("libprefdiff_noise_label_flip.so", ParamList().number("rate", 0.2).integer("seed", 42));
  ASSERT_EQ(noise.create_status(), PD_OK) << noise.message();
  const std::vector<uint64_t> ids = sample_ids(20000);
  std::vector<uint8_t> whole;
  ASSERT_EQ(noise.decide(ids, whole, ids.size()), PD_OK);
  // The rule: flip iff hash_uniform(seed, pair id, label-flip stream) < rate.
  for (size_t i = 0; i < ids.size(); ++i)
    ASSERT_EQ(whole[i], prefdiff::sdk::hash_uniform(42, ids[i], prefdiff::noise::kStreamLabelFlip) < 0.2 ? 1 : 0) << i;
  // Any batching and order (ranks, epochs, resumes) gives each pair the same fate.
  std::vector<size_t> order(ids.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
  for (size_t batch : {1u, 7u, 64u, 1000u}) {
    for (size_t first = 0; first < order.size(); first += batch) {
      std::vector<uint64_t> chunk;
      for (size_t k = first; k < std::min(order.size(), first + batch); ++k) chunk.push_back(ids[order[k]]);
      std::vector<uint8_t> flips;
      ASSERT_EQ(noise.decide(chunk, flips, ids.size()), PD_OK);
      for (size_t k = 0; k < chunk.size(); ++k) ASSERT_EQ(flips[k], whole[order[first + k]]);
    }
  }
}

TEST(LabelFlip, SameSeedSameFlipsAcrossInstancesDifferentSeedDifferentFlips) {
  // Two objectives of a sweep each create their own injector: they must see the same flips.
  const std::vector<uint64_t> ids = sample_ids(5000);
  std::vector<uint8_t> a, b, c;
  NoiseInstance first("libprefdiff_noise_label_flip.so", ParamList().number("rate", 0.3).integer("seed", 5));
  NoiseInstance second("libprefdiff_noise_label_flip.so", ParamList().number("rate", 0.3).integer("seed", 5));
  NoiseInstance other("libprefdiff_noise_label_flip.so", ParamList().number("rate", 0.3).integer("seed", 6));
  ASSERT_EQ(first.decide(ids, a, ids.size()), PD_OK);
  ASSERT_EQ(second.decide(ids, b, ids.size()), PD_OK);
  ASSERT_EQ(other.decide(ids, c, ids.size()), PD_OK);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(LabelFlip, RealisedFractionWithinBinomialBoundAndReportedAsMetric) {
  const std::vector<uint64_t> ids = sample_ids(100000);
  for (double rate : {0.0, 0.1, 0.2, 0.3, 0.4, 1.0}) {
    prefdiff::test::RecordingHost host;
    NoiseInstance noise("libprefdiff_noise_label_flip.so", ParamList().number("rate", rate).integer("seed", 1), &host.services);
    std::vector<uint8_t> flips;
    ASSERT_EQ(noise.decide(ids, flips, ids.size()), PD_OK);
    const size_t k = count(flips);
    expect_binomial(k, ids.size(), rate);
    if (rate == 0.0) EXPECT_EQ(k, 0u);
    if (rate == 1.0) EXPECT_EQ(k, ids.size());
    EXPECT_DOUBLE_EQ(host.metrics["label-flip/flip_fraction"], static_cast<double>(k) / ids.size());
  }
}

TEST(LabelFlip, ExactModeFlipsExactlyRoundedCountIndependentOfOrder) {
  for (size_t n : {1u, 10u, 997u, 20000u}) {
    for (double rate : {0.0, 0.1, 0.25, 0.5, 1.0}) {
      NoiseInstance noise("libprefdiff_noise_label_flip.so",
                          ParamList().number("rate", rate).integer("seed", 3).string("mode", "exact"));
      std::vector<uint64_t> ids = sample_ids(n, 11);
      std::vector<uint8_t> flips;
      ASSERT_EQ(noise.decide(ids, flips, n), PD_OK) << noise.message();
      EXPECT_EQ(count(flips), static_cast<size_t>(std::llround(rate * n))) << "n " << n << " rate " << rate;
      // Presenting the same pairs in another order flips the same pairs.
      std::vector<uint64_t> reversed(ids.rbegin(), ids.rend());
      std::vector<uint8_t> again;
      ASSERT_EQ(noise.decide(reversed, again, n), PD_OK);
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(again[n - 1 - i], flips[i]);
    }
  }
}

TEST(LabelFlip, ExactModeIsTheSmallestHashesIidModeWouldUse) {
  // Exact flips are the round(rate*n) pairs with the smallest hash values, i.e. the iid rule with a
  // threshold at the order statistic: both modes agree on which pairs are "most likely" flipped.
  const std::vector<uint64_t> ids = sample_ids(4000, 5);
  NoiseInstance exact("libprefdiff_noise_label_flip.so", ParamList().number("rate", 0.2).integer("seed", 9).string("mode", "exact"));
  std::vector<uint8_t> flips;
  ASSERT_EQ(exact.decide(ids, flips, ids.size()), PD_OK);
  std::vector<double> u(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) u[i] = prefdiff::sdk::hash_uniform(9, ids[i], prefdiff::noise::kStreamLabelFlip);
  std::vector<double> sorted = u;
  std::sort(sorted.begin(), sorted.end());
  const double threshold = sorted[800];  // 0.2 * 4000 flips: u below the 801st smallest value
  for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(flips[i], u[i] < threshold ? 1 : 0);
}

TEST(LabelFlip, ExactModeRefusesPartialBatchesAndDuplicateIds) {
  NoiseInstance noise("libprefdiff_noise_label_flip.so", ParamList().number("rate", 0.2).string("mode", "exact"));
  std::vector<uint8_t> flips;
  EXPECT_EQ(noise.decide(sample_ids(100), flips, 1000), PD_ERR_INVALID_ARGUMENT);
  EXPECT_NE(noise.message().find("whole dataset"), std::string::npos) << noise.message();
  std::vector<uint64_t> ids = sample_ids(100);
  ids[50] = ids[10];
  EXPECT_EQ(noise.decide(ids, flips, 100), PD_ERR_INVALID_ARGUMENT);
  EXPECT_NE(noise.message().find("occurs twice"), std::string::npos) << noise.message();
}

TEST(LabelFlip, RejectsOutOfRangeRate) {
  NoiseInstance noise("libprefdiff_noise_label_flip.so", ParamList().number("rate", 1.5));
  EXPECT_EQ(noise.create_status(), PD_ERR_INVALID_ARGUMENT);
  EXPECT_NE(noise.message().find("rate"), std::string::npos) << noise.message();
}

TEST(AmbiguityFlip, FlipRateFollowsTheMarginModel) {
  // Margins 0..4 in equal groups; each group's realised rate must match 2*max_rate*sigmoid(-m/T).
  const size_t per_margin = 40000;
  std::vector<uint64_t> ids = sample_ids(5 * per_margin, 99);
  std::vector<double> margin(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) margin[i] = static_cast<double>(i / per_margin);
  const double temperature = 1.5, max_rate = 0.4;
  prefdiff::test::RecordingHost host;
  NoiseInstance noise("libprefdiff_noise_ambiguity_flip.so",
                      ParamList().number("temperature", temperature).number("max_rate", max_rate).integer("seed", 2), &host.services);
  ASSERT_EQ(noise.create_status(), PD_OK) << noise.message();
  std::vector<uint8_t> flips;
  ASSERT_EQ(noise.decide(ids, flips, ids.size(), {{"margin", margin}}), PD_OK) << noise.message();
  double expected_total = 0;
  for (int m = 0; m < 5; ++m) {
    const double p = 2 * max_rate / (1 + std::exp(m / temperature));
    expected_total += p / 5;
    size_t k = 0;
    for (size_t i = m * per_margin; i < (m + 1) * per_margin; ++i) k += flips[i];
    expect_binomial(k, per_margin, p);
  }
  EXPECT_NEAR(host.metrics["ambiguity-flip/expected_flip_fraction"], expected_total, 1e-12);
}

TEST(AmbiguityFlip, MissingColumnAndNegativeMarginAreErrorsNamingThem) {
  NoiseInstance noise("libprefdiff_noise_ambiguity_flip.so", ParamList().string("column", "score_gap"));
  std::vector<uint8_t> flips;
  EXPECT_EQ(noise.decide(sample_ids(10), flips, 10, {{"margin", std::vector<double>(10, 1.0)}}), PD_ERR_INVALID_ARGUMENT);
  EXPECT_NE(noise.message().find("'score_gap'"), std::string::npos) << noise.message();
  std::vector<double> gap(10, 1.0);
  gap[3] = -2;
  EXPECT_EQ(noise.decide(sample_ids(10), flips, 10, {{"score_gap", gap}}), PD_ERR_INVALID_ARGUMENT);
  EXPECT_NE(noise.message().find("score_gap = -2"), std::string::npos) << noise.message();
}

TEST(AnnotatorFlip, FlipsClusterByAnnotator) {
  // 400 annotators with 250 pairs each. Unreliable annotators flip at 0.9, reliable ones at 0.05: per
  // annotator the realised rate must sit near one of the two, the unreliable share near 0.25, and every
  // pair of one annotator shares its annotator's fate.
  const size_t annotators = 400, per = 250;
  std::vector<uint64_t> ids = sample_ids(annotators * per, 3);
  std::vector<double> annotator(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) annotator[i] = static_cast<double>(1000 + i / per);
  NoiseInstance noise("libprefdiff_noise_annotator_flip.so", ParamList()
                                                                 .number("annotator_fraction", 0.25)
                                                                 .number("unreliable_rate", 0.9)
                                                                 .number("base_rate", 0.05)
                                                                 .integer("seed", 4));
  std::vector<uint8_t> flips;
  ASSERT_EQ(noise.decide(ids, flips, ids.size(), {{"annotator", annotator}}), PD_OK) << noise.message();
  size_t unreliable = 0;
  for (size_t a = 0; a < annotators; ++a) {
    size_t k = 0;
    for (size_t i = a * per; i < (a + 1) * per; ++i) k += flips[i];
    const double rate = static_cast<double>(k) / per;
    const bool high = rate > 0.5;
    unreliable += high;
    const double p = high ? 0.9 : 0.05;
    expect_binomial(k, per, p);
    EXPECT_EQ(high, prefdiff::sdk::hash_uniform(4, 1000 + a, prefdiff::noise::kStreamAnnotatorPick) < 0.25) << "annotator " << a;
  }
  expect_binomial(unreliable, annotators, 0.25);
}

TEST(AnnotatorFlip, NonIntegerAnnotatorIsAnError) {
  NoiseInstance noise("libprefdiff_noise_annotator_flip.so", ParamList());
  std::vector<uint8_t> flips;
  EXPECT_EQ(noise.decide(sample_ids(3), flips, 3, {{"annotator", {1.0, 2.5, 3.0}}}), PD_ERR_INVALID_ARGUMENT);
  EXPECT_NE(noise.message().find("not an integer annotator id"), std::string::npos) << noise.message();
}
