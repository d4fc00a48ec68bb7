#pragma once
// Typed reading of a model's config.json (diffusers or transformers), torch-free. Every problem is collected
// and reported at once, naming the file and the key; keys the reader is never asked about are ignored
// (transformers and diffusers configs carry many that do not change the network).

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace prefdiff::model_folder {

// A config.json that cannot describe the network: what() names the file, every bad key and a HINT.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ConfigReader {
 public:
  // `origin` names the file in messages; `scope` prefixes key names (e.g. "text_config.").
  ConfigReader(const nlohmann::json& object, std::string origin, std::string scope = "");

  bool has(const std::string& key) const;  // present and not null
  const nlohmann::json* find(const std::string& key) const;  // nullptr when absent or null

  // Required keys: a missing one is a problem ("missing key").
  int64_t integer(const std::string& key, int64_t min_value);
  double number(const std::string& key);
  std::vector<int64_t> integers(const std::string& key, int64_t min_value);  // non-empty list
  std::vector<std::string> strings(const std::string& key);                  // non-empty list

  // Optional keys: `fallback` when absent or null (the library's documented default).
  int64_t integer_or(const std::string& key, int64_t fallback, int64_t min_value);
  double number_or(const std::string& key, double fallback);
  bool boolean_or(const std::string& key, bool fallback);
  std::string string_or(const std::string& key, const std::string& fallback);
  // A list of numbers, or nullopt when absent or null.
  std::optional<std::vector<double>> numbers_opt(const std::string& key);
  // The value must be one of `allowed` (after the fallback for absent keys).
  std::string choice(const std::string& key, const std::string& fallback, const std::vector<std::string>& allowed);

  void problem(const std::string& key, const std::string& message);
  const std::vector<std::string>& problems() const { return *problems_; }
  const std::string& origin() const { return origin_; }
  // A reader for a nested object (`key` must be an object; else a problem and an empty object).
  ConfigReader nested(const std::string& key);

  // Throws ConfigError listing every problem (of this reader and its nested readers), `what` naming the
  // model kind ("the VAE config"), then `hint`. No-op when there is none.
  void finish(const std::string& what, const std::string& hint) const;

 private:
  ConfigReader(const nlohmann::json& object, std::string origin, std::string scope,
               std::shared_ptr<std::vector<std::string>> problems);
  const nlohmann::json* required(const std::string& key);

  nlohmann::json object_;
  std::string origin_, scope_;
  std::shared_ptr<std::vector<std::string>> problems_;
};

}  // namespace prefdiff::model_folder
