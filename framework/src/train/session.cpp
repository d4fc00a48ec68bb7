// Setting up a training session, in the order the pieces need each other: ranks and device, the data
// source (it may supply the model), the models, the data reader and its label noise, the optimizer, the
// run folder, then the checkpoint a resumed run continues from.
#include "prefdiff/train/session.hpp"

#include <torch/torch.h>

#include <map>

#include "prefdiff/data/hdf5_pairs_source.hpp"
#include "prefdiff/host/cores.hpp"
#include "prefdiff/host/host_services.hpp"
#include "prefdiff/host/log.hpp"
#include "prefdiff/host/version.hpp"
#include "prefdiff/instance/plugin_call.hpp"
#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/model_io/lora_file.hpp"
#include "prefdiff/model_io/safetensors.hpp"
#include "prefdiff/torch_host/torch_info.hpp"
#include "prefdiff/train/adapters_off_reference.hpp"

namespace prefdiff {
namespace fs = std::filesystem;
namespace {

c10::ScalarType parse_dtype(const std::string& name) {
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kHalf;
  return torch::kFloat32;
}

void set_up_processes(TrainingSession& s) {
  s.env = DistributedEnv::from_environment();
  s.group = std::make_unique<DataParallelGroup>(s.env, s.config.distributed.backend, s.config.distributed.timeout_s);
  s.group->install_as_host_group();
  const int64_t threads = s.config.train.threads;
  at::set_num_threads(threads > 0 ? static_cast<int>(threads) : std::max(1, available_cores() / s.env.local_world_size));
  const std::string& device = s.config.train.device;
  if (device == "cuda" || (device == "auto" && torch::cuda::is_available())) {
    if (!torch::cuda::is_available()) throw std::runtime_error("[train] device = \"cuda\" but no GPU is visible");
    s.device = torch::Device(torch::kCUDA, s.env.local_rank % static_cast<int>(torch::cuda::device_count()));
  }
  s.say("rank " + std::to_string(s.env.rank) + "/" + std::to_string(s.env.world_size) + " (" + s.env.launcher + ", " +
        s.group->backend() + "), device " + s.device.str() + ", " + std::to_string(at::get_num_threads()) +
        " intra-op threads" + (threads > 0 ? " (train.threads)" : " (available cores / local ranks)"));
}

// Rank 0 creates the source first (a source may build a cache, as the synthetic world does); the others
// then find what it built.
void open_data_source(TrainingSession& s, const Components& components) {
  auto open = [&] {
    s.source = std::make_unique<instance::DataSource>(*components.data, components.data_params, host_services());
  };
  if (s.env.rank == 0) open();
  s.group->barrier();
  if (s.env.rank != 0) open();
  const std::string held_out = s.source->attribute("heldout_shards");
  if (!held_out.empty()) s.held_out = data::open_hdf5_pairs(held_out, host_services());
}

// LoRA: the base weights frozen (in base_dtype on a GPU), adapters on the target layers, and the reference
// is the policy with its adapters off, so one UNet is in memory.
void add_adapters(TrainingSession& s) {
  const LoraConfig& l = s.config.lora;
  LoraOptions o;
  o.rank = l.rank;
  o.alpha = l.alpha;
  o.dropout = l.dropout;
  o.target_modules = l.target_modules;
  o.init_std = l.init_std;
  if (o.target_modules.empty())
    throw std::runtime_error("[lora] target_modules is empty. HINT: name the layers to adapt, e.g. "
                             "[\"to_q\", \"to_k\", \"to_v\", \"to_out.0\"], or set lora.rank = 0 to train the full model");
  s.policy->set_requires_grad(false);
  torch::manual_seed(s.config.run.seed);  // the adapters' init: down ~ N(0, init_std), up = 0
  const std::vector<std::string> layers = s.policy->add_lora(o);
  int64_t count = 0;
  for (const auto& [name, p] : s.policy->lora_parameters()) count += p.numel();
  s.say("lora: rank " + std::to_string(l.rank) + ", alpha " + std::to_string(l.alpha) + " on " +
        std::to_string(layers.size()) + " layers (" + std::to_string(count) + " trained parameters); the reference "
        "is the policy with its adapters off");
  const auto base_dtype = parse_dtype(l.base_dtype);
  if (s.device.is_cuda() && base_dtype != torch::kFloat32) {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : s.policy->named_parameters()) p.set_data(p.to(base_dtype));
  }
  if (s.needs_reference) s.reference = std::make_unique<AdaptersOffReference>(*s.policy);
}

void set_up_models(TrainingSession& s) {
  const BackboneConfig& b = s.config.backbone;
  const bool lora = s.config.lora.enabled();
  BackboneOptions options;
  options.device = s.device;
  options.variant = b.variant;
  auto& backbones = BackboneRegistry::instance();
  // One source of weights (the recipe's validation made sure): a diffusers folder, a config for random
  // init, or the model the data source's pairs were made for.
  const fs::path folder = !b.pretrained.empty() ? fs::path(b.pretrained) : fs::path(s.source->attribute("reference_model"));
  if (!folder.empty()) {
    s.policy = backbones.load(b.id, folder, options);
    if (!lora && s.needs_reference) s.reference = backbones.load(b.id, folder, options);
  } else if (!b.config.empty()) {
    const nlohmann::json config = model_io::read_json_file(b.config);
    torch::manual_seed(s.config.run.seed);
    s.policy = backbones.create(b.id, config, options);
    if (!lora && s.needs_reference) {
      s.reference = backbones.create(b.id, config, options);
      torch::NoGradGuard no_grad;  // the reference starts equal to the policy, as with pretrained weights
      auto dst = s.reference->named_parameters();
      auto src = s.policy->named_parameters();
      for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_(src[i].second);
    }
  } else {
    throw std::runtime_error("[backbone] needs `pretrained` (a diffusers folder) or `config` (random init)");
  }
  if (lora) add_adapters(s);  // the reference, when the objectives need one, is the policy with adapters off
  if (s.reference) {
    s.reference->set_requires_grad(false);
    s.reference->train(false);
  }
  s.policy->train(true);
  if (s.device.is_cuda()) {
    if (s.reference) s.reference->to(s.device, parse_dtype(b.reference_dtype));
    auto dtype = parse_dtype(b.dtype);
    if (lora && dtype == torch::kFloat32) dtype = parse_dtype(s.config.lora.base_dtype);  // bf16 base weights need autocast
    if (dtype != torch::kFloat32) s.policy->set_autocast(dtype);
    if (b.channels_last) {
      s.policy->set_channels_last(true);
      if (s.reference) s.reference->set_channels_last(true);
    }
  }
  s.policy->set_gradient_checkpointing(b.gradient_checkpointing);
  s.say(s.reference ? "reference: a frozen copy of the policy's initial weights"
                    : "reference: none (every objective declares PD_CAP_REFERENCE_FREE: no reference UNet is built or run)");
  if (s.needs_error_inner_products)
    s.say("error inner products: <e_w,e_l>/D per pair (an objective declares PD_CAP_NEEDS_ERROR_INNER_PRODUCTS)");
}

int64_t parameter_count(const Backbone* model) {
  int64_t count = 0;
  if (model != nullptr)
    for (const auto& [name, p] : model->named_parameters()) count += p.numel();
  return count;
}

// Latents and prompt embeddings must have the shapes the backbone was built for: a clear error now
// instead of a shape mismatch deep inside the first forward pass.
void check_data_fits_backbone(const instance::DataSource& source, const Backbone& policy) {
  const nlohmann::json& config = policy.config();
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
    if (text != nullptr)
      require("prompt_embeds", text->shape.size() - 1, config["cross_attention_dim"].get<int64_t>(), "cross_attention_dim");
  }
}

