// The host reader: shuffling, rank sharding, resume, prefetch, caption dropout, latent sampling and
// label flips, checked against the shard contents and against the documented rules computed here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "flip_report.hpp"
#include "noise_harness.hpp"
#include "prefdiff/data/half.hpp"
#include "prefdiff/data/hdf5_pairs_source.hpp"
#include "prefdiff/data/pair_reader.hpp"
#include "prefdiff/instance/noise_instance.hpp"
#include "shard_fixture.hpp"

using namespace prefdiff::data;
using prefdiff::test::ShardContents;
using prefdiff::test::ShardSpec;
using prefdiff::test::TempDir;
using prefdiff::test::write_test_shard;

namespace {

using prefdiff::instance::Value;

// A noise injector from its shipped library, through the plugin-instance layer as the host makes it.
std::unique_ptr<prefdiff::instance::NoiseInstance> noise_instance(const std::string& file,
                                                                  const std::vector<prefdiff::instance::GivenParam>& params,
                                                                  const pd_host_services* host = nullptr) {
  namespace instance = prefdiff::instance;
  const instance::PluginLibrary library = instance::load_library(std::string(PREFDIFF_TEST_PLUGIN_DIR) + "/" + file, host);
  return std::make_unique<instance::NoiseInstance>(library, instance::resolve_or_throw(library, params), host);
}

struct Fixture {
  TempDir dir;
  ShardContents contents;
  std::unique_ptr<prefdiff::instance::DataSource> source;
  explicit Fixture(uint64_t pairs = 103) {
    ShardSpec spec;
    spec.pairs = pairs;
    contents = write_test_shard(dir.file("r.h5"), spec);
    source = open_hdf5_pairs(contents.path);
  }
};

std::vector<PairBatch> read_epoch(PairReader& reader, uint64_t epoch, uint64_t first = 0) {
  reader.start(epoch, first);
  std::vector<PairBatch> batches;
  PairBatch b;
  while (reader.next(b)) batches.push_back(std::move(b));
  return batches;
}

std::vector<uint16_t> row16(const HostTensor& t, size_t i) {
  std::vector<uint16_t> out(t.row_bytes / 2);
  std::memcpy(out.data(), t.data.data() + i * t.row_bytes, t.row_bytes);
  return out;
}

bool reference_flip(uint64_t seed, double rate, uint64_t pair_id) {
  return prefdiff::sdk::hash_uniform(seed, pair_id, prefdiff::noise::kStreamLabelFlip) < rate;
}

}  // namespace

TEST(PairReaderTest, RankShardingIsDisjointAndComplete) {
  Fixture f;
  for (int32_t world : {1, 2, 3, 4}) {
    for (bool drop_last : {false, true}) {
      std::multiset<uint64_t> seen;
      std::set<uint64_t> batches_per_rank;
      for (int32_t rank = 0; rank < world; ++rank) {
        ReaderOptions o;
        o.seed = 3;
        o.rank = rank;
        o.world_size = world;
        o.batch_size = 5;
        o.drop_last = drop_last;
        PairReader reader(*f.source, o);
        for (uint64_t index : reader.epoch_indices(1)) seen.insert(index);
        batches_per_rank.insert(reader.batches_per_epoch());
      }
      const std::set<uint64_t> unique(seen.begin(), seen.end());
      EXPECT_EQ(unique.size(), seen.size()) << "ranks overlap, world " << world;
      const uint64_t expected = drop_last ? 103 / (5 * world) * (5 * world) : 103;
      EXPECT_EQ(seen.size(), expected) << "world " << world << " drop_last " << drop_last;
      if (drop_last) EXPECT_EQ(batches_per_rank.size(), 1u) << "ranks must take equal steps";
    }
  }
}

