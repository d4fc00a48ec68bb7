// Saving and restoring a training checkpoint: the folder is written through the run's CheckpointStore
// (atomic, with its completion marker) by the parts that own what is in it (the policy's diffusers folder,
// the optimizer's and the EMA's tensors, written by the trainer), plus trainer_state.json: where the data
// stream stands, the counters, and every objective plugin's own state. Torch-free: the parts bring their
// own writers. See docs/training.md, "Checkpoints and resume".
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/run/run_directory.hpp"

namespace prefdiff::run {

inline constexpr const char* kTrainerStateFile = "trainer_state.json";

// What trainer_state.json holds.
struct TrainerState {
  int64_t step = 0;
  uint64_t epoch = 0;
  uint64_t batch_in_epoch = 0;  // batches of `epoch` already read on each rank
  int64_t skipped_steps = 0;
  std::string optimizer;
  std::vector<std::pair<std::string, std::string>> objectives;  // (plugin id, the plugin's state bytes)

  nlohmann::json to_json() const;  // objective states as lower-case hex
  static TrainerState from_json(const nlohmann::json& state);  // throws nlohmann::json::exception when damaged
};

// One part of a checkpoint folder, written and read back by its owner.
struct CheckpointPart {
  std::function<void(const std::filesystem::path& folder)> save;
  std::function<void(const std::filesystem::path& folder)> restore;
};

// Writes checkpoint `state.step` of `run`: every part, then trainer_state.json, then the completion marker
// (all or nothing); keeps the newest `keep` checkpoints. Returns the checkpoint folder.
std::filesystem::path save_checkpoint(RunDirectory& run, const TrainerState& state, const std::vector<CheckpointPart>& parts,
                                      int keep);

// Restores every part from `folder` and returns its trainer state. Throws RunError naming
// trainer_state.json and the way out when that file is missing, incomplete or damaged.
TrainerState restore_checkpoint(const std::filesystem::path& folder, const std::vector<CheckpointPart>& parts);

}  // namespace prefdiff::run