void set_up_reader(TrainingSession& s, instance::NoiseInstance& noise) {
  check_data_fits_backbone(*s.source, *s.policy);
  if (s.held_out) check_data_fits_backbone(*s.held_out, *s.policy);
  // Label noise: one decision per pair over the whole data set, the same for every rank and objective.
  s.flips = std::make_unique<data::FlipTable>(data::FlipTable::decide(*s.source, noise));
  s.say("data: " + s.source->label() + ", " + std::to_string(s.source->pair_count()) + " pairs; noise '" +
        noise.plugin().id() + "' flipped " + std::to_string(s.flips->fraction()) + " of them");
  data::ReaderOptions o;
  o.seed = s.config.run.seed;
  o.rank = s.env.rank;
  o.world_size = s.env.world_size;
  o.batch_size = static_cast<uint64_t>(s.config.train.batch_size);
  o.caption_dropout = s.config.train.caption_dropout;
  o.flips = s.flips.get();
  s.reader = std::make_unique<data::PairReader>(*s.source, o);
  if (s.reader->batches_per_epoch() == 0)
    throw std::runtime_error("data: " + s.source->label() + " holds " + std::to_string(s.reader->pair_count()) +
                             " pairs, fewer than one batch of " + std::to_string(o.batch_size) + " per rank on " +
                             std::to_string(s.env.world_size) + " rank(s)");
}

