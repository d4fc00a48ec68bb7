// The toy world without LibTorch: config validation, determinism, the oracle's closed form, base
// samples, pair labels (oracle and Bradley-Terry), the shard contents, and the atomic cache folders.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "internal.hpp"
#include "prefdiff/data/half.hpp"
#include "prefdiff/data/shard_file.hpp"
#include "prefdiff/toy_world/eval_config.hpp"
#include "prefdiff/toy_world/world.hpp"

namespace fs = std::filesystem;
using prefdiff::toy::CounterRng;
using prefdiff::toy::Pair;
using prefdiff::toy::World;
using prefdiff::toy::WorldConfig;
using prefdiff::toy::WorldError;

namespace {

WorldConfig small_config() {
  return WorldConfig::from_json({{"prompts", 5}, {"heldout_prompts", 1}, {"modes", 3}, {"train_pairs", 600}, {"heldout_pairs", 100}});
}

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("prefdiff-toy-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

std::string error_of(const nlohmann::json& section) {
  try {
    WorldConfig::from_json(section);
  } catch (const WorldError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ToyWorldConfig, DefaultsRoundTrip) {
  const WorldConfig c = WorldConfig::from_json({{"id", "toy-world"}});
  EXPECT_EQ(c.prompts, 8);
  EXPECT_EQ(c.pair_source, "base");
  const WorldConfig again = WorldConfig::from_json(c.to_json());
  EXPECT_EQ(again.to_json(), c.to_json());
  // Every schema key has a default inside its own range.
  for (const prefdiff::instance::ParamSpec& k : prefdiff::toy::world_schema())
    EXPECT_FALSE(prefdiff::instance::check_default(k)) << k.name;
  for (const prefdiff::instance::ParamSpec& k : prefdiff::toy::eval_schema())
    EXPECT_FALSE(prefdiff::instance::check_default(k)) << k.name;
}

TEST(ToyWorldConfig, EveryProblemNamedAtOnce) {
  const std::string e = error_of({{"prompt", 4}, {"noise_std", -1.0}, {"pair_source", "model"}, {"modes", 2.5}});
  EXPECT_NE(e.find("4 problem(s)"), std::string::npos) << e;
  EXPECT_NE(e.find("[data] unknown key 'prompt'; did you mean 'prompts'?"), std::string::npos) << e;
  EXPECT_NE(e.find("[data] key 'noise_std'"), std::string::npos) << e;
  EXPECT_NE(e.find("[data] key 'pair_source': 'model' is not allowed"), std::string::npos) << e;
  EXPECT_NE(e.find("[data] key 'modes'"), std::string::npos) << e;
  const std::string h = error_of({{"prompts", 3}, {"heldout_prompts", 3}});
  EXPECT_NE(h.find("heldout_prompts = 3 leaves no training prompt"), std::string::npos) << h;
  EXPECT_NE(error_of({{"id", "hdf5-pairs"}}).find("[data] key 'id'"), std::string::npos);
  try {
    prefdiff::toy::EvalConfig::from_json({{"step", 10}});
    FAIL() << "unknown eval key accepted";
  } catch (const WorldError& err) {
    EXPECT_NE(std::string(err.what()).find("did you mean 'steps'?"), std::string::npos) << err.what();
  }
}

TEST(ToyWorldRng, CounterBasedAndStandard) {
  const CounterRng a(7, 11), b(7, 11), c(7, 12);
  EXPECT_EQ(a.bits(5), b.bits(5));
  EXPECT_NE(a.bits(5), c.bits(5));
  const int n = 200000;
  double sum = 0, sq = 0, usum = 0;
  for (int i = 0; i < n; ++i) {
    const double z = a.normal(static_cast<uint64_t>(i));
    sum += z;
    sq += z * z;
    const double u = c.uniform(static_cast<uint64_t>(i));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    usum += u;
  }
  // Bounds of 5 standard errors: mean of N(0,1) has se 1/sqrt(n); of z^2, sqrt(2/n); of U, sqrt(1/12n).
  EXPECT_NEAR(sum / n, 0.0, 5.0 / std::sqrt(n));
  EXPECT_NEAR(sq / n, 1.0, 5.0 * std::sqrt(2.0 / n));
  EXPECT_NEAR(usum / n, 0.5, 5.0 * std::sqrt(1.0 / (12.0 * n)));
}

TEST(ToyWorld, SameSeedSameWorldBitForBit) {
  const World a(small_config()), b(small_config());
  WorldConfig other = small_config();
  other.seed = 1;
  const World c(other);
  for (int64_t k = 0; k < a.prompt_count(); ++k) {
    EXPECT_TRUE(same_bits(a.prompt_embedding(k), b.prompt_embedding(k)));
    EXPECT_TRUE(same_bits(a.target(k), b.target(k)));
    EXPECT_TRUE(same_bits(a.mode_weights(k), b.mode_weights(k)));
    EXPECT_EQ(a.best_mode(k), b.best_mode(k));
    for (int64_t m = 0; m < a.config().modes; ++m) EXPECT_TRUE(same_bits(a.mode_mean(k, m), b.mode_mean(k, m)));
    EXPECT_FALSE(same_bits(a.mode_mean(k, 0), c.mode_mean(k, 0)));
  }
  const std::vector<Pair> pa = a.base_train_pairs(), pb = b.base_train_pairs();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].pair_id, pb[i].pair_id);
    ASSERT_TRUE(same_bits(pa[i].latent_w, pb[i].latent_w) && same_bits(pa[i].latent_l, pb[i].latent_l)) << i;
  }
}

