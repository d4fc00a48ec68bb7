// The training loop, top to bottom: set-up (ranks, threads, device, models, data, noise, objectives,
// optimizer, run folder), then per optimizer step: micro-batches through the DPO step, gradient
// all-reduce, NaN policy, clipping, optimizer, EMA, metrics, validation, checkpoints.
#include "prefdiff/train/trainer.hpp"


#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <torch/torch.h>

#include "prefdiff/backbone.hpp"
#include "prefdiff/data/flip_table.hpp"
#include "prefdiff/data/hdf5_pairs_source.hpp"
#include "prefdiff/data/pair_reader.hpp"
#include "prefdiff/diffusion/noise_schedule.hpp"
#include "prefdiff/host/cores.hpp"
#include "prefdiff/host/distributed.hpp"
#include "prefdiff/host/host_services.hpp"
#include "prefdiff/host/log.hpp"
#include "prefdiff/host/objective_set.hpp"
#include "prefdiff/host/version.hpp"
#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/model_io/safetensors.hpp"
#include "prefdiff/instance/data_source.hpp"
#include "prefdiff/instance/plugin_call.hpp"
#include "prefdiff/optim/ema.hpp"
#include "prefdiff/optim/grad_clip.hpp"
#include "prefdiff/optim/optimizer.hpp"
#include "prefdiff/optim/schedule.hpp"
#include "prefdiff/run/metrics.hpp"
#include "prefdiff/run/progress.hpp"
#include "prefdiff/run/run_directory.hpp"
#include "prefdiff/sdk.hpp"
#include "prefdiff/train/dpo_step.hpp"

namespace prefdiff {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

c10::ScalarType parse_dtype(const std::string& name) {
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kHalf;
  return torch::kFloat32;
}

at::Tensor to_tensor(const data::HostTensor& t) {
  c10::ScalarType type = torch::kFloat32;
  switch (t.dtype) {
    case PD_DTYPE_F16: type = torch::kHalf; break;
    case PD_DTYPE_F32: type = torch::kFloat32; break;
    case PD_DTYPE_F64: type = torch::kFloat64; break;
    case PD_DTYPE_I64: type = torch::kInt64; break;
    default: throw std::runtime_error("tensor '" + t.name + "' has a dtype the trainer cannot use");
  }
  return torch::from_blob(const_cast<uint8_t*>(t.data.data()), t.shape, type).clone();
}

// Per-pair randomness from (seed, epoch, pair id): the same pair gets the same t and noise whichever
// rank reads it, so N ranks reproduce one process with the global batch, and a resumed run the
// uninterrupted one.
void draw_timesteps_and_noise(uint64_t seed, uint64_t epoch, const std::vector<uint64_t>& pair_ids,
                              int64_t num_train_timesteps, at::IntArrayRef latent_shape, at::Tensor& timesteps,
                              at::Tensor& noise) {
  std::vector<at::Tensor> ts, ns;
  for (uint64_t id : pair_ids) {
    auto gen = at::detail::createCPUGenerator(sdk::mix64(sdk::mix64(seed ^ 0x7d0c5a1e) ^ sdk::mix64(epoch) ^ id));
    ts.push_back(torch::randint(0, num_train_timesteps, {1}, gen, torch::kInt64));
    ns.push_back(torch::randn(latent_shape, gen));
  }
  timesteps = torch::cat(ts);
  noise = torch::stack(ns);
}

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string unhex(const std::string& text) {
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw nlohmann::json::other_error::create(501, "objectives[].state_hex is not lower-case hex", nullptr);
  };
  if (text.size() % 2 != 0)
    throw nlohmann::json::other_error::create(501, "objectives[].state_hex has an odd length", nullptr);
  std::string out;
  for (size_t i = 0; i < text.size(); i += 2) out += static_cast<char>(nibble(text[i]) * 16 + nibble(text[i + 1]));
  return out;
}

class Trainer {
 public:
  Trainer(const Recipe& recipe, PluginRegistry& registry, const TrainOptions& options)
      : recipe_(recipe), registry_(registry), options_(options), objectives_(recipe.components->objectives) {}