void set_up_optimizer(TrainingSession& s) {
  const auto named = s.config.lora.enabled() ? s.policy->lora_parameters() : s.policy->named_parameters();
  for (const auto& [name, p] : named) s.parameters.push_back(p);
  s.optimizer = optim::make_optimizer(s.config.optim, named);
  s.say("optimizer: " + s.optimizer->name() + (s.optimizer->multi_tensor() ? ", multi-tensor update" : ", per-tensor update"));
  s.lr_schedule = std::make_unique<optim::LrSchedule>(
      optim::make_schedule(s.config.schedule, s.config.optim.at("lr").get<double>(), s.config.train.steps));
  if (s.config.train.ema_decay > 0.0) s.ema = std::make_unique<optim::Ema>(named, s.config.train.ema_decay);
}

// Several ranks: hooks that all-reduce the gradients in buckets while backward runs (DDP's scheme; the same
// mean as DataParallelGroup::all_reduce_mean after it). One process keeps no hooks and its bit-exact history.
void set_up_gradient_buckets(TrainingSession& s) {
  if (s.env.world_size == 1) return;
  s.gradient_buckets = std::make_unique<GradientBuckets>(*s.group, s.policy->named_parameters());
}

nlohmann::json run_metadata(const TrainingSession& s, const PluginRegistry& registry) {
  nlohmann::json m;
  m["prefdiff_version"] = prefdiff_version();
  m["source_revision"] = source_revision();
  m["libtorch_version"] = torch_version();
  m["cuda"] = cuda_compiled();
  m["plugin_abi"] = abi_version();
  m["command_line"] = s.options.command_line;
  m["world_size"] = s.env.world_size;
  m["launcher"] = s.env.launcher;
  m["threads_per_rank"] = at::get_num_threads();
  m["realised_flip_fraction"] = s.flips->fraction();
  nlohmann::json plugins = nlohmann::json::array();
  for (const PluginLibrary& p : registry.plugins())
    plugins.push_back({{"id", p.id()}, {"kind", kind_name(p.kind())}, {"version", p.descriptor->version},
                       {"formula_version", p.descriptor->formula_version ? p.descriptor->formula_version : ""},
                       {"abi", std::to_string(p.descriptor->abi_major) + "." + std::to_string(p.descriptor->abi_minor)},
                       {"path", p.path}});
  m["plugins"] = plugins;
  m["backbone"] = {{"id", s.policy->id()}, {"config", s.policy->config()}};
  // What the step computes for the objectives (ABI 1.1): a reference-free run holds no reference weights.
  m["reference"] = {{"built", s.reference != nullptr}, {"parameters", parameter_count(s.reference.get())}};
  m["error_inner_products"] = s.needs_error_inner_products;
  nlohmann::json attributes = nlohmann::json::object();
  for (const auto& [name, value] : s.source->attributes()) attributes[name] = value;
  m["data_source"] = {{"id", s.source->id()}, {"label", s.source->label()}, {"attributes", attributes}};
  return m;
}

