// The toy world with its reference model: deterministic pretraining, the cache (reuse, concurrent
// processes), pairs from the reference, sample quality, and the evaluation's invariants. The default run
// uses a small world; "Slow" tests (ctest label slow) check the default world.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "prefdiff/data/shard_file.hpp"
#include "prefdiff/host/plugin_registry.hpp"
#include "prefdiff/toy_world/evaluate.hpp"
#include "prefdiff/toy_world/prepare.hpp"

extern char** environ;

namespace fs = std::filesystem;
using namespace prefdiff::toy;

namespace {
// The implicit margin of DPO at beta 5000, from the dpo plugin, as `prefdiff eval` gets it from a run.
prefdiff::ObjectiveSet& dpo_margins() {
  static prefdiff::PluginRegistry registry = [] {
    prefdiff::PluginRegistry r;
    r.scan({PREFDIFF_PLUGIN_BUILD_DIR});
    return r;
  }();
  static prefdiff::ObjectiveSet objectives(nlohmann::json::array({{{"id", "dpo"}, {"beta", 5000.0}}}), registry);
  return objectives;
}
}  // namespace

namespace {

// Small enough for the default run (a few seconds of pretraining); its reference is rough, which is all
// the cache, determinism and evaluation invariants need. How well a full pretraining fits is checked on
// the default world by the slow test.
nlohmann::json small_section() {
  return {{"prompts", 4},        {"heldout_prompts", 1}, {"modes", 2},          {"train_pairs", 256},
          {"heldout_pairs", 64}, {"pretrain_steps", 60}, {"pretrain_batch", 16}};
}

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("prefdiff-toy-model-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

fs::path weights_file(const PreparedWorld& p) { return p.reference_model / "diffusion_pytorch_model.safetensors"; }

// Every pair of a shard, read back: ids, prompts, meta and both latents, as one comparable blob.
std::string shard_contents(const fs::path& path) {
  auto shard = prefdiff::data::ShardFile::open(path.string());
  std::ostringstream out;
  const auto& info = shard->info();
  std::vector<char> row(shard->row_bytes(prefdiff::data::ShardTensor::kLatentW));
  for (uint64_t i = 0; i < info.pair_count; ++i) {
    out << shard->pair_ids()[i] << ":" << shard->prompts()[i] << ":";
    for (const auto& column : shard->meta()) out << column[i] << ",";
    shard->read_rows(prefdiff::data::ShardTensor::kLatentW, i, 1, row.data());
    out.write(row.data(), static_cast<std::streamsize>(row.size()));
    shard->read_rows(prefdiff::data::ShardTensor::kLatentL, i, 1, row.data());
    out.write(row.data(), static_cast<std::streamsize>(row.size()));
  }
  return out.str();
}

struct ToolRun {
  int status = -1;
  std::string out;
};

// Starts the prepare tool without waiting; the caller collects it with finish().
pid_t start_tool(const std::string& section, const fs::path& root, const fs::path& out) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const std::string tool = PREFDIFF_TOY_PREPARE_TOOL, root_s = root.string();
  char* argv[] = {const_cast<char*>(tool.c_str()), const_cast<char*>(section.c_str()), const_cast<char*>(root_s.c_str()), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, tool.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

ToolRun finish(pid_t pid, const fs::path& out) {
  ToolRun r;
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)) r.status = WEXITSTATUS(status);
  r.out = file_bytes(out);
  return r;
}

class ToyWorldModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One intra-op thread: on a shared 2-core machine two spinning OpenMP threads run several times slower.
    at::set_num_threads(1);
    root_ = new fs::path(fresh_dir("suite"));
    PrepareOptions options;
    options.cache_root = *root_;
    const auto start = std::chrono::steady_clock::now();
    prepared_ = new PreparedWorld(prepare_world(WorldConfig::from_json(small_section()), options));
    first_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete prepared_;
    delete root_;
  }
  static fs::path* root_;
  static PreparedWorld* prepared_;
  static double first_seconds_;
};
fs::path* ToyWorldModel::root_ = nullptr;
PreparedWorld* ToyWorldModel::prepared_ = nullptr;
double ToyWorldModel::first_seconds_ = 0;

}  // namespace

