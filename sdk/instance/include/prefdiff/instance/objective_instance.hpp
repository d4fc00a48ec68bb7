// One objective plugin instance (create ... destroy) and the calls of objective.h, for the host and the
// conformance kit alike: parameters resolved by the one resolver, every call inside call_plugin(), and
// failures worded once, naming the plugin.
#ifndef PREFDIFF_INSTANCE_OBJECTIVE_INSTANCE_HPP
#define PREFDIFF_INSTANCE_OBJECTIVE_INSTANCE_HPP

#include <cstdint>
#include <string>
#include <vector>

#include "prefdiff/instance/default_services.hpp"
#include "prefdiff/instance/library.hpp"
#include "prefdiff/instance/params.hpp"
#include "prefdiff/instance/plugin_call.hpp"
#include "prefdiff/objective.h"

namespace prefdiff::instance {

// Plain host vectors of one micro-batch (this rank's pairs).
struct Batch {
  std::vector<double> model_w, model_l, ref_w, ref_l;  // ref_w, ref_l empty = NULL (reference-free objectives)
  std::vector<double> timestep;  // empty = NULL
  int64_t step = 0;
  uint64_t global_count = 0;     // pairs over all ranks (pd_objective_inputs.global_count); 0 = size()
  // ABI 1.1 per-pair error inner products <e_w,e_w>/D, <e_w,e_l>/D, <e_l,e_l>/D (objective.h); empty = NULL.
  std::vector<double> error_ww{}, error_wl{}, error_ll{};
  size_t size() const { return model_w.size(); }
};

// Per-pair outputs (not divided by the batch size) and the diagnostics in diagnostic_names() order.
struct Evaluation {
  pd_status status = PD_OK;
  std::string message;  // the plugin's error message when status != PD_OK
  std::vector<double> loss, dloss_dmodel_w, dloss_dmodel_l, margin, diagnostics;
};

class ObjectiveInstance {
 public:
  // Throws PluginError ("objective 'x' refused its parameters: <the plugin's message>") when create() fails.
  ObjectiveInstance(const PluginLibrary& plugin, ParamSet params, const pd_host_services* host = default_host_services());
  ~ObjectiveInstance();
  ObjectiveInstance(const ObjectiveInstance&) = delete;
  ObjectiveInstance& operator=(const ObjectiveInstance&) = delete;

  // The plugin's answer as data, whatever its status (the conformance kit judges it). Outputs it leaves
  // unwritten stay NaN.
  Evaluation try_evaluate(const Batch& batch);
  // The host's call: throws PluginError naming the plugin when evaluate() fails or returns a non-finite
  // loss, gradient or margin.
  Evaluation evaluate(const Batch& batch);

  bool stateful() const;        // PD_CAP_STATEFUL
  bool batch_coupled() const;   // PD_CAP_BATCH_COUPLED
  // The ABI 1.1 input requests (objective.h); false for a 1.0 plugin, which cannot have meant those bits.
  bool reference_free() const;              // PD_CAP_REFERENCE_FREE: never reads ref_w/ref_l
  bool needs_error_inner_products() const;  // PD_CAP_NEEDS_ERROR_INNER_PRODUCTS: reads error_ww/wl/ll
  std::string save_state();     // "" when not stateful; throws PluginError
  void load_state(const std::string& state);  // no-op when not stateful; throws PluginError
  pd_status try_load_state(const std::string& state, std::string* message);  // the status as data (the kit)

  const PluginLibrary& plugin() const { return plugin_; }
  const ParamSet& params() const { return params_; }
  const std::vector<std::string>& diagnostic_names() const { return diagnostic_names_; }

 private:
  PluginLibrary plugin_;
  ParamSet params_;
  std::string label_;
  const pd_objective_functions* functions_ = nullptr;
  pd_instance* instance_ = nullptr;
  std::vector<std::string> diagnostic_names_;
};

}  // namespace prefdiff::instance

#endif  // PREFDIFF_INSTANCE_OBJECTIVE_INSTANCE_HPP
