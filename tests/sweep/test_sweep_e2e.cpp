// `prefdiff eval` and `prefdiff sweep` end to end with the real executable on a tiny synthetic world:
// refusals, bit-identical evaluation of the same recipe and seed, and a killed sweep that resumes without
// redoing finished jobs.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../common/prefdiff_process.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const std::string kTiny = std::string(TEST_TRAIN_RECIPES_DIR) + "/tiny.toml";

fs::path fresh_dir(const std::string& name) { return prefdiff::testing::fresh_dir("prefdiff_sweep_e2e", name); }

pid_t spawn(const std::vector<std::string>& args, const fs::path& log) {
  return prefdiff::testing::spawn(PREFDIFF_EXE, args, log, {std::string("PREFDIFF_CACHE=") + TEST_CACHE_DIR});
}

using prefdiff::testing::wait_exit;

int run(const std::vector<std::string>& args, const fs::path& log) { return wait_exit(spawn(args, log)); }

std::string read(const fs::path& path) { return prefdiff::testing::read_file(path); }

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

bool process_alive(pid_t pid) { return ::kill(pid, 0) == 0; }

// Overwrites elements of a float32 tensor in a safetensors file in place (sizes unchanged, so a
// checkpoint's marker still holds): a deliberately damaged model. No elements given: all of them.
void poke_float32(const fs::path& file, const std::string& tensor, std::vector<size_t> elements, float value) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t header_size = 0;
  f.read(reinterpret_cast<char*>(&header_size), 8);
  std::string header(header_size, '\0');
  f.read(header.data(), static_cast<std::streamsize>(header_size));
  const nlohmann::json h = nlohmann::json::parse(header);
  ASSERT_EQ(h.at(tensor).at("dtype"), "F32") << file;
  const uint64_t begin = h.at(tensor).at("data_offsets")[0].get<uint64_t>();
  const uint64_t end = h.at(tensor).at("data_offsets")[1].get<uint64_t>();
  if (elements.empty())
    for (size_t e = 0; e < (end - begin) / 4; ++e) elements.push_back(e);
  for (size_t e : elements) {
    ASSERT_LT(4 * e, end - begin) << tensor;
    f.seekp(static_cast<std::streamoff>(8 + header_size + begin + 4 * e));
    f.write(reinterpret_cast<const char*>(&value), 4);
  }
  ASSERT_TRUE(f.good()) << file;
}

}  // namespace

TEST(Eval, RefusesRunsWithoutTheSyntheticWorld) {
  const fs::path dir = fresh_dir("nontoy");
  write(dir / "run/recipe.json",
        R"({"data": {"id": "hdf5-pairs"}, "objective": [{"id": "dpo", "beta": 5000}], "train": {"steps": 1, "threads": 1},
            "eval": {"pairs": 8}, "run": {"seed": 0}, "backbone": {"id": "unet2d"}, "noise": {"id": "none"}})");
  EXPECT_EQ(run({"eval", (dir / "run").string()}, dir / "log"), 1);
  const std::string log = read(dir / "log");
  EXPECT_NE(log.find("needs the synthetic world's oracle reward ([data] id = \"toy-world\")"), std::string::npos) << log;
  EXPECT_NE(log.find("not part of prefdiff yet"), std::string::npos) << log;
  EXPECT_EQ(run({"eval", (dir / "nowhere").string()}, dir / "log"), 1);
  EXPECT_NE(read(dir / "log").find("does not exist"), std::string::npos);
  fs::remove_all(dir);
}

TEST(Sweep, InvalidKeysAreRefusedBeforeAnythingRuns) {
  const fs::path dir = fresh_dir("invalid");
  write(dir / "s.toml", "[sweep]\nrecipe = \"" + kTiny + "\"\noutput_dir = \"" + (dir / "out").string() +
                            "\"\n[sweep.set]\n\"train.stepz\" = 3\n[sweep.grid]\nrun.seed = [0, 1]\n");
  EXPECT_EQ(run({"sweep", (dir / "s.toml").string()}, dir / "log"), 3);
  const std::string log = read(dir / "log");
  EXPECT_NE(log.find("did you mean 'steps'"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir / "out/runs")) << "nothing runs";
  write(dir / "bad.toml", "[sweep]\nrecipe = \"x.toml\"\nthreds = 2\n");
  EXPECT_EQ(run({"sweep", (dir / "bad.toml").string()}, dir / "log"), 3);
  EXPECT_NE(read(dir / "log").find("did you mean 'threads'"), std::string::npos) << read(dir / "log");
  fs::remove_all(dir);
}

