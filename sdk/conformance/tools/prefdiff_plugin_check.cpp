// prefdiff-plugin-check: check a tier-1 objective plugin without the prefdiff host.
//   prefdiff-plugin-check PATH [--param key=value ...]                      conformance report; exit 0 = pass
//   prefdiff-plugin-check PATH --eval --margins h1,h2,... [--step N] [--param key=value ...]   JSON
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "prefdiff/conformance.hpp"
#include "prefdiff/instance/plugin_call.hpp"

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

// key=value as given: a number, true/false or a word, checked against the plugin's schema by the resolver.
prefdiff::instance::GivenParam parse_param(const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) throw std::invalid_argument("--param needs key=value, got '" + assignment + "'");
  const std::string text = assignment.substr(eq + 1);
  return {assignment.substr(0, eq), prefdiff::instance::parse_value_text(text), text, ""};
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

  namespace instance = prefdiff::instance;
  instance::install_crash_reporter("prefdiff-plugin-check", 1);
  try {
    const instance::PluginLibrary plugin = instance::load_library(first, instance::default_host_services());
    if (plugin.kind() != PD_KIND_OBJECTIVE)
      throw std::invalid_argument(plugin.label() + " is not an objective; the conformance kit checks objectives");
    std::vector<instance::GivenParam> given;
    for (const std::string& assignment : assignments) given.push_back(parse_param(assignment));
    const instance::ParamSet params = instance::resolve_or_throw(plugin, given);
    if (!eval) {
      const prefdiff::conformance::Report report = prefdiff::conformance::check_objective_isolated(plugin, params);
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
    std::cout << prefdiff::conformance::evaluate_margins_json(plugin, params, margins, step) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "prefdiff-plugin-check: " << e.what() << "\n";
    return 1;
  }
}
