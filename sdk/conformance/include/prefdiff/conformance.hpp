// prefdiff plugin conformance kit: checks a tier-1 objective plugin against the ABI contract
// (objective.h) without the host. C++17 standard library and dlopen only.
//
//   prefdiff::conformance::LoadedPlugin plugin = prefdiff::conformance::load_plugin("libmy_objective.so");
//   prefdiff::conformance::Report report = prefdiff::conformance::check_objective(*plugin.descriptor, {});
//   std::cout << report.text();   // report.passed()
//
// The host, which loads plugins itself, passes its own descriptor. Every function here reports plugin
// failures as data (a failed check) or as prefdiff::conformance::PluginError; none calls exit().
#ifndef PREFDIFF_CONFORMANCE_HPP
#define PREFDIFF_CONFORMANCE_HPP

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "prefdiff/abi.h"
#include "prefdiff/objective.h"

namespace prefdiff::conformance {

// Single rank: identity all-reduce, logs to stderr, metrics ignored, aligned host allocation.
const pd_host_services* default_host_services();

// A plugin failure (load, create, state) with the status the plugin returned (PD_ERR_INTERNAL for
// failures on this side, e.g. dlopen).
class PluginError : public std::runtime_error {
 public:
  PluginError(pd_status status, const std::string& message, std::string plugin_message = {})
      : std::runtime_error(message), status_(status), plugin_message_(std::move(plugin_message)) {}
  pd_status status() const noexcept { return status_; }
  // The plugin's own error text (pd_error), without this kit's context; empty when it wrote none. The
  // host words its errors for recipe users around it.
  const std::string& plugin_message() const noexcept { return plugin_message_; }

 private:
  pd_status status_;
  std::string plugin_message_;
};

// ------------------------------------------------------------------ loading (standalone use)

struct LoadedPlugin {
  std::string path;
  void* handle = nullptr;                            // dlopen handle; never closed
  const pd_plugin_descriptor* descriptor = nullptr;  // owned by the library
};

// dlopen(path, RTLD_NOW | RTLD_LOCAL), calls the entry point with this SDK's ABI version and `host`,
// and checks the answer. Throws PluginError with a message that names the path and what is wrong.
LoadedPlugin load_plugin(const std::string& path, const pd_host_services* host = default_host_services());

// ------------------------------------------------------------------ calling an objective

// The full parameter list a plugin's create() expects: `overrides` first, every other schema parameter
// at its default (optional ones stay absent). Throws std::invalid_argument on an unknown name or a
// type mismatch. String values point into `overrides` or the descriptor: keep both alive.
std::vector<pd_param_value> resolve_params(const pd_plugin_descriptor& plugin,
                                           const std::vector<pd_param_value>& overrides);

struct Batch {
  std::vector<double> model_w, model_l, ref_w, ref_l;  // ref_w, ref_l empty = NULL (reference-free objectives)
  std::vector<double> timestep;  // empty = NULL
  int64_t step = 0;
  uint64_t global_count = 0;     // pairs over all ranks (pd_objective_inputs.global_count); 0 = size()
  // ABI 1.1 per-pair error inner products <e_w,e_w>/D, <e_w,e_l>/D, <e_l,e_l>/D (objective.h); empty = NULL.
  std::vector<double> error_ww{}, error_wl{}, error_ll{};
  size_t size() const { return model_w.size(); }
};

struct Evaluation {
  pd_status status = PD_OK;
  std::string message;  // the plugin's error message when status != PD_OK
  std::vector<double> loss, dloss_dmodel_w, dloss_dmodel_l, margin, diagnostics;
};

// One plugin instance (create ... destroy). `params` are passed to create() as given: use
// resolve_params() for defaults. Throws PluginError when create() fails.
class ObjectiveInstance {
 public:
  ObjectiveInstance(const pd_plugin_descriptor& plugin, const std::vector<pd_param_value>& params,
                    const pd_host_services* host = default_host_services());
  ~ObjectiveInstance();
  ObjectiveInstance(const ObjectiveInstance&) = delete;
  ObjectiveInstance& operator=(const ObjectiveInstance&) = delete;

  Evaluation evaluate(const Batch& batch);
  std::string save_state();                   // throws PluginError
  pd_status load_state(const std::string& state, std::string* message);

 private:
  const pd_objective_functions* functions_;
  pd_instance* instance_ = nullptr;
};

// The objective function table of `plugin`; throws PluginError when it is not a usable objective.
const pd_objective_functions& objective_functions(const pd_plugin_descriptor& plugin);

// ------------------------------------------------------------------ checks

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

// Runs every check on `plugin` with `params` (empty = schema defaults; missing ones are filled in):
// descriptor, schema defaults, gradients vs central finite differences for h in [-40, 40], finite
// outputs at extreme inputs, batch-size and order independence (order only for PD_CAP_BATCH_COUPLED),
// determinism, non-finite inputs answered with PD_ERR_NON_FINITE, the save/load round trip of
// PD_CAP_STATEFUL plugins, and the optional inputs it declares (PD_CAP_REFERENCE_FREE: the same outputs
// without references; PD_CAP_NEEDS_ERROR_INNER_PRODUCTS: the kit synthesises consistent inner products,
// error_ww = model_w, error_ll = model_l, held fixed in the finite differences, and a batch without them
// must be refused). Deterministic: the same plugin gives the same report.
Report check_objective(const pd_plugin_descriptor& plugin, const std::vector<pd_param_value>& params);

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
std::string evaluate_margins_json(const pd_plugin_descriptor& plugin, const std::vector<pd_param_value>& params,
                                  const std::vector<double>& margins, int64_t step = 0);

}  // namespace prefdiff::conformance

#endif  // PREFDIFF_CONFORMANCE_HPP