// Same recipe and seed, two separate runs on the CPU: the same eval.json, byte for byte.
TEST(Eval, SameRecipeAndSeedGiveBitIdenticalResults) {
  const fs::path dir = fresh_dir("identical");
  for (const std::string name : {"a", "b"}) {
    ASSERT_EQ(run({"train", kTiny, "run.output_dir=" + dir.string(), "run.name=" + name, "train.threads=1", "run.seed=3",
                   "log.progress=\"off\""},
                  dir / ("train-" + name + ".log")),
              0)
        << read(dir / ("train-" + name + ".log"));
    ASSERT_EQ(run({"eval", (dir / name).string(), "samples_per_prompt=6", "steps=4", "eval.seed=1"}, dir / ("eval-" + name + ".log")), 0)
        << read(dir / ("eval-" + name + ".log"));
  }
  const std::string a = read(dir / "a/eval.json"), b = read(dir / "b/eval.json");
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  const nlohmann::json e = nlohmann::json::parse(a);
  EXPECT_EQ(e["format"], "prefdiff-eval");
  EXPECT_EQ(e["step"], 12);
  EXPECT_EQ(e["checkpoint"], "checkpoints/step-00000012");
  EXPECT_EQ(e["samples"], 6 * 4);  // tiny world: 4 prompts
  EXPECT_GE(e["win_rate"].get<double>(), 0.0);
  EXPECT_LE(e["win_rate"].get<double>(), 1.0);
  EXPECT_EQ(e["config"]["beta"], e["objective"][0]["beta"]) << "the implicit margin uses the objective's beta";
  EXPECT_NE(read(dir / "eval-a.log").find("win rate"), std::string::npos);
  // A different training seed changes the result (the comparison above is not vacuous).
  ASSERT_EQ(run({"train", kTiny, "run.output_dir=" + dir.string(), "run.name=c", "train.threads=1", "run.seed=4",
                 "log.progress=\"off\""},
                dir / "train-c.log"),
            0);
  ASSERT_EQ(run({"eval", (dir / "c").string(), "samples_per_prompt=6", "steps=4", "eval.seed=1"}, dir / "eval-c.log"), 0);
  EXPECT_NE(read(dir / "c/eval.json"), a);
  // Bad settings are refused with their key.
  EXPECT_EQ(run({"eval", (dir / "a").string(), "samples_per_prompts=6"}, dir / "bad.log"), 3);
  EXPECT_NE(read(dir / "bad.log").find("samples_per_prompt"), std::string::npos) << read(dir / "bad.log");
  fs::remove_all(dir);
}

