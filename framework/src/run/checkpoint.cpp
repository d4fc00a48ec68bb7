#include "prefdiff/run/checkpoint.hpp"

#include <fstream>
#include <sstream>

#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/run/checkpoint_store.hpp"

namespace prefdiff::run {
namespace {

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

}  // namespace

nlohmann::json TrainerState::to_json() const {
  nlohmann::json state;
  state["step"] = step;
  state["epoch"] = epoch;
  state["batch_in_epoch"] = batch_in_epoch;
  state["skipped_steps"] = skipped_steps;
  state["optimizer"] = optimizer;
  state["objectives"] = nlohmann::json::array();
  for (const auto& [id, bytes] : objectives) state["objectives"].push_back({{"id", id}, {"state_hex", hex(bytes)}});
  return state;
}

TrainerState TrainerState::from_json(const nlohmann::json& state) {
  TrainerState s;
  s.step = state.value("step", int64_t{0});
  s.epoch = state.at("epoch").get<uint64_t>();
  s.batch_in_epoch = state.at("batch_in_epoch").get<uint64_t>();
  s.skipped_steps = state.at("skipped_steps").get<int64_t>();
  s.optimizer = state.value("optimizer", "");
  for (const auto& objective : state.at("objectives"))
    s.objectives.emplace_back(objective.value("id", ""), unhex(objective.at("state_hex").get<std::string>()));
  return s;
}

std::filesystem::path save_checkpoint(RunDirectory& run, const TrainerState& state, const std::vector<CheckpointPart>& parts,
                                      int keep) {
  AtomicDirectory folder = run.checkpoints().begin(state.step, run.checkpoint_meta());
  for (const CheckpointPart& part : parts) part.save(folder.path());
  folder.write_file(kTrainerStateFile, state.to_json().dump(2));
  const std::filesystem::path path = folder.final_path();
  folder.commit();
  run.checkpoints().prune(keep);
  return path;
}

TrainerState restore_checkpoint(const std::filesystem::path& folder, const std::vector<CheckpointPart>& parts) {
  for (const CheckpointPart& part : parts) part.restore(folder);
  const std::filesystem::path file = folder / kTrainerStateFile;
  const std::string hint = "HINT: resume from a checkpoint written by prefdiff train (or start a new run folder)";
  std::ifstream in(file);
  if (!in) throw RunError(file.string() + " cannot be read; " + hint);
  std::stringstream text;
  text << in.rdbuf();
  try {
    return TrainerState::from_json(nlohmann::json::parse(text.str()));
  } catch (const nlohmann::json::exception& e) {
    throw RunError(file.string() + " is incomplete or damaged (" + e.what() + "); " + hint);
  }
}

}  // namespace prefdiff::run
