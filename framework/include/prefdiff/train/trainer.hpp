// `prefdiff train RECIPE`: the Diffusion-DPO training loop (docs/training.md, docs/architecture.md) from one
// CPU to many GPUs.
#pragma once

#include <string>

#include "prefdiff/host/plugin_registry.hpp"
#include "prefdiff/host/recipe.hpp"

namespace prefdiff {

struct TrainOptions {
  std::string resume;  // "" (new run), "latest", or a checkpoint folder
  std::string command_line;
};

// Runs the recipe to its last step. Throws on any failure with a message naming what and where.
void run_training(const Recipe& recipe, PluginRegistry& registry, const TrainOptions& options);

}  // namespace prefdiff