// Issue 20: `prefdiff eval --checkpoint` on weights holding NaN exited 0 with "win rate 0.000, reward gain
// -nan"; training from them blamed the input model_w and advised a lower optim.lr; a diffusers folder as
// --checkpoint got advice about --resume.
TEST(Eval, NonFiniteWeightsAndMetricsAreRefusedAndNothingIsWritten) {
  const fs::path dir = fresh_dir("nonfinite");
  ASSERT_EQ(run({"train", kTiny, "run.output_dir=" + dir.string(), "run.name=r", "train.threads=1", "train.steps=4",
                 "eval.every=0", "log.progress=\"off\""},
                dir / "train.log"),
            0)
      << read(dir / "train.log");
  const fs::path good = dir / "r/checkpoints/step-00000004";
  const fs::path weights = fs::path("unet") / "diffusion_pytorch_model.safetensors";
  auto damaged_copy = [&](const std::string& name) {
    const fs::path copy = dir / name / "step-00000004";
    fs::create_directories(copy.parent_path());
    fs::copy(good, copy, fs::copy_options::recursive);
    return copy;
  };

  // NaN and Inf in two tensors: refused at load, each named with its file; no eval.json.
  const fs::path nan = damaged_copy("nan");
  poke_float32(nan / weights, "conv_in.weight", {3, 5}, std::numeric_limits<float>::quiet_NaN());
  poke_float32(nan / weights, "conv_out.bias", {0}, -std::numeric_limits<float>::infinity());
  EXPECT_EQ(run({"eval", (dir / "r").string(), "--checkpoint", nan.string(), "samples_per_prompt=2", "steps=2"},
                dir / "nan.log"),
            1);
  std::string log = read(dir / "nan.log");
  EXPECT_NE(log.find("2 tensor(s) hold NaN or Inf"), std::string::npos) << log;
  EXPECT_NE(log.find("tensor 'conv_in.weight' in '" + (nan / weights).string() + "' has 2 non-finite value(s)"),
            std::string::npos) << log;
  EXPECT_NE(log.find("(2 NaN, 0 Inf; the first at flat index 3)"), std::string::npos) << log;
  EXPECT_NE(log.find("tensor 'conv_out.bias'"), std::string::npos) << log;
  EXPECT_EQ(log.find("win rate"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir / "r/eval.json"));
  // Training from them: the same refusal, not a NaN loss blamed on the inputs.
  EXPECT_EQ(run({"train", kTiny, "run.output_dir=" + dir.string(), "run.name=from-nan", "train.threads=1", "train.steps=8",
                 "eval.every=0", "log.progress=\"off\"", "--resume", nan.string()},
                dir / "train-nan.log"),
            1);
  log = read(dir / "train-nan.log");
  EXPECT_NE(log.find("tensor 'conv_in.weight'"), std::string::npos) << log;
  EXPECT_EQ(log.find("optim.lr"), std::string::npos) << log;

  // Finite weights whose outputs overflow: the evaluation's metrics are not finite, and are not written.
  const fs::path huge = damaged_copy("huge");
  poke_float32(huge / weights, "conv_out.weight", {}, 3e38f);
  const int code = run({"eval", (dir / "r").string(), "--checkpoint", huge.string(), "samples_per_prompt=2", "steps=2"},
                       dir / "huge.log");
  log = read(dir / "huge.log");
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find("gave non-finite metrics ("), std::string::npos) << log;
  EXPECT_NE(log.find("nothing was written"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir / "r/eval.json"));

  // A diffusers folder as --checkpoint: an answer about eval, with this run's checkpoints.
  EXPECT_EQ(run({"eval", (dir / "r").string(), "--checkpoint", (good / "unet").string()}, dir / "folder.log"), 1);
  log = read(dir / "folder.log");
  EXPECT_NE(log.find("is a diffusers model folder, not a checkpoint of a prefdiff run"), std::string::npos) << log;
  EXPECT_NE(log.find(good.string()), std::string::npos) << "lists the run's checkpoints: " << log;
  EXPECT_EQ(log.find("--resume"), std::string::npos) << log;
  // The good checkpoint still evaluates.
  EXPECT_EQ(run({"eval", (dir / "r").string(), "--checkpoint", good.string(), "samples_per_prompt=2", "steps=2"},
                dir / "good.log"),
            0)
      << read(dir / "good.log");
  fs::remove_all(dir);
}

