// `prefdiff train` end to end on a tiny synthetic world: exact resume after SIGKILL, refusals on resume,
// two Gloo ranks against one process, a dying rank, and the NaN policy.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "prefdiff/model_io/safetensors.hpp"
#include "../common/prefdiff_process.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const std::string kRecipe = std::string(TEST_RECIPES_DIR) + "/tiny.toml";

fs::path fresh_dir(const std::string& name) { return prefdiff::testing::fresh_dir("prefdiff_train", name); }

// `prefdiff --plugin-path <test plugins> ARGS`, with the tests' world cache.
pid_t spawn(const std::vector<std::string>& args, const fs::path& log, std::vector<std::string> env = {}) {
  std::vector<std::string> argv{"--plugin-path", TEST_PLUGIN_DIR};
  argv.insert(argv.end(), args.begin(), args.end());
  env.push_back(std::string("PREFDIFF_CACHE=") + TEST_CACHE_DIR);
  return prefdiff::testing::spawn(PREFDIFF_EXE, argv, log, env);
}

using prefdiff::testing::wait_exit;

int run(const std::vector<std::string>& args, const fs::path& log, const std::vector<std::string>& env = {}) {
  return wait_exit(spawn(args, log, env));
}

std::string read(const fs::path& path) { return prefdiff::testing::read_file(path); }

// metrics.jsonl rows without the wall-clock keys.
std::vector<nlohmann::json> metric_rows(const fs::path& run) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json row = nlohmann::json::parse(line);
    row.erase("pairs_per_s");
    row.erase("data_wait_frac");
    rows.push_back(row);
  }
  return rows;
}

fs::path final_weights(const fs::path& run, int step) {
  return run / "checkpoints" / ("step-" + std::string(8 - std::to_string(step).size(), '0') + std::to_string(step)) /
         "unet" / "diffusion_pytorch_model.safetensors";
}

std::vector<std::string> train_args(const fs::path& out, const std::string& name, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"train", kRecipe, "run.output_dir=" + out.string(), "run.name=" + name};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

}  // namespace

