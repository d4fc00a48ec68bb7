// `prefdiff eval RUN_DIR [key=value ...]`: the run's policy against its reference in the synthetic world
// (toy::evaluate), written to RUN_DIR/eval.json. docs/sweeps.md describes the metrics.
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "prefdiff/backbone.hpp"
#include "cli.hpp"
#include "prefdiff/host/objective_set.hpp"
#include "prefdiff/host/cores.hpp"
#include "prefdiff/host/log.hpp"
#include "prefdiff/recipe/recipe.hpp"
#include "prefdiff/host/version.hpp"
#include "prefdiff/model_io/lora_file.hpp"
#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/run/checkpoint_store.hpp"
#include "prefdiff/toy_world/evaluate.hpp"
#include "prefdiff/toy_world/prepare.hpp"

namespace prefdiff {
namespace {
namespace fs = std::filesystem;

struct EvalArgs {
  std::string run_dir;
  std::vector<std::string> settings;
  std::string checkpoint;
  std::string output;
  std::string device = "cpu";
  int threads = 0;
};

Diagnostic problem(const std::string& where, const std::string& message) {
  Diagnostic d;
  d.where.file = where;
  d.message = message;
  return d;
}

std::string checkpoints_of(const run::CheckpointStore& store) {
  std::string list;
  for (const run::CheckpointInfo& c : store.list())
    if (c.complete) list += (list.empty() ? "" : ", ") + c.path.string();
  return list.empty() ? "none yet" : list;
}

// --checkpoint PATH: a checkpoint folder (RUN/checkpoints/step-N, with its checkpoint.json), or "latest"
// (the newest complete one). Every refusal is about `eval`, and lists the run's checkpoints.
run::CheckpointInfo given_checkpoint(const run::CheckpointStore& store, const fs::path& run_dir, const std::string& given) {
  const std::string hint = ". HINT: pass one of this run's checkpoints (" + checkpoints_of(store) +
                           "), or leave --checkpoint out to evaluate its final one";
  if (given == "latest") {
    if (std::optional<run::CheckpointInfo> latest = store.latest()) return *latest;
    throw std::runtime_error("--checkpoint latest: run " + run_dir.string() + " has no complete checkpoint; HINT: train "
                             "it first (`prefdiff train " + (run_dir / "recipe.toml").string() + " --resume latest` "
                             "continues it)");
  }
  const fs::path p(given);
  std::error_code ec;
  if (!fs::exists(p, ec)) throw std::runtime_error("--checkpoint " + given + ": no such folder" + hint);
  const bool marker = fs::exists(p / run::kCheckpointMarker, ec);
  const bool diffusers = fs::exists(p / "config.json", ec) || fs::exists(p / "model_index.json", ec) ||
                         fs::exists(p / "unet" / "config.json", ec);
  if (!marker && diffusers)
    throw std::runtime_error(
        "--checkpoint " + given + " is a diffusers model folder, not a checkpoint of a prefdiff run: `prefdiff eval` "
        "scores a checkpoint of the run " + run_dir.string() + " (its unet/ with the checkpoint.json that records "
        "the run's recipe) against that run's reference" + hint);
  if (!marker && fs::is_directory(p / "checkpoints", ec))
    throw std::runtime_error("--checkpoint " + given + " is a run folder, not a checkpoint; evaluate that run with "
                             "`prefdiff eval " + given + "`" + hint);
  const run::CheckpointInfo info = run::CheckpointStore::inspect(p);
  if (!info.complete)
    throw std::runtime_error("--checkpoint " + given + " is not a complete checkpoint: " + info.problem + hint);
  return info;
}

// The policy to evaluate: --checkpoint, else the run's final checkpoint (training must have finished).
run::CheckpointInfo choose_checkpoint(const fs::path& run_dir, const nlohmann::json& recipe, const std::string& given) {
  run::CheckpointStore store(run_dir / "checkpoints");
  if (!given.empty()) return given_checkpoint(store, run_dir, given);
  const int64_t steps = recipe.at("train").at("steps").get<int64_t>();
  const std::optional<run::CheckpointInfo> latest = store.latest();
  if (!latest)
    throw std::runtime_error("run " + run_dir.string() + " has no complete checkpoint to evaluate; HINT: train it first "
                             "(`prefdiff train " + (run_dir / "recipe.toml").string() + " --resume latest` continues it)");
  if (latest->step != steps)
    throw std::runtime_error("run " + run_dir.string() + " has not finished: its newest checkpoint is step " +
                             std::to_string(latest->step) + " of " + std::to_string(steps) +
                             "; HINT: finish it with `prefdiff train " + (run_dir / "recipe.toml").string() +
                             " --resume latest`, or evaluate that checkpoint with --checkpoint " + latest->path.string());
  return *latest;
}

// The keys (a/b/0 paths) of every number in `j` that is NaN or infinite.
std::vector<std::string> non_finite_numbers(const nlohmann::json& j, const std::string& path = "") {
  std::vector<std::string> out;
  if (j.is_number_float() && !std::isfinite(j.get<double>())) {
    out.push_back(path + " = " + std::to_string(j.get<double>()));
  } else if (j.is_object() || j.is_array()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string key = j.is_object() ? it.key() : std::to_string(std::distance(j.begin(), it));
      for (std::string& b : non_finite_numbers(*it, path.empty() ? key : path + "/" + key)) out.push_back(std::move(b));
    }
  }
  return out;
}

// Evaluation settings: defaults from the run's recipe, then the command line's key=value.
toy::EvalConfig eval_config(const nlohmann::json& recipe, const std::vector<std::string>& settings) {
  nlohmann::json given = nlohmann::json::object();
  // As many clean held-out pairs as the run's own validation ([eval] pairs).
  if (recipe.contains("eval") && recipe["eval"].contains("pairs")) given["heldout_pairs"] = recipe["eval"]["pairs"];
  std::vector<Diagnostic> problems;
  for (const std::string& s : settings) {
    const size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0) {
      problems.push_back(problem("setting '" + s + "'", "expected key=value, e.g. samples_per_prompt=64"));
      continue;
    }
    std::string key = s.substr(0, eq);
    if (key.rfind("eval.", 0) == 0) key = key.substr(5);
    given[key] = parse_cli_value(s.substr(eq + 1));
  }
  if (!problems.empty()) throw RecipeError(problems);
  try {
    return toy::EvalConfig::from_json(given);
  } catch (const toy::WorldError& e) {
    throw RecipeError({problem("prefdiff eval", e.what())});
  }
}