TEST(ToyWorld, WorldStructure) {
  const World w(small_config());
  const WorldConfig& c = w.config();
  EXPECT_EQ(w.train_prompts(), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(w.heldout_prompts(), (std::vector<int64_t>{4}));
  // Training pairs cycle through the training prompts in order.
  for (int64_t i = 0; i < 11; ++i) EXPECT_EQ(w.train_pair_prompt(i), w.train_prompts()[static_cast<size_t>(i % 4)]) << i;
  const double D = static_cast<double>(w.latent_numel());
  for (int64_t k = 0; k < c.prompts; ++k) {
    // Embeddings are exactly float16 values (what shards store).
    for (float v : w.prompt_embedding(k)) ASSERT_EQ(prefdiff::data::half_to_float(prefdiff::data::float_to_half(v)), v);
    double total = 0;
    for (double p : w.mode_weights(k)) total += p;
    EXPECT_NEAR(total, 1.0, 1e-12);
    for (int64_t m = 0; m < c.modes; ++m) {
      double sq = 0;
      for (float v : w.mode_mean(k, m)) sq += static_cast<double>(v) * v;
      EXPECT_NEAR(std::sqrt(sq / D), c.mode_scale, 1e-5);  // per-element RMS = mode_scale
    }
  }
  for (float v : w.null_embedding()) EXPECT_EQ(v, 0.0f);
}

TEST(ToyWorldOracle, ClosedForm) {
  const World w(small_config());
  const WorldConfig& c = w.config();
  const int64_t D = w.latent_numel();
  // The direction is a unit vector and the target is best mode + target_offset * sigma * sqrt(D) * direction.
  long double norm = 0;
  for (float v : w.preferred_direction()) norm += static_cast<long double>(v) * v;
  EXPECT_NEAR(static_cast<double>(norm), 1.0, 1e-6);
  const CounterRng rng(99, 1);
  for (int64_t k = 0; k < c.prompts; ++k) {
    const std::vector<float>& mu = w.mode_mean(k, w.best_mode(k));
    const std::vector<float>& t = w.target(k);
    const double offset = c.target_offset * c.noise_std * std::sqrt(static_cast<double>(D));
    for (int64_t i = 0; i < D; ++i) ASSERT_NEAR(t[i], mu[i] + offset * w.preferred_direction()[i], 1e-5);
    EXPECT_EQ(w.reward(k, t.data()), 0.0);  // the maximum
    // r(t + delta) = -mean(delta^2), against a long-double reference.
    std::vector<float> x(static_cast<size_t>(D));
    long double ref = 0;
    for (int64_t i = 0; i < D; ++i) {
      x[i] = t[i] + static_cast<float>(rng.normal(static_cast<uint64_t>(k * D + i)));
      const long double d = static_cast<long double>(x[i]) - t[i];
      ref += d * d;
    }
    EXPECT_NEAR(w.reward(k, x.data()), -static_cast<double>(ref / D), 1e-12);
    // At a mode centre: -(offset^2 / D) for the best mode (the target's own distance).
    EXPECT_NEAR(w.reward(k, mu.data()), -(c.target_offset * c.noise_std) * (c.target_offset * c.noise_std), 1e-6);
    // Within the best mode, moving along the preferred direction (towards the target) raises the reward.
    std::vector<float> moved(mu);
    for (int64_t i = 0; i < D; ++i) moved[i] += static_cast<float>(0.5 * offset * w.preferred_direction()[i]);
    EXPECT_GT(w.reward(k, moved.data()), w.reward(k, mu.data()));
  }
}

TEST(ToyWorld, BaseSamplesFollowTheMixture) {
  const World w(small_config());
  const WorldConfig& c = w.config();
  const int64_t D = w.latent_numel(), n = 3000, k = 2;
  std::vector<double> count(static_cast<size_t>(c.modes), 0.0);
  double sq = 0;
  std::vector<float> x(static_cast<size_t>(D));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t m = w.sample_base(k, 123, static_cast<uint64_t>(i), x.data());
    count[static_cast<size_t>(m)] += 1;
    double d = 0;
    EXPECT_EQ(w.nearest_mode(k, x.data(), &d), m);  // modes are far apart relative to the noise
    const std::vector<float>& mu = w.mode_mean(k, m);
    for (int64_t e = 0; e < D; ++e) sq += (x[e] - mu[e]) * (x[e] - mu[e]);
  }
  for (int64_t m = 0; m < c.modes; ++m) {
    const double p = w.mode_weights(k)[static_cast<size_t>(m)];
    EXPECT_NEAR(count[static_cast<size_t>(m)] / n, p, 5.0 * std::sqrt(p * (1 - p) / n)) << m;
  }
  // E[(x - mu)^2] per element = sigma^2; se of the mean of n*D squared normals: sigma^2 sqrt(2/(nD)).
  const double var = c.noise_std * c.noise_std;
  EXPECT_NEAR(sq / (n * D), var, 5.0 * var * std::sqrt(2.0 / (n * D)));
}