  void run() {
    set_up_processes();
    open_data_source();
    set_up_models();
    set_up_data();
    set_up_objectives_and_optimizer();
    set_up_run_folder();
    note_checkpoint(resume_step_ >= 0 ? resume_path_ : fs::path());
    if (resume_step_ >= 0) restore(resume_path_);
    instance::rearm_exit_reporter();  // ahead of exit handlers that set-up registered
    loop();
  }

 private:
  // ------------------------------------------------------------------ set-up

  void set_up_processes() {
    env_ = DistributedEnv::from_environment();
    const auto& d = recipe_.section("distributed");
    group_ = std::make_unique<DataParallelGroup>(env_, d["backend"].get<std::string>(), d["timeout_s"].get<double>());
    group_->install_as_host_group();
    const auto& train = recipe_.section("train");
    const long long threads = train["threads"].get<long long>();
    const int chosen = threads > 0 ? static_cast<int>(threads) : std::max(1, available_cores() / env_.local_world_size);
    at::set_num_threads(chosen);
    const std::string device = train["device"].get<std::string>();
    if (device == "cuda" || (device == "auto" && torch::cuda::is_available())) {
      if (!torch::cuda::is_available()) throw std::runtime_error("[train] device = \"cuda\" but no GPU is visible");
      device_ = torch::Device(torch::kCUDA, env_.local_rank % static_cast<int>(torch::cuda::device_count()));
    }
    say("rank " + std::to_string(env_.rank) + "/" + std::to_string(env_.world_size) + " (" + env_.launcher + ", " +
        group_->backend() + "), device " + device_.str() + ", " + std::to_string(at::get_num_threads()) +
        " intra-op threads" + (threads > 0 ? " (train.threads)" : " (available cores / local ranks)"));
  }

  // Rank 0 creates the source first (a source may build a cache, as the synthetic world does); the
  // others then find what it built.
  void open_data_source() {
    const Components& c = *recipe_.components;
    auto open = [&] { train_source_ = std::make_unique<instance::DataSource>(*c.data, c.data_params, host_services()); };
    if (env_.rank == 0) open();
    group_->barrier();
    if (env_.rank != 0) open();
  }

  void set_up_models() {
    const auto& b = recipe_.section("backbone");
    const std::string id = b["id"].get<std::string>();
    BackboneOptions options;
    options.device = device_;
    options.variant = b.value("variant", "");
    auto& backbones = BackboneRegistry::instance();
    // The weights come from one place (checked when the recipe was validated): a diffusers folder, a
    // config for random init, or the model the data source's pairs were made for.
    fs::path folder = train_source_->attribute("reference_model");
    if (b.contains("pretrained")) folder = b["pretrained"].get<std::string>();
    if (!folder.empty()) {
      policy_ = backbones.load(id, folder, options);
      reference_ = backbones.load(id, folder, options);
    } else if (b.contains("config")) {
      const nlohmann::json config = model_io::read_json_file(b["config"].get<std::string>());
      torch::manual_seed(static_cast<uint64_t>(recipe_.section("run")["seed"].get<long long>()));
      policy_ = backbones.create(id, config, options);
      reference_ = backbones.create(id, config, options);
      torch::NoGradGuard no_grad;  // the reference starts equal to the policy, as with pretrained weights
      auto dst = reference_->named_parameters();
      auto src = policy_->named_parameters();
      for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_(src[i].second);
    } else {
      throw std::runtime_error("[backbone] needs `pretrained` (a diffusers folder) or `config` (random init)");
    }
    reference_->set_requires_grad(false);
    reference_->train(false);
    policy_->train(true);
    if (device_.is_cuda()) {
      reference_->to(device_, parse_dtype(b["reference_dtype"].get<std::string>()));
      const auto dtype = parse_dtype(b["dtype"].get<std::string>());
      if (dtype != torch::kFloat32) policy_->set_autocast(dtype);
      if (b["channels_last"].get<bool>()) {
        policy_->set_channels_last(true);
        reference_->set_channels_last(true);
      }
    }
    policy_->set_gradient_checkpointing(b["gradient_checkpointing"].get<bool>());
  }