TEST(PairReaderTest, ShuffleIsAPermutationFixedBySeedAndEpoch) {
  Fixture f;
  ReaderOptions o;
  o.seed = 11;
  o.drop_last = false;
  PairReader a(*f.source, o), b(*f.source, o);
  o.seed = 12;
  PairReader c(*f.source, o);
  const std::vector<uint64_t> e0 = a.epoch_indices(0);
  std::vector<uint64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  for (uint64_t i = 0; i < sorted.size(); ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(e0, b.epoch_indices(0));
  EXPECT_NE(e0, a.epoch_indices(1));
  EXPECT_NE(e0, c.epoch_indices(0));
}

TEST(PairReaderTest, BatchesHoldTheShardRowsOfTheirIndices) {
  Fixture f;
  ReaderOptions o;
  o.batch_size = 8;
  o.drop_last = false;
  PairReader reader(*f.source, o);
  size_t total = 0;
  for (const PairBatch& batch : read_epoch(reader, 0)) {
    const HostTensor &w = batch.tensor("latent_w"), &l = batch.tensor("latent_l"), &e = batch.tensor("prompt_embeds"),
                     &t = batch.tensor("time_ids");
    EXPECT_EQ(w.shape, (std::vector<int64_t>{static_cast<int64_t>(batch.size()), 4, 4, 4}));
    EXPECT_FALSE(batch.has("latent_w_std"));  // std tensors only on request or for sampling
    for (size_t i = 0; i < batch.size(); ++i) {
      const uint64_t index = batch.indices[i];
      ASSERT_EQ(batch.pair_ids[i], f.contents.pair_ids[index]);
      ASSERT_EQ(row16(w, i), f.contents.w[index]);
      ASSERT_EQ(row16(l, i), f.contents.l[index]);
      ASSERT_EQ(row16(e, i), f.contents.embeds[static_cast<size_t>(f.contents.prompt[index])]);
      ASSERT_EQ(0, std::memcmp(t.data.data() + i * 48, f.contents.time_ids[index].data(), 48));
    }
    total += batch.size();
  }
  EXPECT_EQ(total, 103u);
}

TEST(PairReaderTest, ResumeAndPrefetchReadExactlyWhatAnUninterruptedRunReads) {
  Fixture f;
  ReaderOptions o;
  o.seed = 5;
  o.batch_size = 6;
  o.caption_dropout = 0.25;
  o.prefetch = 0;
  PairReader sync(*f.source, o);
  o.prefetch = 3;
  PairReader prefetched(*f.source, o);
  const std::vector<PairBatch> full = read_epoch(sync, 2);
  const std::vector<PairBatch> ahead = read_epoch(prefetched, 2);
  const std::vector<PairBatch> resumed = read_epoch(prefetched, 2, 7);
  ASSERT_EQ(full.size(), sync.batches_per_epoch());
  ASSERT_EQ(ahead.size(), full.size());
  ASSERT_EQ(resumed.size(), full.size() - 7);
  for (size_t b = 0; b < full.size(); ++b) {
    EXPECT_EQ(ahead[b].indices, full[b].indices);
    EXPECT_EQ(ahead[b].caption_dropped, full[b].caption_dropped);
    EXPECT_EQ(ahead[b].tensor("prompt_embeds").data, full[b].tensor("prompt_embeds").data);
    if (b >= 7) {
      EXPECT_EQ(resumed[b - 7].index, b);
      EXPECT_EQ(resumed[b - 7].indices, full[b].indices);
      EXPECT_EQ(resumed[b - 7].tensor("latent_w").data, full[b].tensor("latent_w").data);
    }
  }
}

TEST(PairReaderTest, CaptionDropoutGivesTheEmptyPromptAtTheRequestedRate) {
  Fixture f(2000);
  ReaderOptions o;
  o.seed = 9;
  o.batch_size = 50;
  o.caption_dropout = 0.2;
  PairReader reader(*f.source, o);
  size_t dropped = 0, total = 0;
  std::vector<uint8_t> epoch0, epoch1;
  for (uint64_t epoch : {0u, 1u}) {
    for (const PairBatch& batch : read_epoch(reader, epoch)) {
      const HostTensor& e = batch.tensor("prompt_embeds");
      const HostTensor& p = batch.tensor("pooled_embeds");
      for (size_t i = 0; i < batch.size(); ++i) {
        const size_t prompt = batch.caption_dropped[i] ? 0 : static_cast<size_t>(f.contents.prompt[batch.indices[i]]);
        ASSERT_EQ(row16(e, i), f.contents.embeds[prompt]);
        ASSERT_EQ(row16(p, i), f.contents.pooled[prompt]);
        dropped += batch.caption_dropped[i];
        ++total;
        (epoch == 0 ? epoch0 : epoch1).push_back(batch.caption_dropped[i]);
      }
    }
  }
  const double sd = std::sqrt(total * 0.2 * 0.8);
  EXPECT_LE(std::fabs(static_cast<double>(dropped) - 0.2 * total), 5 * sd);
  EXPECT_NE(epoch0, epoch1);  // dropout is redrawn every epoch
}

TEST(PairReaderTest, LatentSamplingAddsStdTimesStandardNormal) {
  Fixture f(400);
  ReaderOptions o;
  o.batch_size = 40;
  o.sample_latents = true;
  PairReader reader(*f.source, o);
  double sum_w = 0, sq_w = 0, sum_l = 0, sq_l = 0;
  size_t n = 0;
  std::vector<uint8_t> first_pass;
  for (const PairBatch& batch : read_epoch(reader, 0)) {
    EXPECT_FALSE(batch.has("latent_w_std"));
    const HostTensor &w = batch.tensor("latent_w"), &l = batch.tensor("latent_l");
    for (size_t i = 0; i < batch.size(); ++i) {
      const std::vector<uint16_t> sw = row16(w, i), sl = row16(l, i);
      for (size_t k = 0; k < sw.size(); ++k) {
        const double dw = half_to_float(sw[k]) - half_to_float(f.contents.w[batch.indices[i]][k]);
        const double dl = half_to_float(sl[k]) - half_to_float(f.contents.l[batch.indices[i]][k]);
        sum_w += dw;
        sq_w += dw * dw;
        sum_l += dl;
        sq_l += dl * dl;
        ++n;
      }
    }
    first_pass.insert(first_pass.end(), w.data.begin(), w.data.end());
  }
  // std 0.05 (winner) and 0.1 (loser) in the fixture; fp16 rounding adds well under 1% here.
  EXPECT_NEAR(sum_w / n, 0.0, 0.003);
  EXPECT_NEAR(std::sqrt(sq_w / n), 0.05, 0.003);
  EXPECT_NEAR(std::sqrt(sq_l / n), 0.1, 0.004);
  std::vector<uint8_t> again;
  for (const PairBatch& batch : read_epoch(reader, 0)) again.insert(again.end(), batch.tensor("latent_w").data.begin(), batch.tensor("latent_w").data.end());
  EXPECT_EQ(first_pass, again);  // deterministic in (seed, epoch, pair id)
}

TEST(PairReaderTest, SamplingWithoutStoredStdIsAnErrorWithTheFix) {
  TempDir dir;
  ShardSpec spec;
  spec.std_dev = false;
  const ShardContents c = write_test_shard(dir.file("nostd.h5"), spec);
  auto source = open_hdf5_pairs(c.path);
  ReaderOptions o;
  o.sample_latents = true;
  try {
    PairReader reader(*source, o);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("sample_latents needs 'latent_w_std'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(c.path), std::string::npos) << e.what();
  }
}

// The same (seed, pair id) flips identically across epochs, ranks, resumes and objectives.
TEST(FlipsThroughTheReader, SamePairsFlipAcrossEpochsRanksResumesAndObjectives) {
  Fixture f(600);
  const uint64_t seed = 7;
  const double rate = 0.3;
  auto make_table = [&] {
    auto noise = noise_instance("libprefdiff_noise_label_flip.so",
                                {{"rate", Value::real(rate), "", ""}, {"seed", Value::whole(static_cast<int64_t>(seed)), "", ""}});
    return FlipTable::decide(*f.source, *noise);
  };
  const FlipTable table = make_table();
  EXPECT_EQ(make_table().mask(), table.mask());  // a second objective's run builds the same table
  for (uint64_t i = 0; i < 600; ++i) ASSERT_EQ(table.flipped(i), reference_flip(seed, rate, f.contents.pair_ids[i]));
  const double sd = std::sqrt(600 * rate * (1 - rate));
  EXPECT_LE(std::fabs(static_cast<double>(table.flipped_count()) - 600 * rate), 5 * sd);

  for (int32_t world : {1, 2, 3}) {
    for (int32_t rank = 0; rank < world; ++rank) {
      ReaderOptions o;
      o.seed = 1;
      o.rank = rank;
      o.world_size = world;
      o.batch_size = 10;
      o.flips = &table;
      PairReader reader(*f.source, o);
      for (uint64_t epoch : {0u, 3u}) {
        for (uint64_t first : {uint64_t{0}, reader.batches_per_epoch() / 2}) {  // fresh start and resume
          for (const PairBatch& batch : read_epoch(reader, epoch, first)) {
            const HostTensor &w = batch.tensor("latent_w"), &l = batch.tensor("latent_l"), &t = batch.tensor("time_ids");
            for (size_t i = 0; i < batch.size(); ++i) {
              const uint64_t index = batch.indices[i];
              const bool flip = reference_flip(seed, rate, batch.pair_ids[i]);
              ASSERT_EQ(batch.flipped[i], flip ? 1 : 0);
              ASSERT_EQ(row16(w, i), flip ? f.contents.l[index] : f.contents.w[index]);
              ASSERT_EQ(row16(l, i), flip ? f.contents.w[index] : f.contents.l[index]);
              float winner_time[6];
              std::memcpy(winner_time, t.data.data() + i * 48, 24);
              ASSERT_EQ(winner_time[0], f.contents.time_ids[index][flip ? 6 : 0]);
            }
          }
        }
      }
    }
  }
}

TEST(FlipsThroughTheReader, ExactAndMetadataDrivenInjectorsSeeTheWholeDataSet) {
  Fixture f(500);
  prefdiff::test::RecordingHost host;
  auto exact = noise_instance("libprefdiff_noise_label_flip.so",
                              {{"rate", Value::real(0.2), "", ""}, {"mode", Value::string("exact"), "", ""}}, &host.services);
  const FlipTable table = FlipTable::decide(*f.source, *exact);
  EXPECT_EQ(table.flipped_count(), 100u);
  EXPECT_DOUBLE_EQ(host.metrics["label-flip/flip_fraction"], 0.2);

  // ambiguity-flip reads the shard's "margin" column (0..3 by row): margin-0 pairs flip most.
  auto ambiguity = noise_instance("libprefdiff_noise_ambiguity_flip.so",
                                  {{"temperature", Value::real(0.5), "", ""}, {"max_rate", Value::real(0.5), "", ""}});
  const FlipTable by_margin = FlipTable::decide(*f.source, *ambiguity);
  size_t flips_at[4] = {0, 0, 0, 0};
  for (uint64_t i = 0; i < 500; ++i) flips_at[i % 4] += by_margin.flipped(i);
  EXPECT_GT(flips_at[0], flips_at[2]);
  EXPECT_GT(flips_at[1], flips_at[3]);
  EXPECT_LE(flips_at[3], 5u);  // p = sigmoid(-6) ~ 0.0025 for 125 pairs
}

TEST(PairReaderTest, ReadErrorsInTheWorkerReachTheCaller) {
  Fixture f(200);
  ReaderOptions o;
  o.batch_size = 10;
  o.prefetch = 2;
  PairReader reader(*f.source, o);
  std::filesystem::resize_file(f.contents.path, 4096);  // the file is cut under the running reader
  reader.start(0);
  PairBatch batch;
  try {
    while (reader.next(batch)) {
    }
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(f.contents.path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("/pairs/latent_w"), std::string::npos) << e.what();
  }
}
