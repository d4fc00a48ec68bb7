// prefdiff plugin conformance kit: checks a tier-1 objective plugin against the ABI contract
// (objective.h) without the host. Built on the plugin-instance layer (prefdiff/instance/), so the calls
// it checks are the calls training makes. C++17 standard library and dlopen only.
//
//   prefdiff::instance::PluginLibrary plugin =
//       prefdiff::instance::load_library("libmy_objective.so", prefdiff::instance::default_host_services());
//   prefdiff::conformance::Report report = prefdiff::conformance::check_objective(plugin);
//   std::cout << report.text();   // report.passed()
//
// Every function here reports plugin failures as data (a failed check) or as instance::PluginError; none
// calls exit(). check_objective_isolated() runs the checks in a child process, so that a plugin that
// crashes or calls exit() fails a check instead of taking the caller down.
#ifndef PREFDIFF_CONFORMANCE_HPP
#define PREFDIFF_CONFORMANCE_HPP

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "prefdiff/instance/library.hpp"
#include "prefdiff/instance/objective_instance.hpp"

namespace prefdiff::conformance {

using instance::Batch;
using instance::Evaluation;
using instance::GivenParam;
using instance::ObjectiveInstance;
using instance::ParamSet;
using instance::PluginError;
using instance::PluginLibrary;
using Params = std::vector<GivenParam>;
using instance::default_host_services;

// A plugin library through the instance layer's loader with the single-rank services (tools, tests).
PluginLibrary load_plugin(const std::string& path);
// `params` checked against the plugin's schema, defaults filled in; throws std::invalid_argument that
// lists every problem.
ParamSet resolve_params(const PluginLibrary& plugin, const Params& params = {});

struct CheckResult {
  std::string name;
  bool passed = false;
  std::string detail;
};

struct Report {
  std::string plugin_id;
  std::vector<CheckResult> checks;
  bool passed() const;       // every check passed (and there was at least one)
  std::string text() const;  // one line per check, then a summary line
};

// Runs every check on `plugin` with `params` (schema defaults for the rest): descriptor, schema defaults,
// gradients vs central finite differences for h in [-40, 40], finite outputs at extreme inputs, batch-size
// and order independence (order only for PD_CAP_BATCH_COUPLED), determinism, non-finite inputs answered with
// PD_ERR_NON_FINITE, the save/load round trip of PD_CAP_STATEFUL plugins, and the optional inputs it declares
// (PD_CAP_REFERENCE_FREE: the same outputs without references; PD_CAP_NEEDS_ERROR_INNER_PRODUCTS: the kit
// synthesises consistent inner products, error_ww = model_w, error_ll = model_l, held fixed in the finite
// differences, and a batch without them must be refused). Deterministic: the same plugin gives the same
// report. `on_check` sees each result as soon as it is known.
Report check_objective(const PluginLibrary& plugin, const ParamSet& params,
                       const std::function<void(const CheckResult&)>& on_check);
// The same with parameters as given (problems with them fail the "parameters" check).
Report check_objective(const PluginLibrary& plugin, const Params& params = {});

// check_objective() in a forked child process. A fatal signal or an exit() inside the plugin ends the
// child, not the caller, and becomes a failed check naming the plugin call in flight; the checks that
// finished before are kept.
Report check_objective_isolated(const PluginLibrary& plugin, const ParamSet& params);

// Evaluates one batch whose margins are exactly `margins` (inputs found through the plugin's own
// margin output; "h_exact" says whether every margin was reachable exactly in double) and returns JSON:
//   {"plugin": id, "version": ..., "formula_version": ..., "step": step, "params": {...},
//    "h": [...], "h_exact": true, "loss": [...], "dloss_dh": [...], "diagnostics": {name: value}}
// Numbers are printed with %.17g. dloss_dh = dloss_dmodel_w / (dh/dmodel_w), with dh/dmodel_w measured
// from the plugin's margins (= -beta/2 exactly for the DiffusionDPO margin), so it is the plugin's dl/dh
// to within its own rounding of the chain-rule product. A margin that is not affine in model_w (mapo)
// is reached only approximately: "h" holds the margins reached. A plugin that reads error inner products
// gets error_ww = model_w, error_ll = model_l and orthogonal errors (error_wl = 0). Throws PluginError when
// the plugin fails.
std::string evaluate_margins_json(const PluginLibrary& plugin, const ParamSet& params,
                                  const std::vector<double>& margins, int64_t step = 0);
std::string evaluate_margins_json(const PluginLibrary& plugin, const Params& params,
                                  const std::vector<double>& margins, int64_t step = 0);

}  // namespace prefdiff::conformance

#endif  // PREFDIFF_CONFORMANCE_HPP
