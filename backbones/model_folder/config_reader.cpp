// Typed config.json reading that collects every problem with its key before failing once.
#include "model_folder/config_reader.hpp"

#include <memory>
#include <sstream>

namespace prefdiff::model_folder {

using json = nlohmann::json;

ConfigReader::ConfigReader(const json& object, std::string origin, std::string scope)
    : ConfigReader(object, std::move(origin), std::move(scope), std::make_shared<std::vector<std::string>>()) {}

ConfigReader::ConfigReader(const json& object, std::string origin, std::string scope,
                           std::shared_ptr<std::vector<std::string>> problems)
    : object_(object.is_object() ? object : json::object()),
      origin_(std::move(origin)),
      scope_(std::move(scope)),
      problems_(std::move(problems)) {
  if (!object.is_object()) problems_->push_back((scope_.empty() ? std::string("the file") : "'" + scope_.substr(0, scope_.size() - 1) + "'") +
                                                " must be a JSON object, got " + object.dump().substr(0, 80));
}

const json* ConfigReader::find(const std::string& key) const {
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool ConfigReader::has(const std::string& key) const { return find(key) != nullptr; }

void ConfigReader::problem(const std::string& key, const std::string& message) {
  problems_->push_back("'" + scope_ + key + "' " + message);
}

const json* ConfigReader::required(const std::string& key) {
  const json* v = find(key);
  if (!v) problem(key, "is missing (required: it fixes the shapes of the weights)");
  return v;
}

int64_t ConfigReader::integer(const std::string& key, int64_t min_value) {
  const json* v = required(key);
  if (!v) return min_value;
  if (!v->is_number_integer() || v->get<int64_t>() < min_value) {
    problem(key, "must be an integer >= " + std::to_string(min_value) + ", got " + v->dump());
    return min_value;
  }
  return v->get<int64_t>();
}

double ConfigReader::number(const std::string& key) {
  const json* v = required(key);
  if (!v) return 0;
  if (!v->is_number()) {
    problem(key, "must be a number, got " + v->dump());
    return 0;
  }
  return v->get<double>();
}

std::vector<int64_t> ConfigReader::integers(const std::string& key, int64_t min_value) {
  const json* v = required(key);
  if (!v) return {};
  bool ok = v->is_array() && !v->empty();
  if (ok)
    for (const auto& e : *v) ok = ok && e.is_number_integer() && e.get<int64_t>() >= min_value;
  if (!ok) {
    problem(key, "must be a non-empty list of integers >= " + std::to_string(min_value) + ", got " + v->dump());
    return {};
  }
  return v->get<std::vector<int64_t>>();
}

std::vector<std::string> ConfigReader::strings(const std::string& key) {
  const json* v = required(key);
  if (!v) return {};
  bool ok = v->is_array() && !v->empty();
  if (ok)
    for (const auto& e : *v) ok = ok && e.is_string();
  if (!ok) {
    problem(key, "must be a non-empty list of strings, got " + v->dump());
    return {};
  }
  return v->get<std::vector<std::string>>();
}

int64_t ConfigReader::integer_or(const std::string& key, int64_t fallback, int64_t min_value) {
  return has(key) ? integer(key, min_value) : fallback;
}

double ConfigReader::number_or(const std::string& key, double fallback) { return has(key) ? number(key) : fallback; }

bool ConfigReader::boolean_or(const std::string& key, bool fallback) {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_boolean()) {
    problem(key, "must be true or false, got " + v->dump());
    return fallback;
  }
  return v->get<bool>();
}

std::string ConfigReader::string_or(const std::string& key, const std::string& fallback) {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_string()) {
    problem(key, "must be a string, got " + v->dump());
    return fallback;
  }
  return v->get<std::string>();
}

std::optional<std::vector<double>> ConfigReader::numbers_opt(const std::string& key) {
  const json* v = find(key);
  if (!v) return std::nullopt;
  bool ok = v->is_array() && !v->empty();
  if (ok)
    for (const auto& e : *v) ok = ok && e.is_number();
  if (!ok) {
    problem(key, "must be null or a non-empty list of numbers, got " + v->dump());
    return std::nullopt;
  }
  return v->get<std::vector<double>>();
}

std::string ConfigReader::choice(const std::string& key, const std::string& fallback,
                                 const std::vector<std::string>& allowed) {
  std::string s = string_or(key, fallback);
  for (const auto& a : allowed)
    if (s == a) return s;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "\"" : ", \"") + a + "\"";
  problem(key, "is \"" + s + "\"; prefdiff supports " + list);
  return fallback;
}

ConfigReader ConfigReader::nested(const std::string& key) {
  const json* v = find(key);
  if (!v) {
    problem(key, "is missing (required: a JSON object)");
    return ConfigReader(json::object(), origin_, scope_ + key + ".", problems_);
  }
  if (!v->is_object()) {
    problem(key, "must be a JSON object, got " + v->dump().substr(0, 80));
    return ConfigReader(json::object(), origin_, scope_ + key + ".", problems_);
  }
  return ConfigReader(*v, origin_, scope_ + key + ".", problems_);
}

void ConfigReader::finish(const std::string& what, const std::string& hint) const {
  if (problems_->empty()) return;
  std::ostringstream msg;
  msg << origin_ << ": " << problems_->size() << " problem(s) in " << what << ":";
  for (const auto& p : *problems_) msg << "\n  " << p;
  if (!hint.empty()) msg << "\nHINT: " << hint;
  throw ConfigError(msg.str());
}

}  // namespace prefdiff::model_folder