  void set_up_data() {
    const std::string held_out = train_source_->attribute("heldout_shards");
    if (!held_out.empty()) held_out_ = data::open_hdf5_pairs(held_out, host_services());

    check_data_fits_backbone(*train_source_);
    if (held_out_) check_data_fits_backbone(*held_out_);

    // Label noise: one decision per pair over the whole data set, the same for every rank and objective.
    instance::NoiseInstance& noise = *recipe_.components->noise;
    flips_ = std::make_unique<data::FlipTable>(data::FlipTable::decide(*train_source_, noise));
    say("data: " + train_source_->label() + ", " + std::to_string(train_source_->pair_count()) + " pairs; noise '" +
        noise.plugin().id() + "' flipped " + std::to_string(flips_->fraction()) + " of them");

    const auto& t = recipe_.section("train");
    data::ReaderOptions o;
    o.seed = static_cast<uint64_t>(recipe_.section("run")["seed"].get<long long>());
    o.rank = env_.rank;
    o.world_size = env_.world_size;
    o.batch_size = static_cast<uint64_t>(t["batch_size"].get<long long>());
    o.caption_dropout = t["caption_dropout"].get<double>();
    o.flips = flips_.get();
    reader_ = std::make_unique<data::PairReader>(*train_source_, o);
    if (reader_->batches_per_epoch() == 0)
      throw std::runtime_error("data: " + train_source_->label() + " holds " +
                               std::to_string(reader_->pair_count()) + " pairs, fewer than one batch of " +
                               std::to_string(o.batch_size) + " per rank on " + std::to_string(env_.world_size) +
                               " rank(s)");
  }

  // Latents and prompt embeddings must have the shapes the backbone was built for: a clear error now
  // instead of a shape mismatch deep inside the first forward pass.
  void check_data_fits_backbone(const instance::DataSource& source) const {
    const nlohmann::json& config = policy_->config();
    auto require = [&](const std::string& tensor, size_t axis, int64_t expected, const std::string& key) {
      const auto* spec = source.find(tensor);
      if (spec == nullptr)
        throw std::runtime_error("data " + source.label() + " has no tensor '" + tensor + "', which training needs");
      if (axis < spec->shape.size() && spec->shape[axis] != expected)
        throw std::runtime_error("data " + source.label() + ": tensor '" + tensor + "' has size " +
                                 std::to_string(spec->shape[axis]) + " along axis " + std::to_string(axis) +
                                 " but the backbone's " + key + " is " + std::to_string(expected) +
                                 ". HINT: encode the data for this backbone, or point [backbone] at the model the data "
                                 "was encoded for");
    };
    const int64_t channels = config.value("in_channels", int64_t{4});
    require("latent_w", 0, channels, "in_channels");
    require("latent_l", 0, channels, "in_channels");
    if (config.contains("cross_attention_dim") && config["cross_attention_dim"].is_number_integer()) {
      const auto* text = source.find("prompt_embeds");
      if (text != nullptr) require("prompt_embeds", text->shape.size() - 1, config["cross_attention_dim"].get<int64_t>(),
                                   "cross_attention_dim");
    }
  }

  void set_up_objectives_and_optimizer() {
    step_ = std::make_unique<DpoStep>(*policy_, *reference_, schedule_, objectives_);
    const auto named = policy_->named_parameters();
    for (const auto& [name, p] : named) parameters_.push_back(p);
    optimizer_ = optim::make_optimizer(recipe_.section("optim"), named);
    say("optimizer: " + optimizer_->name() + (optimizer_->multi_tensor() ? ", multi-tensor update" : ", per-tensor update"));
    const long long steps = recipe_.section("train")["steps"].get<long long>();
    lr_schedule_ = std::make_unique<optim::LrSchedule>(
        optim::make_schedule(recipe_.section("schedule"), recipe_.section("optim")["lr"].get<double>(), steps));
    const double ema_decay = recipe_.section("train")["ema_decay"].get<double>();
    if (ema_decay > 0.0) ema_ = std::make_unique<optim::Ema>(named, ema_decay);
  }