// Rank 0 opens the run folder and tells the others where to resume from (step -1: a new run), or that it
// failed (so nobody waits on it until the collective timeout).
fs::path open_run_folder(TrainingSession& s, const Recipe& recipe, const PluginRegistry& registry) {
  std::string shared;  // "ok <step> <checkpoint folder>" or "error <message>"
  if (s.env.rank == 0) {
    try {
      run::RunOptions opt;
      opt.output_dir = s.config.run.output_dir;
      opt.name = s.config.run.name;
      opt.resume = s.options.resume;
      run::RunInfo info;
      info.recipe_toml = recipe.to_toml();
      info.recipe = recipe.values;
      info.overrides = recipe.overrides;
      info.metadata = run_metadata(s, registry);
      s.run = std::make_unique<run::RunDirectory>(run::RunDirectory::open(opt, info));
      shared = "ok " + std::to_string(s.run->resume_step()) + " " +
               (s.run->resuming() ? s.run->resume_checkpoint()->path.string() : std::string());
    } catch (const std::exception& e) {
      shared = std::string("error ") + e.what();
    }
  }
  s.group->broadcast(shared);
  if (shared.rfind("error ", 0) == 0)
    throw std::runtime_error(s.env.rank == 0 ? shared.substr(6) : "rank 0 could not open the run folder (see its error)");
  const size_t space = shared.find(' ', 3);
  const int64_t resume_step = std::stoll(shared.substr(3, space - 3));
  const fs::path resume_from = shared.substr(space + 1);
  s.first_step = std::max<int64_t>(0, resume_step);
  s.metrics = std::make_unique<run::MetricsLogger>(fs::path(s.config.run.folder()),
                                                   run::MetricsOptions{s.env.rank == 0, resume_step, true});
  if (s.env.rank == 0) {
    run::ProgressOptions p;
    p.mode = run::parse_progress_mode(s.config.log.progress);
    p.every_steps = s.config.log.every;
    s.progress = std::make_unique<run::Progress>(s.config.train.steps, stderr, p, std::max<int64_t>(0, resume_step));
  }
  return resume_from;
}

const char* const kLoraFile = "pytorch_lora_weights.safetensors";

// Copies a checkpoint's adapters into the policy's (the optimizer and the EMA hold those very tensors).
void restore_adapters(Backbone& policy, const fs::path& file) {
  const model_io::LoraFile saved = model_io::read_lora_file(file, policy.lora_layers());
  const std::vector<model_io::LoraTensors> current = policy.lora();
  std::map<std::string, const model_io::LoraTensors*> by_module;
  for (const auto& a : saved.adapters) by_module[a.module] = &a;
  torch::NoGradGuard no_grad;
  for (const model_io::LoraTensors& a : current) {
    auto it = by_module.find(a.module);
    if (it == by_module.end() || !it->second->down.sizes().equals(a.down.sizes()) || !it->second->up.sizes().equals(a.up.sizes()))
      throw std::runtime_error(file.string() + ": " + (it == by_module.end() ? "no adapter for layer " : "another adapter shape for layer ") +
                               a.module + " than [lora] makes now. HINT: resume with the recipe the run was started with "
                               "(its recipe.toml)");
    a.down.copy_(it->second->down);
    a.up.copy_(it->second->up);
  }
  if (saved.adapters.size() != current.size())
    throw std::runtime_error(file.string() + " holds " + std::to_string(saved.adapters.size()) + " adapters, [lora] makes " +
                             std::to_string(current.size()) + ". HINT: resume with the recipe the run was started with (its recipe.toml)");
}

// The parts of a checkpoint besides trainer_state.json, each written and read back by its owner.
std::vector<run::CheckpointPart> checkpoint_parts(TrainingSession& s) {
  auto write_tensors = [](const fs::path& path, const optim::NamedTensors& tensors) {
    model_io::NamedTensors cpu;
    for (const auto& [name, t] : tensors) cpu.emplace_back(name, t.detach().to(torch::kCPU).contiguous());
    model_io::write_safetensors(path, cpu);
  };
  auto read_tensors = [](const fs::path& path) { return model_io::SafetensorsFile::open(path).load_all(); };
  std::vector<run::CheckpointPart> parts;
  if (s.config.lora.enabled()) {
    // The adapters as diffusers' LoRA file (diffusers' load_lora_weights reads it; the base is the run's model).
    parts.push_back({[&s](const fs::path& dir) { model_io::write_lora_file(dir / kLoraFile, s.policy->lora()); },
                     [&s](const fs::path& dir) { restore_adapters(*s.policy, dir / kLoraFile); }});
  } else {
    // unet/: a diffusers folder, which diffusers loads unchanged.
    parts.push_back({[&s](const fs::path& dir) { s.policy->save(dir / "unet"); },
                     [&s](const fs::path& dir) { s.policy->load_weights(dir / "unet"); }});
  }
  parts.push_back({[&s, write_tensors](const fs::path& dir) { write_tensors(dir / "optimizer.safetensors", s.optimizer->state()); },
                   [&s, read_tensors](const fs::path& dir) { s.optimizer->load_state(read_tensors(dir / "optimizer.safetensors")); }});
  if (s.ema)
    parts.push_back({[&s, write_tensors](const fs::path& dir) { write_tensors(dir / "ema.safetensors", s.ema->state()); },
                     [&s, read_tensors](const fs::path& dir) { s.ema->load_state(read_tensors(dir / "ema.safetensors")); }});
  return parts;
}

