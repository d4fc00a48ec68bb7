// The host's recipe sections as typed values, read once from a validated recipe (whose values are
// checked and defaulted by the recipe schema, so reading cannot fail). Everything downstream (the
// trainer, the dry run) takes these, never a section and a key string.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace prefdiff {

struct RunConfig {
  std::string name;
  std::string output_dir;
  uint64_t seed = 0;
  std::string folder() const { return (std::filesystem::path(output_dir) / name).string(); }
};

struct BackboneConfig {
  std::string id;
  std::string pretrained;  // a diffusers folder, or ""
  std::string config;      // a UNet config.json for random init, or ""
  std::string variant;
  std::string dtype, reference_dtype;
  bool gradient_checkpointing = false;
  bool channels_last = false;
};

struct LoraConfig {  // [lora]
  int64_t rank = 0;  // 0: full fine-tuning
  double alpha = 0.0;  // resolved: rank when the recipe says 0
  double dropout = 0.0;
  std::vector<std::string> target_modules;
  double init_std = 0.0;
  std::string base_dtype;
  bool enabled() const { return rank > 0; }
};

struct LoopConfig {  // [train]
  int64_t steps = 0;
  int64_t batch_size = 0;  // pairs per rank per micro-batch
  int64_t grad_accum = 0;
  double grad_clip = 0.0;
  double caption_dropout = 0.0;
  double ema_decay = 0.0;
  bool skip_bad_steps = false;  // nan_policy = "skip"
  int64_t threads = 0;
  std::string device;
  int64_t checkpoint_every = 0;
  int64_t keep_checkpoints = 0;
};

struct ValidationConfig {  // [eval]
  int64_t every = 0;
  int64_t pairs = 0;
};

struct DistributedConfig {
  std::string backend;
  double timeout_s = 0.0;
};

struct LogConfig {
  int64_t every = 0;
  std::string level, progress;
};

struct TrainingConfig {
  RunConfig run;
  BackboneConfig backbone;
  LoraConfig lora;
  LoopConfig train;
  ValidationConfig eval;
  DistributedConfig distributed;
  LogConfig log;
  nlohmann::json optim, schedule;  // read by optim::make_optimizer / make_schedule, their own typed readers

  // From a validated recipe's values (Recipe::values).
  static TrainingConfig from_recipe(const nlohmann::json& values);
};

}  // namespace prefdiff