  void set_up_run_folder() {
    const auto& r = recipe_.section("run");
    run::RunOptions opt;
    opt.output_dir = r["output_dir"].get<std::string>();
    opt.name = r["name"].get<std::string>();
    opt.resume = options_.resume;
    // Rank 0 opens the run folder and tells the others where to resume from (or that it failed, so
    // nobody waits on it until the collective timeout).
    std::string shared_path;
    std::string failure;
    if (env_.rank == 0) {
      try {
        run::RunInfo info;
        info.recipe_toml = recipe_.to_toml();
        info.recipe = recipe_.values;
        info.overrides = recipe_.overrides;
        info.metadata = run_metadata();
        run_ = std::make_unique<run::RunDirectory>(run::RunDirectory::open(opt, info));
        resume_step_ = run_->resume_step();
        if (run_->resuming()) shared_path = run_->resume_checkpoint()->path.string();
      } catch (const std::exception& e) {
        failure = e.what();
        resume_step_ = -2;
      }
    }
    resume_step_ = static_cast<int64_t>(broadcast_from_rank0(static_cast<double>(resume_step_)));
    shared_path = broadcast_from_rank0(shared_path);
    if (resume_step_ == -2)
      throw std::runtime_error(env_.rank == 0 ? failure : "rank 0 could not open the run folder (see its error)");
    resume_path_ = shared_path;
    metrics_ = std::make_unique<run::MetricsLogger>(
        fs::path(opt.output_dir) / opt.name, run::MetricsOptions{env_.rank == 0, resume_step_, true});
    if (env_.rank == 0) {
      const auto& l = recipe_.section("log");
      run::ProgressOptions p;
      p.mode = run::parse_progress_mode(l["progress"].get<std::string>());
      p.every_steps = l["every"].get<long long>();
      progress_ = std::make_unique<run::Progress>(recipe_.section("train")["steps"].get<long long>(), stderr, p,
                                                  std::max<int64_t>(0, resume_step_));
    }
  }

  nlohmann::json run_metadata() const {
    nlohmann::json m;
    m["prefdiff_version"] = prefdiff_version();
    m["source_revision"] = source_revision();
    m["libtorch_version"] = torch_version();
    m["cuda"] = cuda_compiled();
    m["plugin_abi"] = abi_version();
    m["command_line"] = options_.command_line;
    m["world_size"] = env_.world_size;
    m["launcher"] = env_.launcher;
    m["threads_per_rank"] = at::get_num_threads();
    m["realised_flip_fraction"] = flips_->fraction();
    nlohmann::json plugins = nlohmann::json::array();
    for (const PluginLibrary& p : registry_.plugins())
      plugins.push_back({{"id", p.id()}, {"kind", kind_name(p.kind())}, {"version", p.descriptor->version},
                         {"formula_version", p.descriptor->formula_version ? p.descriptor->formula_version : ""},
                         {"abi", std::to_string(p.descriptor->abi_major) + "." + std::to_string(p.descriptor->abi_minor)},
                         {"path", p.path}});
    m["plugins"] = plugins;
    m["backbone"] = {{"id", policy_->id()}, {"config", policy_->config()}};
    nlohmann::json attributes = nlohmann::json::object();
    for (const auto& [name, value] : train_source_->attributes()) attributes[name] = value;
    m["data_source"] = {{"id", train_source_->id()}, {"label", train_source_->label()}, {"attributes", attributes}};
    return m;
  }

