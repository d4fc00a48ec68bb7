// prefdiff-plugin-check: check a tier-1 objective plugin without the prefdiff host.
//   prefdiff-plugin-check PATH [--param key=value ...]                      conformance report; exit 0 = pass
//   prefdiff-plugin-check PATH --eval --margins h1,h2,... [--step N] [--param key=value ...]   JSON
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <string>
#include <vector>

#include "prefdiff/conformance.hpp"

namespace {

const char* const kUsage =
    "usage: prefdiff-plugin-check PLUGIN.so [--param key=value ...]\n"
    "       prefdiff-plugin-check PLUGIN.so --eval --margins h1,h2,... [--step N] [--param key=value ...]\n"
    "Runs the prefdiff conformance checks on an objective plugin (exit 0 when all pass, 1 otherwise), or\n"
    "with --eval prints its loss, dl/dh and diagnostics at the given margins as JSON.\n";

int usage_error(const std::string& message) {
  std::cerr << "prefdiff-plugin-check: " << message << "\n" << kUsage;
  return 2;
}

bool parse_double(const std::string& text, double* value) {
  char* end = nullptr;
  errno = 0;
  *value = std::strtod(text.c_str(), &end);
  return !text.empty() && end != nullptr && *end == '\0' && errno == 0;
}

// key=value typed by the plugin's schema. String values live in `strings` (a deque never moves them).
pd_param_value parse_param(const pd_plugin_descriptor& plugin, const std::string& assignment,
                           std::deque<std::string>& strings) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) throw std::invalid_argument("--param needs key=value, got '" + assignment + "'");
  const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  for (uint32_t s = 0; s < plugin.param_count; ++s) {
    const pd_param_spec& spec = plugin.params[s];
    if (spec.name == nullptr || key != spec.name) continue;
    pd_param_value value{};
    value.struct_size = sizeof(pd_param_value);
    value.type = spec.type;
    value.name = spec.name;
    if (spec.type == PD_PARAM_STRING) {
      strings.push_back(text);
      value.string = strings.back().c_str();
    } else if (spec.type == PD_PARAM_BOOL) {
      if (text != "true" && text != "false" && text != "1" && text != "0")
        throw std::invalid_argument("--param " + key + ": expected true or false, got '" + text + "'");
      value.number = (text == "true" || text == "1") ? 1.0 : 0.0;
    } else if (!parse_double(text, &value.number)) {
      throw std::invalid_argument("--param " + key + ": '" + text + "' is not a number");
    }
    return value;
  }
  throw std::invalid_argument("plugin '" + std::string(plugin.id) + "' has no parameter '" + key + "'");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage_error("give the plugin's path");
  const std::string first = argv[1];
  if (first == "--help" || first == "-h") {
    std::cout << kUsage;
    return 0;
  }
  std::vector<std::string> assignments;
  std::string margins_text;
  bool eval = false;
  long long step = 0;
  for (int a = 2; a < argc; ++a) {
    const std::string arg = argv[a];
    if (arg == "--eval") {
      eval = true;
    } else if ((arg == "--param" || arg == "--margins" || arg == "--step") && a + 1 < argc) {
      const std::string value = argv[++a];
      if (arg == "--param") assignments.push_back(value);
      else if (arg == "--margins") margins_text = value;
      else {
        char* end = nullptr;
        step = std::strtoll(value.c_str(), &end, 10);
        if (value.empty() || *end != '\0') return usage_error("--step needs an integer, got '" + value + "'");
      }
    } else {
      return usage_error("unknown or incomplete argument '" + arg + "'");
    }
  }
  if (eval != !margins_text.empty()) return usage_error("--eval and --margins go together");

  try {
    const prefdiff::conformance::LoadedPlugin plugin = prefdiff::conformance::load_plugin(first);
    std::deque<std::string> strings;
    std::vector<pd_param_value> params;
    for (const std::string& assignment : assignments) params.push_back(parse_param(*plugin.descriptor, assignment, strings));
    if (!eval) {
      const prefdiff::conformance::Report report = prefdiff::conformance::check_objective(*plugin.descriptor, params);
      std::cout << report.text();
      return report.passed() ? 0 : 1;
    }
    std::vector<double> margins;
    size_t begin = 0;
    while (begin <= margins_text.size()) {
      const size_t comma = std::min(margins_text.find(',', begin), margins_text.size());
      double h = 0.0;
      if (!parse_double(margins_text.substr(begin, comma - begin), &h))
        return usage_error("--margins: '" + margins_text.substr(begin, comma - begin) + "' is not a number");
      margins.push_back(h);
      begin = comma + 1;
    }
    std::cout << prefdiff::conformance::evaluate_margins_json(*plugin.descriptor, params, margins, step) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "prefdiff-plugin-check: " << e.what() << "\n";
    return 1;
  }
}
