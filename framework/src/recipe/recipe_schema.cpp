// Host recipe sections. Defaults are the official Diffusion-DPO SD1.5 settings
// (docs/training.md, "The official runs") unless stated.
#include "prefdiff/recipe/recipe_schema.hpp"

#include <limits>

#include <nlohmann/json.hpp>

#include "prefdiff/host/param_json.hpp"

namespace prefdiff {
namespace {

ParamSpec key(std::string name, ValueType type, const nlohmann::json& default_value, std::string doc) {
  ParamSpec k;
  k.name = std::move(name);
  k.type = type;
  if (!default_value.is_null()) {
    k.default_value = value_from_json(default_value);
    k.default_value->shown.clear();
  }
  k.doc = std::move(doc);
  return k;
}
ParamSpec ranged(ParamSpec k, double min, double max, uint32_t flags) {
  k.min = min;
  k.max = max;
  k.bounds = flags;
  return k;
}
ParamSpec at_least(ParamSpec k, double min) { return ranged(std::move(k), min, 0, PD_PARAM_HAS_MIN); }
ParamSpec positive(ParamSpec k) { return ranged(std::move(k), 0, 0, PD_PARAM_HAS_MIN | PD_PARAM_MIN_EXCLUSIVE); }
ParamSpec unit(ParamSpec k) { return ranged(std::move(k), 0, 1, PD_PARAM_HAS_MIN | PD_PARAM_HAS_MAX); }
ParamSpec path(ParamSpec k) {
  k.bounds |= PD_PARAM_PATH;
  return k;
}
ParamSpec one_of(ParamSpec k, std::vector<std::string> choices) {
  k.choices = std::move(choices);
  return k;
}

using V = ValueType;
const nlohmann::json kNoDefault;

std::vector<SectionSpec> build() {
  std::vector<SectionSpec> s;
  s.push_back({"run", "Identity and output of the run.",
               {key("name", V::String, "run", "Run name; the run folder is <output_dir>/<name>."),
                key("output_dir", V::String, "runs", "Folder that holds run folders (relative to the working directory)."),
                at_least(key("seed", V::Int, 0, "Global seed; each rank derives its own from it."), 0),
                key("description", V::String, kNoDefault, "Free text kept in the run folder.")},
               std::nullopt, false});
  s.push_back({"plugins", "Where to look for plugins besides PREFDIFF_PLUGIN_PATH and the install prefix.",
               {path(key("paths", V::StringList, nlohmann::json::array(),
                         "Folders or plugin files, relative to the recipe file that names them."))},
               std::nullopt, false});
  s.push_back({"backbone", "The denoising network (policy and frozen reference).",
               {key("id", V::String, "unet2d", "Backbone implementation."),
                path(key("pretrained", V::String, kNoDefault,
                    "diffusers model folder (containing unet/config.json and weights), relative to the recipe.")),
                path(key("config", V::String, kNoDefault, "A UNet config.json to build with random weights instead (relative to the recipe).")),
                one_of(key("dtype", V::String, "float32", "Policy weights' dtype (bf16/fp16 autocast on CUDA)."),
                       {"float32", "bfloat16", "float16"}),
                one_of(key("reference_dtype", V::String, "bfloat16", "Frozen reference's dtype on GPU (fp32 on CPU)."),
                       {"float32", "bfloat16", "float16"}),
                key("gradient_checkpointing", V::Bool, false, "Recompute block activations in backward (SDXL)."),
                key("channels_last", V::Bool, false, "Use channels-last memory format."),
                key("variant", V::String, kNoDefault, "Weight file variant, e.g. fp16.")},
               std::nullopt, false});
  s.push_back({"lora", "LoRA: train low-rank adapters on the backbone's layers instead of the full model; the "
               "reference is the same model with its adapters off (docs/training.md, \"LoRA\").",
               {at_least(key("rank", V::Int, 0, "Adapter rank r; 0 trains the full model (no LoRA)."), 0),
                at_least(key("alpha", V::Float, 0.0, "lora_alpha: the adapters' output is scaled by alpha/r; 0 = r (scale 1)."), 0),
                unit(key("dropout", V::Float, 0.0, "Dropout on the adapters' input while training.")),
                key("target_modules", V::StringList, nlohmann::json::array({"to_q", "to_k", "to_v", "to_out.0"}),
                    "Layers to adapt: a module name or a dot-separated tail of it (peft's rule: to_q, ff.net.2, proj_in, "
                    "conv1), or a glob over the whole name (up_blocks.*.attn2.to_k)."),
                at_least(key("init_std", V::Float, 0.0, "Std of the down (A) weights' Gaussian init; 0 = 1/r (peft's "
                             "\"gaussian\"). The up (B) weights start at zero."), 0),
                one_of(key("base_dtype", V::String, "float32", "Frozen base weights' dtype on GPU (adapters stay float32, "
                           "the forward runs under autocast); float32 on CPU."),
                       {"float32", "bfloat16", "float16"})},
               std::nullopt, false});
  s.push_back({"data", "The preference-pair source (a dataset plugin) and its parameters.",
               {key("id", V::String, "hdf5-pairs", "Dataset source plugin id.")}, PD_KIND_DATASET, false});
  s.push_back({"noise", "Label noise injected into the pairs (a noise-injector plugin).",
               {key("id", V::String, "none", "Noise injector plugin id; \"none\" keeps labels as they are.")},
               PD_KIND_NOISE_INJECTOR, false});
  s.push_back({"objective",
               "The preference objective (a plugin). [[objective]] entries with weights are summed.",
               {key("id", V::String, "dpo", "Objective plugin id."),
                positive(key("weight", V::Float, 1.0, "Weight of this objective in the sum."))},
               PD_KIND_OBJECTIVE, true});
  s.push_back({"optim", "Optimizer.",
               {one_of(key("name", V::String, "adamw", "adamw (official SD1.5) or adafactor (official SDXL)."),
                       {"adamw", "adafactor"}),
                positive(key("lr", V::Float, 2.048e-5, "Peak learning rate (official: 1e-8 x 2048 pairs per step).")),
                ranged(key("beta1", V::Float, 0.9, "AdamW beta1."), 0, 1, PD_PARAM_HAS_MIN | PD_PARAM_HAS_MAX | PD_PARAM_MAX_EXCLUSIVE),
                ranged(key("beta2", V::Float, 0.999, "AdamW beta2."), 0, 1, PD_PARAM_HAS_MIN | PD_PARAM_HAS_MAX | PD_PARAM_MAX_EXCLUSIVE),
                at_least(key("weight_decay", V::Float, 1e-2, "Decoupled weight decay."), 0),
                positive(key("eps", V::Float, 1e-8, "AdamW epsilon.")),
                positive(key("adafactor_eps1", V::Float, 1e-30, "Adafactor regulariser of the squared gradient.")),
                positive(key("adafactor_eps2", V::Float, 1e-3, "Adafactor parameter-scale floor.")),
                positive(key("adafactor_clip_threshold", V::Float, 1.0, "Adafactor update clipping threshold.")),
                ranged(key("adafactor_decay_rate", V::Float, -0.8, "Adafactor second-moment decay exponent."), -1, 0,
                       PD_PARAM_HAS_MIN | PD_PARAM_HAS_MAX),
                one_of(key("multi_tensor", V::String, "auto",
                           "Update many parameters per kernel (fused AdamW, Adafactor batched by shape): auto = on "
                           "CUDA, off on the CPU (bit-exact with earlier CPU runs); on/off force it. Same update."),
                       {"auto", "on", "off"})},
               std::nullopt, false});
  s.push_back({"schedule", "Learning-rate schedule.",
               {one_of(key("name", V::String, "constant_with_warmup", "Schedule shape."),
                       {"constant", "constant_with_warmup", "cosine"}),
                at_least(key("warmup_steps", V::Int, 500, "Linear warm-up steps (official: 500 SD1.5, 200 SDXL)."), 0),
                unit(key("min_lr_ratio", V::Float, 0.0, "Cosine floor as a fraction of the peak."))},
               std::nullopt, false});
  s.push_back({"train", "The training loop.",
               {at_least(key("steps", V::Int, 2000, "Optimizer steps."), 1),
                at_least(key("batch_size", V::Int, 1, "Pairs per rank per micro-batch."), 1),
                at_least(key("grad_accum", V::Int, 128, "Micro-batches per optimizer step."), 1),
                at_least(key("grad_clip", V::Float, 1.0, "Global gradient-norm clip; 0 disables."), 0),
                unit(key("caption_dropout", V::Float, 0.2, "Fraction of prompts replaced by the empty prompt.")),
                ranged(key("ema_decay", V::Float, 0.0, "EMA of the policy; 0 disables."), 0, 1,
                       PD_PARAM_HAS_MIN | PD_PARAM_HAS_MAX | PD_PARAM_MAX_EXCLUSIVE),
                one_of(key("nan_policy", V::String, "stop", "On a NaN/Inf loss or gradient: stop with an error, or skip the step and count it."),
                       {"stop", "skip"}),
                at_least(key("threads", V::Int, 0, "Intra-op threads per process; 0 = available cores / local ranks."), 0),
                one_of(key("device", V::String, "auto", "Where to train."), {"auto", "cpu", "cuda"}),
                at_least(key("checkpoint_every", V::Int, 500, "Steps between checkpoints; 0 disables."), 0),
                at_least(key("keep_checkpoints", V::Int, 3, "Checkpoints kept (oldest removed)."), 1)},
               std::nullopt, false});
  s.push_back({"eval", "Validation on held-out pairs during training.",
               {at_least(key("every", V::Int, 0, "Steps between validations; 0 disables."), 0),
                at_least(key("pairs", V::Int, 256, "Held-out pairs per validation."), 1)},
               std::nullopt, false});
  s.push_back({"distributed", "Data-parallel training (c10d).",
               {one_of(key("backend", V::String, "auto", "auto = nccl on CUDA, gloo on CPU."), {"auto", "gloo", "nccl"}),
                positive(key("timeout_s", V::Float, 600.0, "Collective timeout; a dead rank ends the job with an error after it."))},
               std::nullopt, false});
  s.push_back({"log", "Logging and metrics.",
               {at_least(key("every", V::Int, 10, "Optimizer steps per metrics window."), 1),
                one_of(key("level", V::String, "info", "Log level."), {"trace", "debug", "info", "warn", "error"}),
                one_of(key("progress", V::String, "auto", "auto = bar on a terminal, plain lines otherwise."),
                       {"auto", "bar", "plain", "off"})},
               std::nullopt, false});
  return s;
}

}  // namespace

const ParamSpec* SectionSpec::key(const std::string& key_name) const {
  for (const ParamSpec& k : keys)
    if (k.name == key_name) return &k;
  return nullptr;
}

const std::vector<SectionSpec>& recipe_sections() {
  static const std::vector<SectionSpec> sections = build();
  return sections;
}

const SectionSpec* find_section(const std::string& name) {
  for (const SectionSpec& s : recipe_sections())
    if (s.name == name) return &s;
  return nullptr;
}

std::vector<std::string> section_names() {
  std::vector<std::string> names;
  for (const SectionSpec& s : recipe_sections()) names.push_back(s.name);
  return names;
}

}  // namespace prefdiff