TEST_F(ToyWorldModel, PreparedFilesAreComplete) {
  const PreparedWorld& p = *prepared_;
  EXPECT_TRUE(p.reference_built);
  EXPECT_TRUE(p.data_built);
  EXPECT_EQ(p.reference_dir, *root_ / ("reference-" + p.reference_key));
  EXPECT_EQ(p.data_dir, *root_ / ("data-" + p.data_key));
  EXPECT_TRUE(fs::exists(weights_file(p)));
  // The shards pass the reader's checks, carry the world's shapes, and the held-out one is exactly
  // the world's clean held-out pairs.
  auto train = prefdiff::data::ShardFile::open(p.train_shard.string());
  EXPECT_EQ(train->info().pair_count, 256u);
  EXPECT_EQ(train->info().attributes.encoder, kCodeVersion);
  auto heldout = prefdiff::data::ShardFile::open(p.heldout_shard.string());
  const World world(WorldConfig::from_json(small_section()));
  const std::vector<Pair> pairs = world.heldout_pairs();
  ASSERT_EQ(heldout->info().pair_count, pairs.size());
  std::vector<float> row(static_cast<size_t>(world.latent_numel()));
  for (size_t i = 0; i < pairs.size(); ++i) {
    EXPECT_EQ(heldout->pair_ids()[i], pairs[i].pair_id);
    heldout->read_rows(prefdiff::data::ShardTensor::kLatentW, i, 1, row.data());
    EXPECT_EQ(std::memcmp(row.data(), pairs[i].latent_w.data(), row.size() * sizeof(float)), 0);
  }
  std::cout << "small world: first prepare_world " << first_seconds_ << " s; pretraining "
            << p.pretrain_report["seconds"] << " s, final loss " << p.pretrain_report["final_loss"] << "\n";
}

