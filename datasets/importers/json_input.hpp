// Reading source JSON with errors that name the file, the record and the key.
#ifndef PREFDIFF_DATA_JSON_INPUT_HPP
#define PREFDIFF_DATA_JSON_INPUT_HPP

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace prefdiff::data {

class ImportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses a whole JSON file; a syntax error names the file and the byte offset.
nlohmann::json load_json_file(const std::string& path);

// One record of a source file, for error messages: "<file>, record <i>".
struct RecordRef {
  const std::string& file;
  size_t index;
  const nlohmann::json& record;
  std::string where() const;
  [[noreturn]] void fail(const std::string& key, const std::string& problem, const std::string& hint) const;
  const nlohmann::json& require(const std::string& key) const;
  std::string string(const std::string& key) const;
  std::vector<std::string> strings(const std::string& key) const;
  std::vector<double> numbers(const std::string& key) const;
};

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_JSON_INPUT_HPP