  // Rank 0's value on every rank (an all-reduce where the others contribute zero).
  double broadcast_from_rank0(double value) {
    double shared = env_.rank == 0 ? value : 0.0;
    group_->all_reduce_sum(&shared, 1);
    return shared;
  }
  std::string broadcast_from_rank0(const std::string& text) {
    constexpr size_t kMax = 4096;
    if (text.size() > kMax) throw std::runtime_error("path too long to share between ranks: " + text);
    std::vector<double> codes(kMax + 1, 0.0);
    if (env_.rank == 0) {
      codes[0] = static_cast<double>(text.size());
      for (size_t i = 0; i < text.size(); ++i) codes[i + 1] = static_cast<unsigned char>(text[i]);
    }
    group_->all_reduce_sum(codes.data(), codes.size());
    std::string out(static_cast<size_t>(codes[0]), '\0');
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(static_cast<int>(codes[i + 1]));
    return out;
  }

  // ------------------------------------------------------------------ the loop

  bool next_batch(data::PairBatch& batch) {
    while (!reader_->next(batch)) {
      ++epoch_;
      reader_->start(epoch_, 0);
    }
    batch_in_epoch_ = batch.index + 1;
    return true;
  }

  DpoBatch to_dpo_batch(const data::PairBatch& b) const {
    DpoBatch d;
    d.latents_w = to_tensor(b.tensor("latent_w")).to(device_, torch::kFloat32);
    d.latents_l = to_tensor(b.tensor("latent_l")).to(device_, torch::kFloat32);
    d.encoder_hidden_states = to_tensor(b.tensor("prompt_embeds")).to(device_, torch::kFloat32);
    if (policy_->requires_added_conditions()) {
      if (!b.has("pooled_embeds") || !b.has("time_ids"))
        throw std::runtime_error("the SDXL-style backbone needs pooled_embeds and time_ids, which the data lacks");
      // time_ids hold a winner row and a loser row per pair (original size and crop differ per image).
      const at::Tensor ids = to_tensor(b.tensor("time_ids")).to(device_, torch::kFloat32).reshape({static_cast<int64_t>(b.size()), 2, -1});
      d.added = AddedConditions{to_tensor(b.tensor("pooled_embeds")).to(device_, torch::kFloat32), ids.select(1, 0)};
      d.loser_time_ids = ids.select(1, 1);
    }
    at::Tensor t, noise;
    draw_timesteps_and_noise(seed(), b.epoch, b.pair_ids, schedule_.config().num_train_timesteps,
                             d.latents_w.sizes().slice(1), t, noise);
    d.timesteps = t.to(device_);
    d.noise = noise.to(device_);
    return d;
  }

  uint64_t seed() const { return static_cast<uint64_t>(recipe_.section("run")["seed"].get<long long>()); }

  void record(const DpoStepResult& r) {
    const size_t n = r.errors.model_w.size();
    auto mean = [n](const std::vector<double>& v) {
      double s = 0;
      for (double x : v) s += x;
      return s / static_cast<double>(n);
    };
    metrics_->add(run::metric::kLoss, r.loss);
    metrics_->add(run::metric::kAccuracy, r.implicit_accuracy);
    metrics_->add(run::metric::kMargin, r.margin);
    metrics_->add(run::metric::kModelW, mean(r.errors.model_w));
    metrics_->add(run::metric::kModelL, mean(r.errors.model_l));
    metrics_->add(run::metric::kRefW, mean(r.errors.ref_w));
    metrics_->add(run::metric::kRefL, mean(r.errors.ref_l));
    for (const auto& [name, value] : r.objective.diagnostics) metrics_->add(name, value);
  }

  // Averages gradients over ranks in buckets of ~16M values (one flat buffer per bucket).
  void all_reduce_gradients() {
    if (env_.world_size == 1) return;
    std::vector<at::Tensor> grads;
    for (const at::Tensor& p : parameters_)
      if (p.grad().defined()) grads.push_back(p.grad());
    group_->all_reduce_mean(grads, 16 << 20);
  }