TEST(ToyWorldPairs, OracleLabelsAtZeroTemperature) {
  const World w(small_config());
  const std::vector<Pair> train = w.base_train_pairs(), heldout = w.heldout_pairs();
  std::set<uint64_t> ids;
  size_t cross_mode = 0;
  for (const Pair& p : train) {
    EXPECT_FALSE(w.is_heldout(p.prompt));
    EXPECT_GE(p.reward_w, p.reward_l);
    EXPECT_EQ(p.reward_w, w.reward(p.prompt, p.latent_w.data()));
    EXPECT_EQ(p.reward_l, w.reward(p.prompt, p.latent_l.data()));
    EXPECT_EQ(p.mode_w, w.nearest_mode(p.prompt, p.latent_w.data()));
    cross_mode += p.mode_w != p.mode_l;
    ids.insert(p.pair_id);
  }
  EXPECT_GT(cross_mode, 0u);
  std::set<int64_t> heldout_prompts_seen;
  for (const Pair& p : heldout) {
    EXPECT_GE(p.reward_w, p.reward_l);
    ids.insert(p.pair_id);
    heldout_prompts_seen.insert(p.prompt);
  }
  EXPECT_EQ(ids.size(), train.size() + heldout.size());  // unique, and train/held-out disjoint
  EXPECT_EQ(static_cast<int64_t>(heldout_prompts_seen.size()), w.prompt_count());
  // Pair ids are stable: a function of (world seed, split, pair seed, index) only.
  EXPECT_EQ(train[17].pair_id, w.pair_id("train", 17));
  WorldConfig other = small_config();
  other.bt_temperature = 0.5;
  EXPECT_EQ(World(other).pair_id("train", 17), train[17].pair_id);
  other.pair_seed = 3;
  EXPECT_NE(World(other).pair_id("train", 17), train[17].pair_id);
  EXPECT_EQ(World(other).pair_id("heldout", 5), heldout[5].pair_id);
}

TEST(ToyWorldPairs, BradleyTerryFlipRateMatchesTheory) {
  for (double tau : {0.02, 0.3, 1e6}) {
    WorldConfig c = small_config();
    c.train_pairs = 4000;
    c.bt_temperature = tau;
    const World w(c);
    // A flip is a winner with the lower oracle reward: probability sigmoid(-|r_a - r_b| / tau) per pair,
    // independent across pairs, so the count is Poisson-binomial with that mean and variance.
    double expected = 0, variance = 0, flips = 0;
    for (const Pair& p : w.base_train_pairs()) {
      const double q = 1.0 / (1.0 + std::exp(std::abs(p.reward_w - p.reward_l) / tau));
      expected += q;
      variance += q * (1 - q);
      flips += p.reward_w < p.reward_l;
    }
    EXPECT_NEAR(flips, expected, 5.0 * std::sqrt(variance) + 1.0) << "tau " << tau;
    if (tau > 1e5) EXPECT_NEAR(flips / c.train_pairs, 0.5, 0.05);
  }
}

