// Key-by-key comparison of resolved recipes for resume.
#include "prefdiff/run/recipe_diff.hpp"

namespace prefdiff::run {
namespace {

bool all_objects(const nlohmann::json& array) {
  if (array.empty()) return false;
  for (const nlohmann::json& e : array)
    if (!e.is_object()) return false;
  return true;
}

void flatten_into(const nlohmann::json& value, const std::string& prefix, std::map<std::string, nlohmann::json>& out) {
  if (value.is_object() && !value.empty()) {
    for (const auto& [k, v] : value.items()) flatten_into(v, prefix.empty() ? k : prefix + "." + k, out);
  } else if (value.is_array() && all_objects(value)) {
    for (std::size_t i = 0; i < value.size(); ++i) flatten_into(value[i], prefix + "[" + std::to_string(i) + "]", out);
  } else {
    out[prefix] = value;
  }
}

// Numbers compare by value: a TOML 2 and 2.0 resolved through different paths are the same setting.
bool same_value(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_number_integer() && b.is_number_integer()) return a == b;  // int64 seeds exceed double precision
  if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
  return a == b;
}

bool glob(const char* k, const char* p) {
  // Iterative '*' matcher with backtracking to the last star.
  const char* star = nullptr;
  const char* resume = nullptr;
  while (*k) {
    if (*p == '*') {
      star = p++;
      resume = k;
    } else if (*p == *k) {
      ++p;
      ++k;
    } else if (star) {
      p = star + 1;
      k = ++resume;
    } else {
      return false;
    }
  }
  while (*p == '*') ++p;
  return *p == '\0';
}

}  // namespace

std::map<std::string, nlohmann::json> flatten_recipe(const nlohmann::json& recipe) {
  std::map<std::string, nlohmann::json> out;
  if (recipe.is_object())
    for (const auto& [k, v] : recipe.items()) flatten_into(v, k, out);
  else if (!recipe.is_null())
    out[""] = recipe;
  return out;
}

std::string RecipeDifference::str() const {
  return key + ": " + (before_present ? before.dump() : "absent") + " -> " + (after_present ? after.dump() : "absent");
}

std::vector<RecipeDifference> diff_recipes(const nlohmann::json& before, const nlohmann::json& after) {
  std::map<std::string, nlohmann::json> a = flatten_recipe(before);
  std::map<std::string, nlohmann::json> b = flatten_recipe(after);
  std::vector<RecipeDifference> out;
  auto ia = a.begin();
  auto ib = b.begin();
  while (ia != a.end() || ib != b.end()) {
    RecipeDifference d;
    if (ib == b.end() || (ia != a.end() && ia->first < ib->first)) {
      d.key = ia->first;
      d.before = ia->second;
      d.before_present = true;
      ++ia;
    } else if (ia == a.end() || ib->first < ia->first) {
      d.key = ib->first;
      d.after = ib->second;
      d.after_present = true;
      ++ib;
    } else {
      bool same = same_value(ia->second, ib->second);
      d.key = ia->first;
      d.before = ia->second;
      d.after = ib->second;
      d.before_present = d.after_present = true;
      ++ia;
      ++ib;
      if (same) continue;
    }
    out.push_back(std::move(d));
  }
  return out;
}

bool key_matches(const std::string& key, const std::string& pattern) { return glob(key.c_str(), pattern.c_str()); }

std::vector<std::string> default_resume_may_differ() {
  // Not train.threads or train.device: they can change floating-point results, and resume is bit-exact.
  return {"train.steps", "train.checkpoint_every", "train.keep_checkpoints", "eval.every", "log.*",
          "run.name",    "run.output_dir",         "run.description",        "distributed.timeout_s"};
}

std::vector<RecipeDifference> disallowed_differences(const nlohmann::json& before, const nlohmann::json& after,
                                                     const std::vector<std::string>& may_differ) {
  std::vector<RecipeDifference> out;
  for (RecipeDifference& d : diff_recipes(before, after)) {
    bool allowed = false;
    for (const std::string& p : may_differ) allowed = allowed || key_matches(d.key, p);
    if (!allowed) out.push_back(std::move(d));
  }
  return out;
}

}  // namespace prefdiff::run
