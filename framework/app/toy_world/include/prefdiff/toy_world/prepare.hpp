// Turning a toy-world [data] section into files the trainer reads: the pretrained reference UNet (a
// diffusers folder) and the train / held-out pair shards, all cached by content hash so a sweep builds
// them once (docs/toy-world.md, "Cache").
#ifndef PREFDIFF_TOY_WORLD_PREPARE_HPP
#define PREFDIFF_TOY_WORLD_PREPARE_HPP

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "prefdiff/backbone.hpp"
#include "prefdiff/diffusion/noise_schedule.hpp"
#include "prefdiff/toy_world/world.hpp"

namespace prefdiff::toy {

struct PrepareOptions {
  // Cache root; empty: WorldConfig::cache_dir, else ${PREFDIFF_CACHE:-~/.cache/prefdiff}/toy-world.
  std::filesystem::path cache_root;
};

struct PreparedWorld {
  std::filesystem::path train_shard;      // <data_dir>/train.h5
  std::filesystem::path heldout_shard;    // <data_dir>/heldout.h5 (clean, oracle labels)
  std::filesystem::path reference_model;  // <reference_dir>/unet: a diffusers folder (config.json + safetensors)
  std::filesystem::path reference_dir;    // <root>/reference-<reference_key>
  std::filesystem::path data_dir;         // <root>/data-<data_key>
  std::string reference_key, data_key;
  bool reference_built = false;           // false: found in the cache
  bool data_built = false;
  nlohmann::json pretrain_report;         // <reference_dir>/pretrain.json: losses, time, sample quality
};

// Builds (or finds in the cache) the reference model and the pair shards of a world. Pretraining runs on
// the CPU with the caller's intra-op thread count, so its result is the same on every machine.
// Safe to call from several processes at once.
PreparedWorld prepare_world(const WorldConfig& config, const PrepareOptions& options = {});

// The cache root prepare_world() uses.
std::filesystem::path cache_root(const WorldConfig& config, const PrepareOptions& options = {});
// Content hashes: world + pretraining + UNet config + code and LibTorch versions (reference), and that
// plus the pair knobs (data).
std::string reference_key(const WorldConfig& config);
std::string data_key(const WorldConfig& config);

// The reference UNet's config.json: unet_config (or the built-in fixture) with in/out channels,
// sample_size and cross_attention_dim set from the world.
nlohmann::json reference_unet_config(const WorldConfig& config);

// The diffusion schedule of the world (SD's: 1000 steps, scaled_linear 0.00085..0.012, epsilon, DDIM with
// leading spacing, steps_offset 1, set_alpha_to_one false). Pretraining, pair sampling and evaluation
// all use it; the trainer's default schedule is the same.
diffusion::ScheduleConfig schedule_config();

// Loads the prepared reference ("unet2d" backbone) onto a device.
std::unique_ptr<Backbone> load_reference(const PreparedWorld& prepared, const BackboneOptions& options = {});

// DDIM samples of `model` for the given prompts, from the world's standard-normal draws
// (noise_stream, noise_index[i]) — the same inputs give the same samples for any two models. Returns
// N*C*h*w floats (CPU, row-major). guidance_scale <= 1: no guidance; else the null embedding is the
// unconditional input.
std::vector<float> sample_model(Backbone& model, const World& world, const std::vector<int64_t>& prompts,
                                uint64_t noise_stream, const std::vector<uint64_t>& noise_index, int64_t steps,
                                double guidance_scale, int64_t batch_size = 256);

// How close a model's samples are to the base distribution: per prompt `samples` DDIM samples, the mean
// squared distance per element to the nearest mode (base samples: noise_std^2), and the total-variation
// distance between the nearest-mode histogram and the mixture weights.
nlohmann::json sample_quality(Backbone& model, const World& world, int64_t samples, int64_t steps, uint64_t seed);

}  // namespace prefdiff::toy

#endif  // PREFDIFF_TOY_WORLD_PREPARE_HPP