  void loop() {
    const auto& t = recipe_.section("train");
    const int64_t steps = t["steps"].get<long long>(), accumulation = t["grad_accum"].get<long long>();
    const int64_t batch_size = t["batch_size"].get<long long>();
    const double clip = t["grad_clip"].get<double>();
    const bool skip_bad = t["nan_policy"].get<std::string>() == "skip";
    const int64_t log_every = recipe_.section("log")["every"].get<long long>();
    const int64_t checkpoint_every = t["checkpoint_every"].get<long long>();
    const int64_t eval_every = recipe_.section("eval")["every"].get<long long>();
    const uint64_t global_pairs = static_cast<uint64_t>(batch_size) * static_cast<uint64_t>(env_.world_size);

    int64_t first = std::max<int64_t>(0, resume_step_);
    if (resume_step_ < 0) reader_->start(epoch_, 0);
    auto window_start = Clock::now();
    double wait_at_window_start = reader_->wait_seconds();
    int64_t window_pairs = 0;
    for (int64_t step = first; step < steps; ++step) {
      const double lr = lr_schedule_->lr_at(step);
      optimizer_->set_lr(lr);
      optimizer_->zero_grad();
      double bad = 0.0;  // this rank saw a non-finite loss or a plugin refused non-finite errors
      std::string bad_reason;
      std::vector<std::pair<DpoStepResult, double>> results;  // recorded once every rank agrees the step is good
      for (int64_t micro = 0; micro < accumulation; ++micro) {
        data::PairBatch batch;
        next_batch(batch);
        try {
          const DpoStepResult r = step_->train(to_dpo_batch(batch), 1.0 / static_cast<double>(batch_size * accumulation),
                                               step, global_pairs);
          if (!std::isfinite(r.loss)) throw std::runtime_error("non-finite loss " + std::to_string(r.loss));
          results.emplace_back(r, batch.flip_fraction());
        } catch (const std::exception& e) {
          bad = 1.0;
          bad_reason = e.what();
        }
        window_pairs += static_cast<int64_t>(batch.size()) * env_.world_size;
      }
      group_->all_reduce_sum(&bad, 1);
      all_reduce_gradients();
      const optim::GradNormResult norm = optim::clip_grad_norm(parameters_, clip);
      if (bad > 0.0 || !norm.finite) {
        const std::string why = bad > 0.0 ? (bad_reason.empty() ? "another rank saw a non-finite loss" : bad_reason)
                                          : "non-finite gradient norm " + std::to_string(norm.total_norm);
        if (!skip_bad)
          throw std::runtime_error("step " + std::to_string(step) + ": " + why +
                                   ". The weights were not updated. Set train.nan_policy = \"skip\" to skip such "
                                   "steps, or lower optim.lr");
        ++skipped_;
        optimizer_->zero_grad();
        say("step " + std::to_string(step) + " skipped: " + why);
      } else {
        optimizer_->step();
        if (ema_) ema_->update();
        for (const auto& [r, flipped] : results) {
          record(r);
          metrics_->add("noise/flipped", flipped);
        }
      }
      metrics_->set(run::metric::kLr, lr);
      metrics_->set(run::metric::kGradNorm, norm.total_norm);
      metrics_->set(run::metric::kSkippedSteps, static_cast<double>(skipped_));

      const int64_t done = step + 1;
      const bool checkpoint_now = (checkpoint_every > 0 && done % checkpoint_every == 0) || done == steps;
      if (done % log_every == 0 || checkpoint_now) {
        const double elapsed = seconds_since(window_start);
        metrics_->set(run::metric::kPairsPerS, static_cast<double>(window_pairs) / std::max(elapsed, 1e-9));
        metrics_->set(run::metric::kDataWaitFrac, (reader_->wait_seconds() - wait_at_window_start) / std::max(elapsed, 1e-9));
        const auto means = metrics_->log_window(done, epoch_fraction(), [this](std::vector<double>& v) {
          group_->all_reduce_sum(v.data(), v.size());
        });
        if (progress_) {
          run::ProgressStats stats;
          stats.loss = means.count(run::metric::kLoss) ? means.at(run::metric::kLoss) : NAN;
          stats.accuracy = means.count(run::metric::kAccuracy) ? means.at(run::metric::kAccuracy) : NAN;
          stats.pairs_per_s = means.at(run::metric::kPairsPerS);
          progress_->update(done, stats);
        }
        window_start = Clock::now();
        wait_at_window_start = reader_->wait_seconds();
        window_pairs = 0;
      }
      if (eval_every > 0 && done % eval_every == 0) validate(done);
      if (checkpoint_now) save_checkpoint(done);
    }
    if (progress_) progress_->finish();
    if (run_) {
      run_->update_metadata({{"end_time", run::iso8601_now()}, {"final_step", steps}, {"skipped_steps", skipped_}});
      say("done: " + run_->path().string() + " (policy: " +
          (run_->checkpoints().dir() / run::CheckpointStore::name_for(steps) / "unet").string() + ")");
    }
  }

