// Test helpers: load the built objective plugins through the conformance kit and evaluate them at
// exact margins. With beta = 2 the margin is h = -(model_w - ref_w) + (model_l - ref_l), so model_w = -h
// gives h exactly and dl/dh = -dloss_dmodel_w exactly: spec vectors are compared without any rounding
// from the chain rule.
#ifndef PREFDIFF_TESTS_OBJECTIVES_PLUGIN_FIXTURE_HPP
#define PREFDIFF_TESTS_OBJECTIVES_PLUGIN_FIXTURE_HPP

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "prefdiff/conformance.hpp"

namespace prefdiff_test {

namespace pc = prefdiff::conformance;

inline std::string plugin_path(const std::string& file_stem) {
  return std::string(PREFDIFF_PLUGIN_DIR) + "/libprefdiff_objective_" + file_stem + ".so";
}

// A first-party objective, by library stem (dpo, cdpo, rdpo, holder_dpo, alpha_dpo), through the one loader.
inline pc::PluginLibrary objective(const std::string& file_stem) {
  return prefdiff::instance::load_library(plugin_path(file_stem), prefdiff::instance::default_host_services());
}

inline pc::PluginLibrary broken(const std::string& name) {
  return prefdiff::instance::load_library(std::string(PREFDIFF_BROKEN_PLUGIN_DIR) + "/libbroken_" + name + ".so",
                                          prefdiff::instance::default_host_services());
}

inline pc::GivenParam real(const std::string& name, double value) {
  return {name, prefdiff::instance::Value::real(value), "", ""};
}
inline pc::GivenParam integer(const std::string& name, long long value) {
  return {name, prefdiff::instance::Value::whole(value), "", ""};
}
inline pc::GivenParam text(const std::string& name, const std::string& value) {
  return {name, prefdiff::instance::Value::string(value), "", ""};
}

// The parameters create() gets: `given` checked against the schema, defaults for the rest.
inline pc::ParamSet resolve(const pc::PluginLibrary& plugin, const pc::Params& given) {
  return prefdiff::instance::resolve_or_throw(plugin, given);
}

// A batch whose margins are exactly h at beta = 2.
inline pc::Batch batch_at(const std::vector<double>& h, long long step = 0) {
  pc::Batch batch;
  for (double x : h) {
    batch.model_w.push_back(-x);
    batch.model_l.push_back(0.0);
    batch.ref_w.push_back(0.0);
    batch.ref_l.push_back(0.0);
  }
  batch.step = step;
  return batch;
}

struct AtMargins {
  std::vector<double> loss, dloss_dh, diagnostics;
};

// Evaluates `file_stem` with beta = 2 plus `params` at the margins h (one batch, fresh instance).
inline AtMargins evaluate(const std::string& file_stem, pc::Params params, const std::vector<double>& h,
                          long long step = 0) {
  const pc::PluginLibrary plugin = objective(file_stem);
  params.push_back(real("beta", 2.0));
  pc::ObjectiveInstance instance(plugin, resolve(plugin, params));
  const pc::Evaluation e = instance.try_evaluate(batch_at(h, step));
  EXPECT_EQ(e.status, PD_OK) << e.message;
  AtMargins out;
  out.loss = e.loss;
  out.diagnostics = e.diagnostics;
  for (size_t i = 0; i < h.size(); ++i) {
    EXPECT_EQ(e.margin[i], h[i]);
    EXPECT_EQ(e.dloss_dmodel_l[i], -e.dloss_dmodel_w[i]);
    out.dloss_dh.push_back(-e.dloss_dmodel_w[i]);
  }
  return out;
}

inline double relative_error(double value, double reference) {
  if (value == reference) return 0.0;
  return std::fabs(value - reference) / std::fabs(reference);
}

}  // namespace prefdiff_test

#endif  // PREFDIFF_TESTS_OBJECTIVES_PLUGIN_FIXTURE_HPP