TEST(ToyWorldShards, ContentsMatchTheWorld) {
  const World w(small_config());
  const fs::path dir = fresh_dir("shard");
  const std::vector<Pair> pairs = w.base_train_pairs();
  prefdiff::toy::detail::write_pair_shard(dir / "train.h5", w, pairs, "train", "toy-world:test");
  auto shard = prefdiff::data::ShardFile::open((dir / "train.h5").string());
  const auto& info = shard->info();
  EXPECT_EQ(info.pair_count, pairs.size());
  EXPECT_EQ(info.prompt_count, w.prompt_count() + 1);
  EXPECT_EQ(info.empty_prompt, w.prompt_count());
  EXPECT_EQ(info.attributes.latent_shape, w.latent_shape());
  EXPECT_EQ(info.layout.latent_dtype, PD_DTYPE_F32);
  const auto& meta_names = info.layout.meta_columns;
  const auto column = [&](const std::string& name) {
    for (size_t i = 0; i < meta_names.size(); ++i)
      if (meta_names[i] == name) return shard->meta()[i];
    ADD_FAILURE() << "no meta column " << name;
    return std::vector<double>();
  };
  const std::vector<double> margin = column("margin"), reward_w = column("reward_w"), reward_l = column("reward_l");
  std::vector<float> row(static_cast<size_t>(w.latent_numel()));
  for (size_t i = 0; i < pairs.size(); i += 37) {
    EXPECT_EQ(shard->pair_ids()[i], pairs[i].pair_id);
    EXPECT_EQ(shard->prompts()[i], pairs[i].prompt);
    EXPECT_EQ(margin[i], std::abs(pairs[i].reward_w - pairs[i].reward_l));
    EXPECT_EQ(reward_w[i], pairs[i].reward_w);
    EXPECT_EQ(reward_l[i], pairs[i].reward_l);
    shard->read_rows(prefdiff::data::ShardTensor::kLatentW, i, 1, row.data());
    EXPECT_TRUE(same_bits(row, pairs[i].latent_w));
    shard->read_rows(prefdiff::data::ShardTensor::kLatentL, i, 1, row.data());
    EXPECT_TRUE(same_bits(row, pairs[i].latent_l));
  }
  std::vector<uint16_t> embeds(static_cast<size_t>(w.config().embed_tokens * w.config().embed_dim));
  for (int64_t k = 0; k <= w.prompt_count(); ++k) {
    shard->read_rows(prefdiff::data::ShardTensor::kEmbeds, static_cast<uint64_t>(k), 1, embeds.data());
    const std::vector<float>& e = k < w.prompt_count() ? w.prompt_embedding(k) : w.null_embedding();
    for (size_t i = 0; i < embeds.size(); ++i) ASSERT_EQ(prefdiff::data::half_to_float(embeds[i]), e[i]);
  }
  fs::remove_all(dir);
}

TEST(ToyWorldCache, OneBuilderAmongThreads) {
  const fs::path root = fresh_dir("publish");
  std::atomic<int> builds{0};
  std::vector<int> built(4, 0);
  std::vector<fs::path> got(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      bool b = false;
      got[i] = prefdiff::toy::detail::publish_once(
          root, "entry",
          [&](const fs::path& tmp) {
            ++builds;
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
            std::ofstream(tmp / "file") << "content";
          },
          &b);
      built[i] = b;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(builds.load(), 1);  // the lock serialises builders; the others find the folder
  EXPECT_EQ(built[0] + built[1] + built[2] + built[3], 1);
  for (const fs::path& p : got) EXPECT_EQ(p, root / "entry");
  EXPECT_TRUE(fs::exists(root / "entry" / "file"));
  for (const auto& e : fs::directory_iterator(root)) EXPECT_EQ(e.path().filename().string().rfind(".tmp-", 0), std::string::npos);
  fs::remove_all(root);
}

TEST(ToyWorldCache, LoserOfARenameRaceUsesTheWinner) {
  // Where flock is not honoured (some network file systems), two builders can both finish: the second
  // rename fails and that process must use the first one's folder and discard its own.
  const fs::path root = fresh_dir("race");
  bool built = true;
  const fs::path got = prefdiff::toy::detail::publish_once(
      root, "entry",
      [&](const fs::path& tmp) {
        std::ofstream(tmp / "file") << "mine";
        fs::create_directories(root / "entry");  // another process publishes meanwhile
        std::ofstream(root / "entry" / "file") << "winner";
      },
      &built);
  EXPECT_FALSE(built);
  EXPECT_EQ(got, root / "entry");
  std::ifstream in(root / "entry" / "file");
  std::string content;
  in >> content;
  EXPECT_EQ(content, "winner");
  for (const auto& e : fs::directory_iterator(root)) EXPECT_EQ(e.path().filename().string().rfind(".tmp-", 0), std::string::npos);
  // A failing builder leaves nothing behind.
  EXPECT_THROW(prefdiff::toy::detail::publish_once(
                   root, "broken", [](const fs::path&) { throw WorldError("build failed"); }, &built),
               WorldError);
  EXPECT_FALSE(fs::exists(root / "broken"));
  fs::remove_all(root);
}
