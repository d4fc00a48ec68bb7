// `prefdiff train RECIPE`: the Diffusion-DPO training loop, from one CPU to many GPUs: a session
// (session.hpp) set up once, then train_step() (step.hpp) per optimizer step, with metrics, validation and
// checkpoints around it. See docs/training.md.
#pragma once

#include <string>

#include "prefdiff/host/plugin_registry.hpp"
#include "prefdiff/recipe/recipe.hpp"

namespace prefdiff {

struct TrainOptions {
  std::string resume;  // "" (new run), "latest", or a checkpoint folder
  std::string command_line;
};

// Runs the recipe to its last step. Throws on any failure with a message naming what and where.
void run_training(const Recipe& recipe, PluginRegistry& registry, const TrainOptions& options);

}  // namespace prefdiff