// What a crash report names as the way back (the fatal-signal and exit reporters print it).
void note_checkpoint(const fs::path& checkpoint) {
  instance::set_crash_context(checkpoint.empty() ? "no complete checkpoint yet"
                                                 : "last complete checkpoint: " + checkpoint.string() +
                                                       " (continue with --resume latest)");
}

void restore(TrainingSession& s, const fs::path& checkpoint) {
  const run::TrainerState state = run::restore_checkpoint(checkpoint, checkpoint_parts(s));
  s.epoch = state.epoch;
  s.batch_in_epoch = state.batch_in_epoch;
  s.skipped = state.skipped_steps;
  for (size_t k = 0; k < s.objectives->size() && k < state.objectives.size(); ++k)
    s.objectives->instance(k).load_state(state.objectives[k].second);
  s.say("resumed from " + checkpoint.string() + " at step " + std::to_string(s.first_step));
}

}  // namespace

data::PairBatch TrainingSession::next_batch() {
  data::PairBatch batch;
  while (!reader->next(batch)) {
    ++epoch;
    reader->start(epoch, 0);
  }
  batch_in_epoch = batch.index + 1;
  return batch;
}

double TrainingSession::epoch_fraction() const {
  return static_cast<double>(epoch) +
         static_cast<double>(batch_in_epoch) / static_cast<double>(std::max<uint64_t>(1, reader->batches_per_epoch()));
}

uint64_t TrainingSession::global_pairs() const {
  return static_cast<uint64_t>(config.train.batch_size) * static_cast<uint64_t>(env.world_size);
}

void TrainingSession::save_checkpoint(int64_t step) {
  if (env.rank == 0) {
    run::TrainerState state;
    state.step = step;
    state.epoch = epoch;
    state.batch_in_epoch = batch_in_epoch;
    state.skipped_steps = skipped;
    state.optimizer = optimizer->name();
    for (size_t k = 0; k < objectives->size(); ++k)
      state.objectives.emplace_back(objectives->instance(k).plugin().id(), objectives->instance(k).save_state());
    run::save_checkpoint(*run, state, checkpoint_parts(*this), static_cast<int>(config.train.keep_checkpoints));
  }
  group->barrier();  // no rank runs ahead of a checkpoint it might need
  note_checkpoint(fs::path(config.run.folder()) / "checkpoints" / run::CheckpointStore::name_for(step));
}

void TrainingSession::say(const std::string& message) const {
  if (env.rank != 0) return;
  if (progress)
    progress->message(message);
  else
    log::info(message);
}

std::unique_ptr<TrainingSession> open_session(const Recipe& recipe, PluginRegistry& registry, const TrainOptions& options) {
  auto s = std::make_unique<TrainingSession>();
  s->config = TrainingConfig::from_recipe(recipe.values);
  s->options = options;
  s->objectives = &recipe.components->objectives;
  s->needs_reference = s->objectives->needs_reference();
  s->needs_error_inner_products = s->objectives->needs_error_inner_products();
  set_up_processes(*s);
  open_data_source(*s, *recipe.components);
  set_up_models(*s);
  set_up_reader(*s, *recipe.components->noise);
  set_up_optimizer(*s);
  set_up_gradient_buckets(*s);
  const fs::path resume_from = open_run_folder(*s, recipe, registry);
  note_checkpoint(resume_from);
  if (!resume_from.empty()) restore(*s, resume_from);
  s->reader->start(s->epoch, s->batch_in_epoch);
  return s;
}

}  // namespace prefdiff