// A sweep killed while a job trains: run again, the finished job is not redone, the killed one resumes from
// its checkpoint, and the report covers both.
TEST(Sweep, KilledSweepResumesWithoutRedoingFinishedJobs) {
  const fs::path dir = fresh_dir("resume");
  const fs::path out = dir / "out";
  write(dir / "s.toml", "[sweep]\nname = \"resume\"\nrecipe = \"" + kTiny + "\"\noutput_dir = \"" + out.string() +
                            "\"\nthreads = 1\n"
                            "[sweep.set]\n\"train.steps\" = 24\n\"train.checkpoint_every\" = 4\n\"eval.every\" = 0\n"
                            "[sweep.eval]\nsamples_per_prompt = 4\nsteps = 3\n"
                            "[[sweep.variant]]\nname = \"dpo\"\nset = { \"objective.id\" = \"dpo\" }\n"
                            "[[sweep.variant]]\nname = \"cdpo\"\nset = { \"objective.id\" = \"cdpo\", \"objective.eps\" = 0.1 }\n"
                            "[sweep.grid]\nnoise.rate = [0.2]\nrun.seed = [0]\n");
  // The dpo job already finished (fabricated): it must never run.
  const fs::path done = out / "runs/dpo__noise.rate-0.2__run.seed-0";
  const std::string fabricated = R"({"format": "prefdiff-eval", "win_rate": 0.625, "reward_gain": 0.01,
                                     "mode_entropy/policy": 1.0, "implicit_accuracy": 0.75, "step": 24})";
  write(done / "eval.json", fabricated);

  const pid_t sweep = spawn({"sweep", (dir / "s.toml").string(), "--jobs", "1"}, dir / "first.log");
  const fs::path job = out / "runs/cdpo__noise.rate-0.2__run.seed-0";
  const auto deadline = std::chrono::steady_clock::now() + 600s;
  while (!fs::exists(job / "checkpoints/step-00000004/checkpoint.json") && std::chrono::steady_clock::now() < deadline &&
         process_alive(sweep))
    std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(fs::exists(job / "checkpoints/step-00000004/checkpoint.json")) << read(dir / "first.log");
  ::kill(sweep, SIGKILL);
  EXPECT_EQ(wait_exit(sweep), 128 + SIGKILL);
  // The training child dies with its sweep (it would otherwise hold the run folder's lock).
  const pid_t train_pid = nlohmann::json::parse(read(out / "jobs/cdpo__noise.rate-0.2__run.seed-0.json"))["pid"].get<pid_t>();
  for (int i = 0; i < 100 && process_alive(train_pid); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(process_alive(train_pid) && read("/proc/" + std::to_string(train_pid) + "/cmdline").find("train") != std::string::npos);
  EXPECT_FALSE(fs::exists(job / "eval.json"));

  ASSERT_EQ(run({"sweep", (dir / "s.toml").string(), "--jobs", "1"}, dir / "second.log"), 0) << read(dir / "second.log");
  const std::string second = read(dir / "second.log");
  EXPECT_NE(second.find("1 finished earlier, 1 to run"), std::string::npos) << second;
  EXPECT_NE(second.find("train (resume latest)"), std::string::npos) << second;
  EXPECT_EQ(read(done / "eval.json"), fabricated) << "the finished job was not redone";
  EXPECT_FALSE(fs::exists(out / "logs/dpo__noise.rate-0.2__run.seed-0.log"));
  const nlohmann::json e = nlohmann::json::parse(read(job / "eval.json"));
  EXPECT_EQ(e["step"], 24);
  // The resumed run logged every step once.
  std::ifstream metrics(job / "metrics.jsonl");
  std::string line;
  int64_t last = 0;
  while (std::getline(metrics, line)) {
    const int64_t step = nlohmann::json::parse(line)["step"].get<int64_t>();
    EXPECT_GT(step, last);
    last = step;
  }
  EXPECT_EQ(last, 24);
  const nlohmann::json state = nlohmann::json::parse(read(out / "jobs/cdpo__noise.rate-0.2__run.seed-0.json"));
  EXPECT_EQ(state["state"], "finished");
  EXPECT_EQ(state["attempts"], 2);
  // The report covers both jobs; cdpo is compared with the fabricated dpo at the same seed.
  const std::string csv = read(out / "results.csv");
  EXPECT_NE(csv.find("\ndpo,0.2,1,0.625,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\ncdpo,0.2,1,"), std::string::npos) << csv;
  EXPECT_NE(read(out / "results.md").find("Against `dpo`"), std::string::npos);

  // A third run does nothing.
  ASSERT_EQ(run({"sweep", (dir / "s.toml").string(), "--no-report"}, dir / "third.log"), 0);
  EXPECT_NE(read(dir / "third.log").find("2 finished earlier, 0 to run"), std::string::npos) << read(dir / "third.log");
  fs::remove_all(dir);
}
