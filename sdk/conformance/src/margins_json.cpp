// evaluate_margins_json(): a plugin's loss, dl/dh and diagnostics at chosen margins, as JSON, so that
// golden files and other implementations can be compared number by number.
#include <cmath>
#include <cstdio>
#include <string>

#include "prefdiff/conformance.hpp"
#include "prefdiff/instance/library.hpp"

namespace prefdiff::conformance {
namespace {

std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";  // JSON has no NaN/Inf; the plugin contract forbids them anyway
  char text[64];
  std::snprintf(text, sizeof(text), "%.17g", value);
  return text;
}

std::string json_string(const char* text) {
  std::string out = "\"";
  for (const char* c = text != nullptr ? text : ""; *c != '\0'; ++c) {
    const unsigned char ch = static_cast<unsigned char>(*c);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += *c;
    } else if (ch < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", ch);
      out += escaped;
    } else {
      out += *c;
    }
  }
  return out + "\"";
}

std::string json_array(const std::vector<double>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i > 0 ? ", " : "") + json_number(values[i]);
  return out + "]";
}

Evaluation evaluate_or_throw(const PluginLibrary& plugin, const ParamSet& params, const Batch& batch) {
  ObjectiveInstance instance(plugin, params);
  Batch inputs = batch;
  if ((plugin.descriptor->capabilities & PD_CAP_NEEDS_ERROR_INNER_PRODUCTS) != 0) {
    // The loss as a function of h alone: consistent norms and orthogonal errors (<e_w,e_l> = 0).
    inputs.error_ww = batch.model_w;
    inputs.error_ll = batch.model_l;
    inputs.error_wl.assign(batch.size(), 0.0);
  }
  Evaluation e = instance.try_evaluate(inputs);
  if (e.status != PD_OK) throw PluginError(e.status, "evaluate() of '" + plugin.id() + "' failed: " + e.message);
  return e;
}

}  // namespace

std::string evaluate_margins_json(const PluginLibrary& plugin, const Params& params, const std::vector<double>& margins,
                                  int64_t step) {
  return evaluate_margins_json(plugin, instance::resolve_or_throw(plugin, params), margins, step);
}

std::string evaluate_margins_json(const PluginLibrary& plugin, const ParamSet& resolved,
                                  const std::vector<double>& margins, int64_t step) {
  for (double h : margins)
    if (!std::isfinite(h)) throw std::invalid_argument("margin " + json_number(h) + " is not finite");

  // dh/dmodel_w from the plugin itself (= -beta/2 exactly for h = -0.5*beta*(...) at model_w = 1).
  const Evaluation probe = evaluate_or_throw(plugin, resolved, Batch{{0.0, 1.0}, {0.0, 0.0}, {0.0, 0.0}, {0.0, 0.0}, {}, step, 0});
  const double slope = probe.margin[1] - probe.margin[0];
  if (!std::isfinite(slope) || slope == 0.0)
    throw PluginError(PD_ERR_INVALID_ARGUMENT, "the margin of '" + plugin.id() + "' does not respond to model_w");

  // Inputs: model_l = ref_w = ref_l = 0 and model_w near h/slope. Not every double is slope*x for a
  // double x, so the 9 neighbours of h/slope are tried and the one whose margin is exactly h is kept.
  constexpr int kNeighbours = 4;
  Batch candidates;
  candidates.step = step;
  for (double h : margins) {
    double x = h / slope;
    for (int k = 0; k < kNeighbours; ++k) x = std::nextafter(x, -INFINITY);
    for (int k = 0; k <= 2 * kNeighbours; ++k, x = std::nextafter(x, INFINITY)) {
      candidates.model_w.push_back(x);
      candidates.model_l.push_back(0.0);
      candidates.ref_w.push_back(0.0);
      candidates.ref_l.push_back(0.0);
    }
  }
  const Evaluation tried = evaluate_or_throw(plugin, resolved, candidates);
  Batch batch;
  batch.step = step;
  bool exact = true;
  for (size_t i = 0; i < margins.size(); ++i) {
    size_t best = i * (2 * kNeighbours + 1);
    for (size_t k = best; k < (i + 1) * (2 * kNeighbours + 1); ++k)
      if (std::fabs(tried.margin[k] - margins[i]) < std::fabs(tried.margin[best] - margins[i])) best = k;
    exact = exact && tried.margin[best] == margins[i];
    batch.model_w.push_back(candidates.model_w[best]);
    batch.model_l.push_back(0.0);
    batch.ref_w.push_back(0.0);
    batch.ref_l.push_back(0.0);
  }

  // A fresh instance on exactly the requested pairs: batch statistics (alpha) and state see only them.
  const Evaluation e = evaluate_or_throw(plugin, resolved, batch);
  std::vector<double> dloss_dh(margins.size());
  for (size_t i = 0; i < margins.size(); ++i) dloss_dh[i] = e.dloss_dmodel_w[i] / slope;

  const pd_plugin_descriptor& d = *plugin.descriptor;
  std::string json = "{\"plugin\": " + json_string(d.id) + ", \"version\": " + json_string(d.version) +
                     ", \"formula_version\": " + json_string(d.formula_version) +
                     ", \"step\": " + std::to_string(step) + ", \"params\": {";
  const std::vector<pd_param_value>& values = resolved.abi();
  for (size_t k = 0; k < values.size(); ++k) {
    json += (k > 0 ? ", " : "") + json_string(values[k].name) + ": ";
    json += values[k].type == PD_PARAM_STRING ? json_string(values[k].string) : json_number(values[k].number);
  }
  json += "}, \"h\": " + json_array(e.margin) + ", \"h_exact\": " + (exact ? "true" : "false") +
          ", \"loss\": " + json_array(e.loss) + ", \"dloss_dh\": " + json_array(dloss_dh) + ", \"diagnostics\": {";
  const auto& functions = *static_cast<const pd_objective_functions*>(d.functions);
  for (uint32_t k = 0; k < functions.diagnostic_count; ++k)
    json += (k > 0 ? ", " : "") + json_string(functions.diagnostic_names[k]) + ": " + json_number(e.diagnostics[k]);
  return json + "}}";
}

}  // namespace prefdiff::conformance