TEST_F(ToyWorldModel, SecondPrepareUsesTheCache) {
  const std::string weights_before = file_bytes(weights_file(*prepared_));
  PrepareOptions options;
  options.cache_root = *root_;
  const auto start = std::chrono::steady_clock::now();
  const PreparedWorld again = prepare_world(WorldConfig::from_json(small_section()), options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_FALSE(again.reference_built);
  EXPECT_FALSE(again.data_built);
  EXPECT_EQ(again.train_shard, prepared_->train_shard);
  EXPECT_EQ(again.reference_model, prepared_->reference_model);
  EXPECT_EQ(again.pretrain_report, prepared_->pretrain_report);
  EXPECT_EQ(file_bytes(weights_file(again)), weights_before);
  EXPECT_LT(seconds, std::max(1.0, 0.1 * first_seconds_)) << "cached prepare took " << seconds << " s";
  // A pair knob changes the data but not the reference: a sweep over it pretrains once.
  nlohmann::json section = small_section();
  section["bt_temperature"] = 0.05;
  const PreparedWorld tempered = prepare_world(WorldConfig::from_json(section), options);
  EXPECT_FALSE(tempered.reference_built);
  EXPECT_TRUE(tempered.data_built);
  EXPECT_EQ(tempered.reference_key, prepared_->reference_key);
  EXPECT_NE(tempered.data_key, prepared_->data_key);
}

TEST_F(ToyWorldModel, PretrainingIsBitIdenticalFromTheSameSeed) {
  const fs::path other = fresh_dir("again");
  PrepareOptions options;
  options.cache_root = other;
  const PreparedWorld p = prepare_world(WorldConfig::from_json(small_section()), options);
  EXPECT_TRUE(p.reference_built);
  EXPECT_EQ(p.reference_key, prepared_->reference_key);
  EXPECT_EQ(file_bytes(weights_file(p)), file_bytes(weights_file(*prepared_)));
  EXPECT_EQ(p.pretrain_report["loss_curve"], prepared_->pretrain_report["loss_curve"]);
  EXPECT_EQ(shard_contents(p.train_shard), shard_contents(prepared_->train_shard));
  EXPECT_EQ(shard_contents(p.heldout_shard), shard_contents(prepared_->heldout_shard));
  fs::remove_all(other);
}

TEST_F(ToyWorldModel, ConcurrentProcessesShareOneBuild) {
  const fs::path root = fresh_dir("concurrent");
  const std::string section = small_section().dump();
  const pid_t a = start_tool(section, root, root.parent_path() / (root.filename().string() + ".a.json"));
  const pid_t b = start_tool(section, root, root.parent_path() / (root.filename().string() + ".b.json"));
  ASSERT_GT(a, 0);
  ASSERT_GT(b, 0);
  const ToolRun ra = finish(a, root.parent_path() / (root.filename().string() + ".a.json"));
  const ToolRun rb = finish(b, root.parent_path() / (root.filename().string() + ".b.json"));
  ASSERT_EQ(ra.status, 0) << ra.out;
  ASSERT_EQ(rb.status, 0) << rb.out;
  // The tool's JSON is its last stdout line (log lines come before it).
  const auto last_line = [](const std::string& out) {
    const size_t end = out.find_last_not_of('\n');
    const size_t begin = out.rfind('\n', end);
    return out.substr(begin == std::string::npos ? 0 : begin + 1, end == std::string::npos ? 0 : end - (begin == std::string::npos ? 0 : begin + 1) + 1);
  };
  const nlohmann::json ja = nlohmann::json::parse(last_line(ra.out)), jb = nlohmann::json::parse(last_line(rb.out));
  EXPECT_EQ(ja["reference_key"], jb["reference_key"]);
  EXPECT_EQ(ja["train_shard"], jb["train_shard"]);
  EXPECT_EQ(ja["reference_built"].get<bool>() + jb["reference_built"].get<bool>(), 1) << ra.out << rb.out;
  EXPECT_EQ(ja["data_built"].get<bool>() + jb["data_built"].get<bool>(), 1);
  for (const auto& e : fs::directory_iterator(root)) EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << e.path();
  // Built in another process, the same bytes as in this one.
  EXPECT_EQ(file_bytes(fs::path(ja["reference_model"].get<std::string>()) / "diffusion_pytorch_model.safetensors"),
            file_bytes(weights_file(*prepared_)));
  EXPECT_EQ(shard_contents(ja["train_shard"].get<std::string>()), shard_contents(prepared_->train_shard));
  fs::remove_all(root);
  fs::remove(root.parent_path() / (root.filename().string() + ".a.json"));
  fs::remove(root.parent_path() / (root.filename().string() + ".b.json"));
}

TEST_F(ToyWorldModel, ReferenceSamplesLandNearTheModes) {
  const World world(WorldConfig::from_json(small_section()));
  const nlohmann::json& q = prepared_->pretrain_report["sample_quality"];
  const double var = world.config().noise_std * world.config().noise_std;
  // An untrained UNet with the same config and seed, sampled the same way: the scale of "not learned".
  at::manual_seed(0);
  const auto untrained = prefdiff::BackboneRegistry::instance().create("unet2d", reference_unet_config(world.config()));
  const nlohmann::json u = sample_quality(*untrained, world, 8, 20, 0);
  std::cout << "small world reference: mean squared distance to nearest mode " << q["mean_sq_distance"] << " (base "
            << var << ", untrained " << u["mean_sq_distance"] << "), mode TV " << q["mode_tv"] << "\n";
  // 60 steps only learn the coarse picture (the slow test bounds a full pretraining by 2 sigma^2): ask for
  // a fivefold improvement over the untrained network (measured: about 15x), and the right modes in
  // roughly the right shares.
  EXPECT_LT(q["mean_sq_distance"].get<double>(), 0.2 * u["mean_sq_distance"].get<double>());
  EXPECT_LT(q["mode_tv"].get<double>(), 0.3);
}

TEST_F(ToyWorldModel, PolicyEqualToReferenceTiesExactly) {
  const World world(WorldConfig::from_json(small_section()));
  auto reference = load_reference(*prepared_);
  auto policy = load_reference(*prepared_);  // separate instance, same weights
  EvalConfig cfg;
  cfg.samples_per_prompt = 6;
  cfg.steps = 6;
  cfg.batch_size = 8;  // several batches
  for (prefdiff::Backbone* p : {policy.get(), reference.get()}) {
    const nlohmann::json r = evaluate(*p, *reference, world, cfg, dpo_margins());
    EXPECT_EQ(r["win_rate"].get<double>(), 0.5);
    EXPECT_EQ(r["reward_gain"].get<double>(), 0.0);
    EXPECT_EQ(r["implicit_accuracy"].get<double>(), 0.5);  // h = 0 on every pair: ties count half
    EXPECT_EQ(r["implicit_margin"].get<double>(), 0.0);
    EXPECT_EQ(r["mode_entropy/policy"], r["mode_entropy/reference"]);
    EXPECT_EQ(r["samples"].get<int64_t>(), 4 * 6);
    EXPECT_EQ(r["pairs"].get<int64_t>(), 64);
    EXPECT_EQ(r["train_prompts/win_rate"].get<double>(), 0.5);
    EXPECT_EQ(r["heldout_prompts/win_rate"].get<double>(), 0.5);
    EXPECT_EQ(r["per_prompt"].size(), 4u);
  }
}

TEST_F(ToyWorldModel, EvaluationMatchesAnIndependentScoring) {
  const World world(WorldConfig::from_json(small_section()));
  auto reference = load_reference(*prepared_);
  at::manual_seed(0);
  auto untrained = prefdiff::BackboneRegistry::instance().create("unet2d", reference_unet_config(world.config()));
  EvalConfig cfg;
  cfg.samples_per_prompt = 8;
  cfg.steps = 10;
  cfg.prompts = "train";
  cfg.guidance_scale = 3.0;
  const nlohmann::json r = evaluate(*untrained, *reference, world, cfg, dpo_margins());
  // Recompute the reference's mean reward from its own samples: same noise stream and indices.
  std::vector<int64_t> prompts;
  std::vector<uint64_t> index;
  for (int64_t k : world.train_prompts())
    for (int64_t j = 0; j < 8; ++j) {
      prompts.push_back(k);
      index.push_back((static_cast<uint64_t>(k) << 32) | static_cast<uint64_t>(j));
    }
  const std::vector<float> x = sample_model(*reference, world, prompts, stream_id("eval-noise", 0), index, 10, 3.0);
  double mean = 0;
  for (size_t i = 0; i < prompts.size(); ++i) mean += world.reward(prompts[i], x.data() + i * world.latent_numel()) / prompts.size();
  EXPECT_NEAR(r["reward/reference"].get<double>(), mean, 1e-12);
  // Samples of an untrained network are far from every mode: it loses to the reference nearly always.
  EXPECT_LT(r["win_rate"].get<double>(), 0.1);
  EXPECT_LT(r["reward_gain"].get<double>(), 0.0);
  EXPECT_FALSE(r.contains("heldout_prompts/win_rate"));
  EXPECT_TRUE(r.contains("heldout_prompts/implicit_accuracy"));  // held-out pairs cover every prompt
}

TEST_F(ToyWorldModel, PairsFromTheReferenceModel) {
  nlohmann::json section = small_section();
  section["pair_source"] = "reference";
  section["train_pairs"] = 48;
  PrepareOptions options;
  options.cache_root = *root_;
  const PreparedWorld p = prepare_world(WorldConfig::from_json(section), options);
  EXPECT_FALSE(p.reference_built);
  const World world(WorldConfig::from_json(section));
  auto shard = prefdiff::data::ShardFile::open(p.train_shard.string());
  ASSERT_EQ(shard->info().pair_count, 48u);
  std::vector<float> w(static_cast<size_t>(world.latent_numel())), l(w.size());
  const auto& names = shard->info().layout.meta_columns;
  const size_t reward_w = static_cast<size_t>(std::find(names.begin(), names.end(), "reward_w") - names.begin());
  for (uint64_t i = 0; i < 48; ++i) {
    shard->read_rows(prefdiff::data::ShardTensor::kLatentW, i, 1, w.data());
    shard->read_rows(prefdiff::data::ShardTensor::kLatentL, i, 1, l.data());
    const int64_t k = shard->prompts()[i];
    EXPECT_FALSE(world.is_heldout(k));
    EXPECT_GE(world.reward(k, w.data()), world.reward(k, l.data()));
    EXPECT_EQ(shard->meta()[reward_w][i], world.reward(k, w.data()));
  }
}

// The default world, as the lead's sweeps use it: pretraining cost and how well the reference fits.
TEST(ToyWorldModelSlow, DefaultWorldReference) {
  at::set_num_threads(1);
  const fs::path root = fresh_dir("default");
  PrepareOptions options;
  options.cache_root = root;
  const WorldConfig config = WorldConfig::from_json(nlohmann::json::object());
  const PreparedWorld p = prepare_world(config, options);
  const nlohmann::json& q = p.pretrain_report["sample_quality"];
  const double var = config.noise_std * config.noise_std;
  std::cout << "default world: pretraining " << p.pretrain_report["seconds"] << " s (one thread), final loss " << p.pretrain_report["final_loss"] << "; samples' mean squared distance to nearest mode "
            << q["mean_sq_distance"] << " (base " << var << "), max " << q["max_sq_distance"] << ", mode TV " << q["mode_tv"] << "\n";
  EXPECT_LT(q["mean_sq_distance"].get<double>(), 2.0 * var);
  EXPECT_LT(q["mode_tv"].get<double>(), 0.2);
  const World world(config);
  auto reference = load_reference(p);
  EvalConfig cfg;
  const nlohmann::json r = evaluate(*reference, *reference, world, cfg, dpo_margins());
  EXPECT_EQ(r["win_rate"].get<double>(), 0.5);
  fs::remove_all(root);
}