  double epoch_fraction() const {
    return static_cast<double>(epoch_) +
           static_cast<double>(batch_in_epoch_) / static_cast<double>(std::max<uint64_t>(1, reader_->batches_per_epoch()));
  }

  // Implicit accuracy, margins and MSEs on held-out pairs, with fixed t and noise so curves compare.
  void validate(int64_t step) {
    if (!held_out_) return;
    const int64_t batch = recipe_.section("train")["batch_size"].get<long long>();
    const uint64_t limit = std::min<uint64_t>(held_out_->pair_count(),
                                              static_cast<uint64_t>(recipe_.section("eval")["pairs"].get<long long>()));
    data::ReaderOptions o;
    o.seed = seed();
    o.rank = env_.rank;
    o.world_size = env_.world_size;
    o.batch_size = static_cast<uint64_t>(batch);
    o.shuffle = false;
    o.drop_last = false;
    o.prefetch = 0;
    data::PairReader reader(*held_out_, o);
    reader.start(0, 0);
    run::MetricsLogger& m = *metrics_;
    std::map<std::string, double> sums;
    double count = 0;
    data::PairBatch b;
    uint64_t seen = 0;
    policy_->train(false);
    while (seen < limit && reader.next(b)) {
      DpoBatch d = to_dpo_batch(b);
      const DpoStepResult r = step_->evaluate(d, step, b.size() * static_cast<uint64_t>(env_.world_size));
      const double n = static_cast<double>(b.size());
      sums["rewards/accuracies"] += r.implicit_accuracy * n;
      sums["rewards/margins"] += r.margin * n;
      sums["loss"] += r.loss * n;
      for (size_t i = 0; i < b.size(); ++i) {
        sums["mse/model_w"] += r.errors.model_w[i];
        sums["mse/model_l"] += r.errors.model_l[i];
        sums["mse/ref_w"] += r.errors.ref_w[i];
        sums["mse/ref_l"] += r.errors.ref_l[i];
      }
      count += n;
      seen += b.size() * static_cast<uint64_t>(env_.world_size);
    }
    policy_->train(true);
    std::vector<double> v;
    for (const auto& kv : sums) v.push_back(kv.second);
    v.push_back(count);
    group_->all_reduce_sum(v.data(), v.size());
    std::map<std::string, double> means;
    size_t i = 0;
    for (const auto& kv : sums) means[kv.first] = v[i++] / std::max(1.0, v.back());
    m.write_eval(step, epoch_fraction(), means);
  }

  // ------------------------------------------------------------------ checkpoints

  void save_checkpoint(int64_t step) {
    if (env_.rank == 0) {
      run::AtomicDirectory ckpt = run_->checkpoints().begin(step, run_->checkpoint_meta());
      policy_->save(ckpt.path() / "unet");  // a diffusers folder: diffusers loads it unchanged
      write_tensors(ckpt.path() / "optimizer.safetensors", optimizer_->state());
      if (ema_) write_tensors(ckpt.path() / "ema.safetensors", ema_->state());
      nlohmann::json state;
      state["step"] = step;
      state["epoch"] = epoch_;
      state["batch_in_epoch"] = batch_in_epoch_;
      state["skipped_steps"] = skipped_;
      state["optimizer"] = optimizer_->name();
      state["objectives"] = nlohmann::json::array();
      for (size_t k = 0; k < objectives_.size(); ++k)
        state["objectives"].push_back({{"id", objectives_.instance(k).plugin().id()},
                                       {"state_hex", hex(objectives_.instance(k).save_state())}});
      ckpt.write_file("trainer_state.json", state.dump(2));
      ckpt.commit();
      run_->checkpoints().prune(static_cast<int>(recipe_.section("train")["keep_checkpoints"].get<long long>()));
    }
    group_->barrier();  // no rank runs ahead of a checkpoint it might need
    const auto& r = recipe_.section("run");
    note_checkpoint(fs::path(r["output_dir"].get<std::string>()) / r["name"].get<std::string>() / "checkpoints" /
                    run::CheckpointStore::name_for(step));
  }