void run_eval(CliContext& context, const EvalArgs& args) {
  const auto start = std::chrono::steady_clock::now();
  const fs::path run_dir = fs::path(args.run_dir);
  if (!fs::is_directory(run_dir))
    throw std::runtime_error("run folder " + run_dir.string() + " does not exist; HINT: pass the folder `prefdiff train` "
                             "wrote, <run.output_dir>/<run.name>");
  const nlohmann::json recipe = model_io::read_json_file(run_dir / "recipe.json",
                                               "HINT: is " + run_dir.string() + " a run folder written by `prefdiff train`?");
  const std::string data_id = recipe.at("data").at("id").get<std::string>();
  if (data_id != toy::kDataId)
    throw std::runtime_error(
        "prefdiff eval: " + (run_dir / "recipe.json").string() + " has [data] id = \"" + data_id +
        "\"; evaluation needs the synthetic world's oracle reward ([data] id = \"toy-world\"). Real reward models "
        "(HPSv2, PickScore, ImageReward) are not part of prefdiff yet; the run's implicit accuracy on held-out pairs "
        "is in its metrics.jsonl (eval/rewards/accuracies when [eval] every > 0)");
  const toy::EvalConfig config = eval_config(recipe, args.settings);
  const run::CheckpointInfo checkpoint = choose_checkpoint(run_dir, recipe, args.checkpoint);

  // Threads change floating-point sums: by default the run's own train.threads, so a rerun is bit-identical.
  const long long recipe_threads = recipe.at("train").at("threads").get<long long>();
  const int threads = args.threads > 0 ? args.threads
                                       : (recipe_threads > 0 ? static_cast<int>(recipe_threads)
                                                             : available_cores());
  at::set_num_threads(threads);

  const toy::WorldConfig world_config = toy::WorldConfig::from_json(recipe.at("data"));
  const toy::World world(world_config);
  // The reference the run trained against (run.json), else the world's cached one (rebuilt from its seeds).
  fs::path reference_folder;
  if (fs::exists(run_dir / "run.json")) {
    const nlohmann::json meta = model_io::read_json_file(run_dir / "run.json", "HINT: the run folder is damaged");
    // The data source's attribute; "toy_world" in run folders written before data sources were generic.
    const nlohmann::json where = meta.contains("data_source") ? meta["data_source"].value("attributes", nlohmann::json::object())
                                                              : meta.value("toy_world", nlohmann::json::object());
    if (where.contains("reference_model")) {
      const fs::path p = where["reference_model"].get<std::string>();
      if (fs::exists(p / "config.json")) reference_folder = p;
      else log::info("eval: the run's reference " + p.string() + " is gone; preparing the world's reference again");
    }
  }
  if (reference_folder.empty()) reference_folder = toy::prepare_world(world_config).reference_model;

  BackboneOptions options;
  if (args.device == "cuda") options.device = c10::Device(c10::kCUDA);
  const std::string backbone_id = recipe.at("backbone").at("id").get<std::string>();
  auto& backbones = BackboneRegistry::instance();
  // A LoRA run's checkpoint holds its adapters; its base is the reference.
  const fs::path lora_file = checkpoint.path / "pytorch_lora_weights.safetensors";
  const bool lora = fs::exists(lora_file);
  std::unique_ptr<Backbone> policy = backbones.load(backbone_id, lora ? reference_folder : checkpoint.path / "unet", options);
  if (lora) {  // merged: evaluation only samples, and a merged UNet runs at the base's speed
    policy->set_lora(model_io::read_lora_file(lora_file, policy->lora_layers()).adapters);
    policy->merge_lora();
  }
  std::unique_ptr<Backbone> reference = backbones.load(backbone_id, reference_folder, options);
  policy->train(false);
  reference->train(false);
  policy->set_requires_grad(false);
  reference->set_requires_grad(false);

  // The implicit margin is the run's objective's own: its plugin with the parameters the run resolved.
  ObjectiveSet objectives(recipe.at("objective"), context.registry());
  nlohmann::json result = toy::evaluate(*policy, *reference, world, config, objectives, checkpoint.step);
  // The margin's scale, as the objective resolved it (accuracy itself does not depend on it).
  if (const instance::Value* beta = objectives.instance(0).params().find("beta")) result["config"]["beta"] = beta->number;
  // A NaN is no result: a sweep would tabulate it, and JSON would turn it into null.
  if (const std::vector<std::string> bad = non_finite_numbers(result); !bad.empty()) {
    std::string list;
    for (const std::string& b : bad) list += (list.empty() ? "" : ", ") + b;
    throw std::runtime_error("eval " + run_dir.string() + ": the evaluation of " + checkpoint.path.string() +
                             " gave non-finite metrics (" + list + "); nothing was written. HINT: the policy's outputs "
                             "overflow or are NaN: evaluate an earlier checkpoint, or check the run's metrics.jsonl for "
                             "where the training diverged");
  }
  // Only what the inputs determine (no paths outside the run, no times): reruns give identical bytes.
  result["format"] = "prefdiff-eval";
  result["format_version"] = 1;
  result["checkpoint"] = fs::relative(checkpoint.path, run_dir).string();
  result["step"] = checkpoint.step;
  result["threads"] = threads;
  result["device"] = args.device;
  result["world"] = world_config.to_json();
  result["objective"] = recipe.at("objective");
  result["noise"] = recipe.at("noise");
  result["seed"] = recipe.at("run").at("seed");
  result["prefdiff_version"] = prefdiff_version();
  const fs::path output = args.output.empty() ? run_dir / "eval.json" : fs::path(args.output);
  run::atomic_write_file(output, result.dump(2) + "\n");

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("eval %s (%s, step %lld) in %.1f s, %d thread(s):\n", run_dir.c_str(), result["checkpoint"].get<std::string>().c_str(),
              static_cast<long long>(checkpoint.step), seconds, threads);
  std::printf("  win rate          %.3f ± %.3f  (policy vs reference, %lld samples from the same noise; ties half)\n",
              result["win_rate"].get<double>(), result["win_rate_stderr"].get<double>(), result["samples"].get<long long>());
  std::printf("  reward gain       %+.5f ± %.5f (oracle reward, policy - reference)\n", result["reward_gain"].get<double>(),
              result["reward_gain_stderr"].get<double>());
  std::printf("  diversity         %.3f (mode entropy, nats; reference %.3f, max %.3f)\n",
              result["mode_entropy/policy"].get<double>(), result["mode_entropy/reference"].get<double>(),
              result["mode_entropy/max"].get<double>());
  std::printf("  implicit accuracy %.3f (%lld clean held-out pairs)\n", result["implicit_accuracy"].get<double>(),
              result["pairs"].get<long long>());
  std::printf("  -> %s\n", output.c_str());
}

}  // namespace

void add_eval_command(CLI::App& app, CliContext& context) {
  static EvalArgs args;
  CLI::App* cmd = app.add_subcommand(
      "eval", "Evaluate a toy-world run: policy vs reference by the oracle reward (win rate, reward gain, diversity, "
              "implicit accuracy) -> RUN_DIR/eval.json");
  cmd->add_option("run_dir", args.run_dir, "Run folder written by `prefdiff train`")->required();
  cmd->add_option("settings", args.settings,
                  "Evaluation settings key=value: samples_per_prompt (32), steps (20 DDIM), guidance_scale (1 = off), "
                  "seed (0), prompts (all|train|heldout), batch_size (256), heldout_pairs ([eval] pairs; 0 = all), "
                  "per_prompt (true). The implicit margin is the run's objective's own");
  cmd->add_option("--checkpoint", args.checkpoint, "Checkpoint folder to evaluate (default: the run's final one)");
  cmd->add_option("--threads", args.threads, "Intra-op threads (default: the run's train.threads, else all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", args.device, "cpu (default; bit-reproducible) or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--output", args.output, "Where to write the JSON (default RUN_DIR/eval.json)");
  cmd->callback([&context] { run_eval(context, args); });
}

}  // namespace prefdiff