TEST(Training, ResumeAfterSigkillIsBitIdentical) {
  // Hoelder-DPO keeps a running contamination estimate (plugin state, logged as eps_hat_running): the
  // resumed run must restore it from the checkpoint for the metrics to match.
  const std::vector<std::string> holder{"objective.id=holder-dpo"};
  const fs::path out = fresh_dir("resume");
  ASSERT_EQ(run(train_args(out, "straight", holder), out / "straight.log"), 0) << read(out / "straight.log");

  // Same recipe, killed right after its step-4 checkpoint, then resumed.
  const pid_t pid = spawn(train_args(out, "killed", holder), out / "killed.log");
  const fs::path marker = out / "killed" / "checkpoints" / "step-00000004" / "checkpoint.json";
  const auto deadline = std::chrono::steady_clock::now() + 600s;
  while (!fs::exists(marker) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
  kill(pid, SIGKILL);
  ASSERT_EQ(wait_exit(pid), 128 + SIGKILL) << "the run finished before it could be killed:\n" << read(out / "killed.log");
  ASSERT_FALSE(fs::exists(final_weights(out / "killed", 12)));
  std::vector<std::string> resume = train_args(out, "killed", holder);
  resume.push_back("--resume");
  resume.push_back("latest");
  ASSERT_EQ(run(resume, out / "resumed.log"), 0) << read(out / "resumed.log");

  const auto a = metric_rows(out / "straight"), b = metric_rows(out / "killed");
  ASSERT_EQ(a.size(), b.size()) << read(out / "killed" / "metrics.jsonl");
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "metrics row " << i;
  const bool has_state_metric = std::any_of(a.begin(), a.end(), [](const nlohmann::json& row) {
    return row.contains("eps_hat_running") && !row.contains("eval/loss");
  });
  EXPECT_TRUE(has_state_metric) << "the plugin-state metric eps_hat_running is not logged";
  EXPECT_EQ(read(final_weights(out / "straight", 12)), read(final_weights(out / "killed", 12)))
      << "final weights differ";
}

// LoRA: resume after SIGKILL is bit-identical (adapters, their optimizer state, dropout masks); the
// checkpoint holds diffusers' LoRA file and no UNet; the reference (the policy with its adapters off) gives
// exactly the reference errors of a full fine-tuning run on the same batches.
TEST(Training, LoraResumeAfterSigkillIsBitIdenticalAndItsReferenceIsTheBase) {
  const std::vector<std::string> lora{"lora.rank=4", "lora.alpha=8", "lora.dropout=0.1", "optim.lr=1e-3"};
  const fs::path out = fresh_dir("lora_resume");
  ASSERT_EQ(run(train_args(out, "straight", lora), out / "straight.log"), 0) << read(out / "straight.log");
  const pid_t pid = spawn(train_args(out, "killed", lora), out / "killed.log");
  const fs::path marker = out / "killed" / "checkpoints" / "step-00000004" / "checkpoint.json";
  const auto deadline = std::chrono::steady_clock::now() + 600s;
  while (!fs::exists(marker) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
  kill(pid, SIGKILL);
  ASSERT_EQ(wait_exit(pid), 128 + SIGKILL) << "the run finished before it could be killed:\n" << read(out / "killed.log");
  std::vector<std::string> resume = train_args(out, "killed", lora);
  resume.push_back("--resume");
  resume.push_back("latest");
  ASSERT_EQ(run(resume, out / "resumed.log"), 0) << read(out / "resumed.log");

  const auto a = metric_rows(out / "straight"), b = metric_rows(out / "killed");
  ASSERT_EQ(a.size(), b.size()) << read(out / "killed" / "metrics.jsonl");
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "metrics row " << i;
  const fs::path last = out / "straight" / "checkpoints" / "step-00000012";
  EXPECT_FALSE(fs::exists(last / "unet")) << "a LoRA checkpoint holds the adapters, not the UNet";
  EXPECT_EQ(read(last / "pytorch_lora_weights.safetensors"),
            read(out / "killed" / "checkpoints" / "step-00000012" / "pytorch_lora_weights.safetensors"))
      << "final adapters differ";

  // export --merge-lora: adapted layers are W + (alpha/r) up @ down, the others the base's exactly.
  const fs::path merged = out / "merged";
  ASSERT_EQ(run({"export", (out / "straight").string(), "-o", merged.string(), "--merge-lora"}, out / "export.log"), 0)
      << read(out / "export.log");
  EXPECT_NE(run({"export", (out / "straight").string(), "-o", merged.string(), "--merge-lora"}, out / "export2.log"), 0)
      << "export must not overwrite a folder";
  {
    const nlohmann::json meta = nlohmann::json::parse(read(out / "straight" / "run.json"));
    const fs::path base_dir = meta["data_source"]["attributes"]["reference_model"].get<std::string>();
    const auto base = prefdiff::model_io::SafetensorsFile::open(base_dir / "diffusion_pytorch_model.safetensors");
    const auto got = prefdiff::model_io::SafetensorsFile::open(merged / "diffusion_pytorch_model.safetensors");
    const auto adapters = prefdiff::model_io::SafetensorsFile::open(last / "pytorch_lora_weights.safetensors");
    int adapted = 0;
    for (const std::string& name : base.names()) {
      const std::string module = name.substr(0, name.rfind('.'));
      const std::string down = "unet." + module + ".lora.down.weight";
      if (adapters.contains(down) && name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0) {
        const at::Tensor expected = base.load(name, at::kDouble) +
                                    2.0 * at::matmul(adapters.load("unet." + module + ".lora.up.weight", at::kDouble),
                                                     adapters.load(down, at::kDouble));  // alpha 8 / r 4
        EXPECT_TRUE(at::allclose(got.load(name, at::kDouble), expected, 1e-6, 1e-7)) << name;
        ++adapted;
      } else {
        EXPECT_TRUE(at::equal(got.load(name), base.load(name))) << name << " is not adapted and must be the base's";
      }
    }
    EXPECT_GT(adapted, 0);
  }

  // The same batches with full fine-tuning: the reference errors match row by row, the policy's move apart.
  ASSERT_EQ(run(train_args(out, "full", {"optim.lr=1e-3"}), out / "full.log"), 0) << read(out / "full.log");
  const auto f = metric_rows(out / "full");
  ASSERT_EQ(f.size(), a.size());
  int compared = 0;
  bool policy_differs = false;
  for (size_t i = 0; i < a.size(); ++i)
    for (const char* key : {"mse/ref_w", "mse/ref_l", "eval/mse/ref_w", "eval/mse/ref_l"})
      if (a[i].contains(key)) {
        EXPECT_EQ(a[i][key], f[i][key]) << key << " row " << i;
        ++compared;
        policy_differs |= a[i].contains("mse/model_w") && a[i]["mse/model_w"] != f[i]["mse/model_w"];
      }
  EXPECT_GT(compared, 10);
  EXPECT_TRUE(policy_differs) << "LoRA and full fine-tuning trained the same policy";
}

TEST(Training, ResumeRefusesAMissingCheckpointAndAnotherRecipe) {
  const fs::path out = fresh_dir("refuse");
  std::vector<std::string> args = train_args(out, "nothing");
  args.push_back("--resume");
  args.push_back("latest");
  EXPECT_NE(run(args, out / "missing.log"), 0);
  EXPECT_NE(read(out / "missing.log").find("nothing"), std::string::npos) << read(out / "missing.log");

  ASSERT_EQ(run(train_args(out, "first", {"train.steps=4"}), out / "first.log"), 0) << read(out / "first.log");
  std::vector<std::string> other = train_args(out, "first", {"train.steps=8", "objective.beta=100"});
  other.push_back("--resume");
  other.push_back("latest");
  EXPECT_NE(run(other, out / "other.log"), 0);
  EXPECT_NE(read(out / "other.log").find("objective[0].beta"), std::string::npos) << read(out / "other.log");

  // A fresh start in an existing run folder is refused too: nothing is overwritten.
  EXPECT_NE(run(train_args(out, "first", {"train.steps=4"}), out / "again.log"), 0);
  EXPECT_NE(read(out / "again.log").find("--resume"), std::string::npos) << read(out / "again.log");
}

// The toy world trains its own reference UNet: another weight source is refused by name, not ignored
// (a pretrained folder used to leave the world unprepared and crash). A damaged trainer_state.json names
// the file and the way out.
TEST(Training, RefusesAnotherBackboneSourceAndADamagedTrainerState) {
  const fs::path out = fresh_dir("sources");
  EXPECT_NE(run(train_args(out, "pre", {"backbone.pretrained=\"/nonexistent\""}), out / "pre.log"), 0);
  EXPECT_NE(read(out / "pre.log").find("HINT: remove backbone.pretrained"), std::string::npos) << read(out / "pre.log");
  EXPECT_NE(run(train_args(out, "cfg", {"backbone.config=\"/nonexistent.json\""}), out / "cfg.log"), 0);
  EXPECT_NE(read(out / "cfg.log").find("HINT: remove backbone.config"), std::string::npos) << read(out / "cfg.log");

  ASSERT_EQ(run(train_args(out, "run", {"train.steps=4"}), out / "run.log"), 0) << read(out / "run.log");
  const fs::path state = out / "run" / "checkpoints" / "step-00000004" / "trainer_state.json";
  ASSERT_TRUE(fs::exists(state));
  // Same length, so the checkpoint's size marker still matches and the parse is what fails.
  std::string text = read(state);
  const size_t at = text.find("\"epoch\"");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 7, "\"epocx\"");
  std::ofstream(state) << text;
  std::vector<std::string> resume = train_args(out, "run", {"train.steps=8"});
  resume.push_back("--resume");
  resume.push_back("latest");
  EXPECT_NE(run(resume, out / "resume.log"), 0);
  const std::string log = read(out / "resume.log");
  EXPECT_NE(log.find("trainer_state.json is incomplete or damaged"), std::string::npos) << log;
  EXPECT_NE(log.find("HINT: resume from a checkpoint written by prefdiff train"), std::string::npos) << log;
}

TEST(Training, TwoGlooRanksMatchOneProcessWithTheSameGlobalBatch) {
  const fs::path out = fresh_dir("ranks");
  ASSERT_EQ(run(train_args(out, "one", {"train.steps=3", "train.batch_size=4", "eval.every=0"}), out / "one.log"), 0)
      << read(out / "one.log");
  std::vector<std::string> launch{"launch", "--nproc", "2", "--"};
  for (const std::string& a : train_args(out, "two", {"train.steps=3", "train.batch_size=2", "eval.every=0"}))
    launch.push_back(a);
  ASSERT_EQ(run(launch, out / "two.log"), 0) << read(out / "two.log");

  // Compare the weight updates from the common start (the world's pretrained reference): identical up to
  // the order of floating-point sums, which Adam's normalisation can amplify for near-zero gradients.
  const nlohmann::json meta = nlohmann::json::parse(read(out / "one" / "run.json"));
  // The data source's model (the synthetic world's pretrained reference), as run.json records it.
  const fs::path start =
      fs::path(meta.at("data_source").at("attributes").at("reference_model").get<std::string>()) /
      "diffusion_pytorch_model.safetensors";
  const auto init = prefdiff::model_io::SafetensorsFile::open(start);
  const auto one = prefdiff::model_io::SafetensorsFile::open(final_weights(out / "one", 3));
  const auto two = prefdiff::model_io::SafetensorsFile::open(final_weights(out / "two", 3));
  double update = 0.0, difference = 0.0;
  for (const std::string& name : init.names()) {
    const at::Tensor a = one.load(name).to(torch::kFloat64) - init.load(name).to(torch::kFloat64);
    const at::Tensor b = two.load(name).to(torch::kFloat64) - init.load(name).to(torch::kFloat64);
    update += a.pow(2).sum().item<double>();
    difference += (a - b).pow(2).sum().item<double>();
  }
  ASSERT_GT(update, 0.0) << "training changed nothing";
  EXPECT_LT(std::sqrt(difference / update), 1e-3) << "relative difference of the updates";
}

TEST(Training, ADeadRankEndsTheOtherWithAnErrorNotAHang) {
  const fs::path out = fresh_dir("dead");
  const std::vector<std::string> env_common{"WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29731"};
  const std::vector<std::string> args = train_args(out, "dead", {"train.steps=400", "distributed.timeout_s=10", "eval.every=0"});
  std::vector<std::string> env0 = env_common, env1 = env_common;
  env0.push_back("RANK=0");
  env1.push_back("RANK=1");
  const pid_t rank0 = spawn(args, out / "rank0.log", env0);
  const pid_t rank1 = spawn(args, out / "rank1.log", env1);
  const fs::path metrics = out / "dead" / "metrics.jsonl";
  const auto deadline = std::chrono::steady_clock::now() + 600s;
  while ((!fs::exists(metrics) || fs::file_size(metrics) == 0) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  kill(rank1, SIGKILL);
  wait_exit(rank1);
  const auto killed_at = std::chrono::steady_clock::now();
  const int code = wait_exit(rank0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  EXPECT_NE(code, 0) << read(out / "rank0.log");
  EXPECT_LT(seconds, 60.0) << "rank 0 took too long to notice";
  EXPECT_NE(read(out / "rank0.log").find("rank"), std::string::npos) << read(out / "rank0.log");
}

TEST(Training, NanPolicyStopsOrSkips) {
  const fs::path out = fresh_dir("nan");
  EXPECT_NE(run(train_args(out, "stop", {"objective.id=nan-at-step", "train.steps=4", "train.nan_policy=stop"}),
                out / "stop.log"),
            0);
  EXPECT_NE(read(out / "stop.log").find("step 2"), std::string::npos) << read(out / "stop.log");
  EXPECT_NE(read(out / "stop.log").find("nan_policy"), std::string::npos) << read(out / "stop.log");

  ASSERT_EQ(run(train_args(out, "skip", {"objective.id=nan-at-step", "train.steps=4", "train.nan_policy=skip"}),
                out / "skip.log"),
            0)
      << read(out / "skip.log");
  const auto rows = metric_rows(out / "skip");
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.back()["skipped_steps"], 1.0);

  // Issue 20: skipping every step ended "done" with status 0; the weights never changed, so it is a failure.
  EXPECT_NE(run(train_args(out, "all", {"objective.id=nan-at-step", "objective.nan_step=-1", "train.steps=3",
                                        "train.nan_policy=skip"}),
                out / "all.log"),
            0);
  const std::string all = read(out / "all.log");
  EXPECT_NE(all.find("every step trained here (steps 0 to 2) was skipped"), std::string::npos) << all;
  EXPECT_EQ(all.find("done: "), std::string::npos) << all;
}

// A plugin that crashes or exits during training is named with the call in flight and the last complete
// checkpoint, and an exit the host did not ask for never ends `train` with status 0.
TEST(Training, APluginThatTakesTheProcessDownIsNamedWithTheLastCheckpoint) {
  const fs::path out = fresh_dir("faults");
  const std::string plugins = std::string(TEST_MISBEHAVING_ROOT);
  auto train = [&](const std::string& folder, const std::string& id, const std::string& name) {
    std::vector<std::string> args{"--plugin-path", plugins + "/" + folder};
    for (const std::string& a : train_args(out, name, {"objective.id=" + id, "objective.at_step=5", "eval.every=0"}))
      args.push_back(a);
    return run(args, out / (name + ".log"));
  };
  EXPECT_EQ(train("misbehaving_segv", "misbehaving-segv", "segv"), 128 + SIGSEGV) << read(out / "segv.log");
  std::string log = read(out / "segv.log");
  for (const char* part : {"fatal signal SIGSEGV", "objective 'misbehaving-segv'", "during evaluate()",
                           "last complete checkpoint: ", "step-00000004"})
    EXPECT_NE(log.find(part), std::string::npos) << part << "\n" << log;

  EXPECT_EQ(train("misbehaving_exit", "misbehaving-exit", "exit"), 4) << read(out / "exit.log");
  log = read(out / "exit.log");
  for (const char* part : {"objective 'misbehaving-exit'", "called exit(0) during evaluate()", "step-00000004"})
    EXPECT_NE(log.find(part), std::string::npos) << part << "\n" << log;
  EXPECT_FALSE(fs::exists(final_weights(out / "exit", 12)));
}

// A recipe whose objectives all declare PD_CAP_REFERENCE_FREE (MaPO) builds no reference UNet: run.json
// records no reference weights, the log says so, and no reference MSE is logged; DPO keeps its reference,
// as large as the policy. SDPO's run records that the step computes the error inner products, and trains.
TEST(Training, AReferenceFreeRecipeAllocatesNoReferenceUnet) {
  const fs::path out = fresh_dir("reference_free");
  const std::vector<std::string> short_run{"train.steps=2", "train.checkpoint_every=2", "eval.every=2"};
  auto train = [&](const std::string& name, std::vector<std::string> extra) {
    extra.insert(extra.end(), short_run.begin(), short_run.end());
    const int code = run(train_args(out, name, extra), out / (name + ".log"));
    EXPECT_EQ(code, 0) << read(out / (name + ".log"));
    return nlohmann::json::parse(read(out / name / "run.json"));
  };
  const nlohmann::json mapo = train("mapo", {"objective.id=mapo"});
  EXPECT_FALSE(mapo.at("reference").at("built").get<bool>()) << mapo.dump(2);
  EXPECT_EQ(mapo.at("reference").at("parameters").get<int64_t>(), 0);
  EXPECT_FALSE(mapo.at("error_inner_products").get<bool>());
  EXPECT_NE(read(out / "mapo.log").find("reference: none"), std::string::npos) << read(out / "mapo.log");
  const auto rows = metric_rows(out / "mapo");
  ASSERT_FALSE(rows.empty());
  bool validated = false;
  for (const nlohmann::json& row : rows) {
    EXPECT_TRUE(row.contains("mse/model_w") || row.contains("eval/loss")) << row.dump();
    EXPECT_FALSE(row.contains("mse/ref_w") || row.contains("eval/mse/ref_w")) << "a reference MSE was logged: " << row.dump();
    validated = validated || row.contains("eval/loss");
  }
  EXPECT_TRUE(validated) << "no validation row";

  const nlohmann::json dpo = train("dpo", {});
  EXPECT_TRUE(dpo.at("reference").at("built").get<bool>());
  const auto weights = prefdiff::model_io::SafetensorsFile::open(final_weights(out / "dpo", 2));
  int64_t policy_parameters = 0;
  for (const std::string& name : weights.names()) policy_parameters += weights.load(name).numel();
  EXPECT_EQ(dpo.at("reference").at("parameters").get<int64_t>(), policy_parameters);

  const nlohmann::json sdpo = train("sdpo", {"objective.id=sdpo", "objective.beta=5000"});
  EXPECT_TRUE(sdpo.at("error_inner_products").get<bool>());
  EXPECT_TRUE(sdpo.at("reference").at("built").get<bool>());
  const auto sdpo_rows = metric_rows(out / "sdpo");
  const bool has_lambda = std::any_of(sdpo_rows.begin(), sdpo_rows.end(), [](const nlohmann::json& row) {
    return row.contains("lambda") && row["lambda"].get<double>() >= 0.0 && row["lambda"].get<double>() <= 1.0;
  });
  EXPECT_TRUE(has_lambda) << "sdpo's lambda diagnostic is not logged";
}