  static void write_tensors(const fs::path& path, const optim::NamedTensors& tensors) {
    model_io::NamedTensors cpu;
    for (const auto& [name, t] : tensors) cpu.emplace_back(name, t.detach().to(torch::kCPU).contiguous());
    model_io::write_safetensors(path, cpu);
  }

  void restore(const fs::path& checkpoint) {
    policy_->load_weights(checkpoint / "unet");
    const auto optimizer_state = model_io::SafetensorsFile::open(checkpoint / "optimizer.safetensors").load_all();
    optimizer_->load_state(optimizer_state);
    if (ema_) ema_->load_state(model_io::SafetensorsFile::open(checkpoint / "ema.safetensors").load_all());
    const fs::path state_file = checkpoint / "trainer_state.json";
    const std::string hint = "HINT: resume from a checkpoint written by prefdiff train (or start a new run folder)";
    const nlohmann::json state = model_io::read_json_file(state_file, hint);
    try {
      epoch_ = state.at("epoch").get<uint64_t>();
      batch_in_epoch_ = state.at("batch_in_epoch").get<uint64_t>();
      skipped_ = state.at("skipped_steps").get<int64_t>();
      const auto& saved = state.at("objectives");
      for (size_t k = 0; k < objectives_.size() && k < saved.size(); ++k)
        objectives_.instance(k).load_state(unhex(saved[k].at("state_hex").get<std::string>()));
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(state_file.string() + " is incomplete or damaged (" + e.what() + "); " + hint);
    }
    reader_->start(epoch_, batch_in_epoch_);
    say("resumed from " + checkpoint.string() + " at step " + std::to_string(resume_step_));
  }

  // What a crash report names as the way back (the fatal-signal and exit reporters print it).
  static void note_checkpoint(const fs::path& checkpoint) {
    instance::set_crash_context(checkpoint.empty() ? "no complete checkpoint yet"
                                                   : "last complete checkpoint: " + checkpoint.string() +
                                                         " (continue with --resume latest)");
  }

  void say(const std::string& message) {
    if (env_.rank != 0) return;
    if (progress_)
      progress_->message(message);
    else
      log::info(message);
  }

  const Recipe& recipe_;
  PluginRegistry& registry_;
  TrainOptions options_;
  DistributedEnv env_;
  std::unique_ptr<DataParallelGroup> group_;
  torch::Device device_ = torch::kCPU;
  std::unique_ptr<Backbone> policy_, reference_;
  std::vector<at::Tensor> parameters_;
  diffusion::NoiseSchedule schedule_;
  std::unique_ptr<instance::DataSource> train_source_, held_out_;
  std::unique_ptr<data::FlipTable> flips_;
  std::unique_ptr<data::PairReader> reader_;
  ObjectiveSet& objectives_;  // the instances the recipe's validation built
  std::unique_ptr<DpoStep> step_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::unique_ptr<optim::LrSchedule> lr_schedule_;
  std::unique_ptr<optim::Ema> ema_;
  std::unique_ptr<run::RunDirectory> run_;
  std::unique_ptr<run::MetricsLogger> metrics_;
  std::unique_ptr<run::Progress> progress_;
  int64_t resume_step_ = -1;
  fs::path resume_path_;  // the checkpoint every rank restores from
  uint64_t epoch_ = 0;
  uint64_t batch_in_epoch_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace

void run_training(const Recipe& recipe, PluginRegistry& registry, const TrainOptions& options) {
  Trainer(recipe, registry, options).run();
}

}  // namespace prefdiff
