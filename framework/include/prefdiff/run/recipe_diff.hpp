// Comparing two resolved recipes (as JSON) key by key, for resume: a checkpoint written under one recipe
// is refused under another, except for keys that may change on resume (more steps, logging, ...).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/run/atomic_dir.hpp"

namespace prefdiff::run {

// Leaves as "section.key" paths. Arrays of tables are indexed ("objective[1].beta"); other arrays are
// leaves compared whole. Empty tables are kept as leaves so that adding one is a difference.
std::map<std::string, nlohmann::json> flatten_recipe(const nlohmann::json& recipe);

struct RecipeDifference {
  std::string key;
  nlohmann::json before;  // null when absent
  nlohmann::json after;
  bool before_present = false;
  bool after_present = false;
  std::string str() const;  // "train.batch_size: 4 -> 8", "objective[0].beta: absent -> 5000"
};

// Every differing leaf, sorted by key.
std::vector<RecipeDifference> diff_recipes(const nlohmann::json& before, const nlohmann::json& after);

// Glob over a flattened key: '*' matches any run of characters (dots included). "log.*" matches
// "log.every"; "objective[*].weight" matches every objective's weight.
bool key_matches(const std::string& key, const std::string& pattern);

// Keys allowed to differ on resume by default: how long to train and what to log, not what is trained.
std::vector<std::string> default_resume_may_differ();

// Differences not covered by `may_differ`.
std::vector<RecipeDifference> disallowed_differences(const nlohmann::json& before, const nlohmann::json& after,
                                                     const std::vector<std::string>& may_differ);

}  // namespace prefdiff::run
