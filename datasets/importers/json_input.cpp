#include "json_input.hpp"

#include <fstream>

namespace prefdiff::data {

nlohmann::json load_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImportError(path + ": cannot open for reading. HINT: check the path");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw ImportError(path + ": not valid JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  }
}

std::string RecordRef::where() const {
  std::string w = file + ", record " + std::to_string(index);
  if (record.is_object() && record.contains("id") && (record["id"].is_string() || record["id"].is_number()))
    w += " (id " + record["id"].dump() + ")";
  return w;
}

void RecordRef::fail(const std::string& key, const std::string& problem, const std::string& hint) const {
  throw ImportError(where() + ": key '" + key + "' " + problem + (hint.empty() ? "" : ". HINT: " + hint));
}

const nlohmann::json& RecordRef::require(const std::string& key) const {
  if (!record.is_object()) throw ImportError(where() + ": is not a JSON object. HINT: is this the right format for the importer?");
  auto it = record.find(key);
  if (it == record.end()) fail(key, "is missing", "is this file in the format the importer expects? see docs/data-format.md");
  return *it;
}

std::string RecordRef::string(const std::string& key) const {
  const nlohmann::json& v = require(key);
  if (!v.is_string()) fail(key, "is " + std::string(v.type_name()) + ", expected a string", "");
  return v.get<std::string>();
}

std::vector<std::string> RecordRef::strings(const std::string& key) const {
  const nlohmann::json& v = require(key);
  if (!v.is_array()) fail(key, "is " + std::string(v.type_name()) + ", expected an array of strings", "");
  std::vector<std::string> out;
  for (const auto& x : v) {
    if (!x.is_string()) fail(key, "holds " + std::string(x.type_name()) + ", expected strings", "");
    out.push_back(x.get<std::string>());
  }
  return out;
}

std::vector<double> RecordRef::numbers(const std::string& key) const {
  const nlohmann::json& v = require(key);
  if (!v.is_array()) fail(key, "is " + std::string(v.type_name()) + ", expected an array of numbers", "");
  std::vector<double> out;
  for (const auto& x : v) {
    if (!x.is_number()) fail(key, "holds " + std::string(x.type_name()) + ", expected numbers", "");
    out.push_back(x.get<double>());
  }
  return out;
}

}  // namespace prefdiff::data
