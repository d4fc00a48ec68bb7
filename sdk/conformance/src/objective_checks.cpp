// check_objective(): the conformance checks of a tier-1 objective plugin. Each check is one function
// returning a CheckResult; a check that cannot run because an earlier one failed says so.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <string>

#include "prefdiff/conformance.hpp"
#include "prefdiff/instance/params.hpp"

namespace prefdiff::conformance {
namespace {

// Gradient checks pass when |fd - g| <= kGradientTolerance * (|g| + |g(h+dh) - g(h-dh)|). The second
// term is the local curvature scale: it keeps the test meaningful where g crosses zero (cDPO at
// h* = ln 9), where a relative error is undefined; everywhere else it is ~1e-5 of |g|.
constexpr double kGradientTolerance = 1e-6;
// Target step of the central difference in margin units: truncation ~dh^2/6 ~ 2e-11, rounding
// ~eps*|l|/dh ~ 1e-11*|l|.
constexpr double kMarginStep = 1e-5;
// Batch-coupled plugins reduce over the batch in a different order after a permutation.
constexpr double kPermutationTolerance = 1e-12;
constexpr size_t kPoints = 64;

std::string num(double value, int digits = 6) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*g", digits, value);
  return text;
}

CheckResult pass(const std::string& name, const std::string& detail) { return {name, true, detail}; }
CheckResult fail(const std::string& name, const std::string& detail) { return {name, false, detail}; }

bool bitwise_equal(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

bool close(double a, double b, double tolerance) {
  if (std::memcmp(&a, &b, sizeof(double)) == 0) return true;
  return std::fabs(a - b) <= tolerance * std::max(std::fabs(a), std::fabs(b));
}

// The first non-finite output of an evaluation, or "" when all are finite.
std::string non_finite_output(const Evaluation& e) {
  const std::vector<double>* vectors[] = {&e.loss, &e.dloss_dmodel_w, &e.dloss_dmodel_l, &e.margin, &e.diagnostics};
  const char* names[] = {"loss", "dloss_dmodel_w", "dloss_dmodel_l", "margin", "diagnostics"};
  for (int v = 0; v < 5; ++v)
    for (size_t i = 0; i < vectors[v]->size(); ++i)
      if (!std::isfinite((*vectors[v])[i])) return std::string(names[v]) + "[" + std::to_string(i) + "] = " + num((*vectors[v])[i]);
  return "";
}

bool needs_error_inner_products(const PluginLibrary& plugin) {
  return (plugin.descriptor->capabilities & PD_CAP_NEEDS_ERROR_INNER_PRODUCTS) != 0;
}

// Error inner products consistent with the batch, as a host computes them: error_ww = model_w,
// error_ll = model_l, error_wl = rho_i sqrt(|error_ww error_ll|) with a fixed correlation pattern rho_i in
// [0.1, 0.9] (aligned errors, so a winner-preserving scale is active). Fixed once per batch: the finite
// differences move model_w/model_l with the inner products held, as objective.h defines the derivatives.
void add_error_inner_products(Batch& batch) {
  batch.error_ww = batch.model_w;
  batch.error_ll = batch.model_l;
  batch.error_wl.resize(batch.size());
  for (size_t i = 0; i < batch.size(); ++i)
    batch.error_wl[i] = (0.5 + 0.4 * std::sin(1.0 + static_cast<double>(i))) *
                        std::sqrt(std::fabs(batch.model_w[i] * batch.model_l[i]));
}

// `batch` as the plugin needs it: with inner products when it declares PD_CAP_NEEDS_ERROR_INNER_PRODUCTS
// and the batch has none yet.
Batch prepared(const PluginLibrary& plugin, const Batch& batch) {
  Batch out = batch;
  if (needs_error_inner_products(plugin) && out.error_ww.empty() && out.size() > 0) add_error_inner_products(out);
  return out;
}

struct Context {
  const PluginLibrary& plugin;
  ParamSet params;
  bool coupled = false;
  bool stateful = false;
  double slope_w = 0.0, slope_l = 0.0;  // dh/dmodel_w, dh/dmodel_l read from the plugin's margins
  std::mt19937_64 rng{20240917};

  // Every evaluation gets a fresh instance, so state cannot leak from one check into the next.
  Evaluation fresh(const Batch& batch) const {
    ObjectiveInstance instance(plugin, params);
    return instance.try_evaluate(prepared(plugin, batch));
  }
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
};

double quantize(double value, int bits) { return std::ldexp(std::nearbyint(std::ldexp(value, bits)), -bits); }

// Inputs with the given margins: realistic references, then model_w solved from the plugin's own
// (affine) margin. Values sit on a dyadic grid so perturbations by powers of two are exact.
Batch batch_with_margins(Context& ctx, const std::vector<double>& h, double mse_scale) {
  Batch batch;
  for (size_t i = 0; i < h.size(); ++i) {
    const double rw = quantize(mse_scale * ctx.uniform(0.2, 0.5), 30);
    const double rl = quantize(mse_scale * ctx.uniform(0.2, 0.5), 30);
    batch.ref_w.push_back(rw);
    batch.ref_l.push_back(rl);
    batch.model_l.push_back(quantize(rl + mse_scale * ctx.uniform(-0.01, 0.01), 30));
    batch.model_w.push_back(0.0);
  }
  const Evaluation base = ctx.fresh(batch);
  if (base.status != PD_OK) throw PluginError(base.status, "evaluate failed on ordinary inputs: " + base.message);
  for (size_t i = 0; i < h.size(); ++i)
    batch.model_w[i] = quantize((h[i] - base.margin[i]) / ctx.slope_w, mse_scale > 1.0 ? 20 : 40);
  if (needs_error_inner_products(ctx.plugin)) add_error_inner_products(batch);
  return batch;
}

Batch subset(const Batch& batch, const std::vector<size_t>& rows) {
  Batch out;
  out.step = batch.step;
  for (size_t r : rows) {
    out.model_w.push_back(batch.model_w[r]);
    out.model_l.push_back(batch.model_l[r]);
    std::vector<double> Batch::*const optional[] = {&Batch::ref_w, &Batch::ref_l, &Batch::timestep,
                                                    &Batch::error_ww, &Batch::error_wl, &Batch::error_ll};
    for (const auto field : optional)
      if (!(batch.*field).empty()) (out.*field).push_back((batch.*field)[r]);
  }
  return out;
}

// ------------------------------------------------------------------ descriptor and schema

CheckResult check_descriptor(const PluginLibrary& plugin) {
  const pd_plugin_descriptor& d = *plugin.descriptor;
  const std::string name = "descriptor";
  const std::pair<const char*, const char*> fields[] = {
      {"id", d.id}, {"version", d.version}, {"summary", d.summary}, {"citation", d.citation},
      {"formula_version", d.formula_version}};
  for (const auto& field : fields)
    if (field.second == nullptr || field.second[0] == '\0') return fail(name, std::string("'") + field.first + "' is empty");
  for (const char* c = d.id; *c != '\0'; ++c)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
      return fail(name, std::string("id '") + d.id + "' has characters outside [a-z0-9-]");
  if (d.abi_major != PD_ABI_MAJOR) return fail(name, "abi_major " + std::to_string(d.abi_major));
  if (plugin.kind() != PD_KIND_OBJECTIVE)
    return fail(name, "plugin '" + plugin.id() + "' is a " + instance::kind_name(plugin.kind()) + ", not an objective");
  // The loader has checked the table's size and that every function the host calls is set.
  const auto* f = static_cast<const pd_objective_functions*>(d.functions);
  std::set<std::string> diagnostics;
  for (uint32_t k = 0; k < f->diagnostic_count; ++k) {
    if (f->diagnostic_names == nullptr || f->diagnostic_names[k] == nullptr || f->diagnostic_names[k][0] == '\0')
      return fail(name, "diagnostic " + std::to_string(k) + " has no name");
    if (!diagnostics.insert(f->diagnostic_names[k]).second)
      return fail(name, std::string("diagnostic '") + f->diagnostic_names[k] + "' is listed twice");
  }
  if ((d.capabilities & PD_CAP_STATEFUL) != 0 && (f->save_state == nullptr || f->load_state == nullptr))
    return fail(name, "PD_CAP_STATEFUL is set but save_state/load_state are missing");
  return pass(name, std::string(d.id) + " " + d.version + ", formula " + d.formula_version + ", " +
                        std::to_string(d.param_count) + " parameters, " + std::to_string(f->diagnostic_count) +
                        " diagnostics" + ((d.capabilities & PD_CAP_BATCH_COUPLED) ? ", batch-coupled" : "") +
                        ((d.capabilities & PD_CAP_STATEFUL) ? ", stateful" : "") +
                        ((d.capabilities & PD_CAP_REFERENCE_FREE) ? ", reference-free" : "") +
                        ((d.capabilities & PD_CAP_NEEDS_ERROR_INNER_PRODUCTS) ? ", reads error inner products" : ""));
}

// Why a parameter's default is not acceptable, or "".
std::string default_problem(const pd_param_spec& s) {
  if ((s.bounds & PD_PARAM_OPTIONAL) != 0) return "";
  if (s.type == PD_PARAM_STRING) {
    if (s.default_string == nullptr) return "has no default string";
    if (s.choices == nullptr) return "";
    const std::string choices = std::string("|") + s.choices + "|";
    if (choices.find(std::string("|") + s.default_string + "|") == std::string::npos)
      return std::string("default \"") + s.default_string + "\" is not one of " + s.choices;
    return "";
  }
  const double v = s.default_number;
  if (!std::isfinite(v)) return "default is not finite";
  if (s.type == PD_PARAM_INT && v != std::floor(v)) return "default " + num(v, 17) + " is not an integer";
  if (s.type == PD_PARAM_BOOL && v != 0.0 && v != 1.0) return "default " + num(v, 17) + " is not 0 or 1";
  if ((s.bounds & PD_PARAM_HAS_MIN) != 0 && ((s.bounds & PD_PARAM_MIN_EXCLUSIVE) ? !(v > s.min) : !(v >= s.min)))
    return "default " + num(v, 17) + " is below its minimum " + num(s.min, 17);
  if ((s.bounds & PD_PARAM_HAS_MAX) != 0 && ((s.bounds & PD_PARAM_MAX_EXCLUSIVE) ? !(v < s.max) : !(v <= s.max)))
    return "default " + num(v, 17) + " is above its maximum " + num(s.max, 17);
  return "";
}

CheckResult check_schema(const PluginLibrary& plugin) {
  const pd_plugin_descriptor& d = *plugin.descriptor;
  const std::string name = "schema defaults";
  std::set<std::string> names;
  for (uint32_t k = 0; k < d.param_count; ++k) {
    const pd_param_spec& s = d.params[k];
    const std::string pname = s.name != nullptr ? s.name : "";
    if (s.struct_size < sizeof(pd_param_spec)) return fail(name, "parameter " + std::to_string(k) + " has struct_size " + std::to_string(s.struct_size));
    if (pname.empty() || pname.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos)
      return fail(name, "parameter name '" + pname + "' is not [a-z0-9_]+");
    if (!names.insert(pname).second) return fail(name, "parameter '" + pname + "' is declared twice");
    if (s.doc == nullptr || s.doc[0] == '\0') return fail(name, "parameter '" + pname + "' has no doc string");
    if (s.type < PD_PARAM_FLOAT || s.type > PD_PARAM_STRING) return fail(name, "parameter '" + pname + "' has an unknown type");
    if ((s.bounds & PD_PARAM_HAS_MIN) && (s.bounds & PD_PARAM_HAS_MAX) && s.min > s.max)
      return fail(name, "parameter '" + pname + "' has min > max");
    const std::string problem = default_problem(s);
    if (!problem.empty()) return fail(name, "parameter '" + pname + "': " + problem);
  }
  if (!plugin.schema_problems.empty()) return fail(name, plugin.schema_problems.front());
  try {
    std::vector<instance::ParamProblem> problems;
    const ParamSet defaults = instance::resolve_params(plugin.params, {}, {}, problems);
    ObjectiveInstance instance(plugin, defaults);
    const Batch batch = prepared(plugin, Batch{{0.30}, {0.31}, {0.305}, {0.30}, {}, 0, 0});
    const Evaluation e = instance.try_evaluate(batch);
    if (e.status != PD_OK) return fail(name, "evaluate() with the defaults failed: " + e.message);
    const std::string bad = non_finite_output(e);
    if (!bad.empty()) return fail(name, "evaluate() with the defaults returned " + bad);
  } catch (const std::exception& e) {
    return fail(name, std::string("create() with the schema defaults failed: ") + e.what());
  }
  return pass(name, std::to_string(d.param_count) + " parameters with valid defaults; create() accepts them");
}

// ------------------------------------------------------------------ numerical checks

CheckResult measure_margin_scale(Context& ctx) {
  const std::string name = "margin";
  Batch probe{{0.0, 1.0, 0.0}, {0.0, 0.0, 1.0}, {0.0, 0.0, 0.0}, {0.0, 0.0, 0.0}, {}, 0};
  const Evaluation e = ctx.fresh(probe);
  if (e.status != PD_OK) return fail(name, "evaluate failed: " + e.message);
  ctx.slope_w = e.margin[1] - e.margin[0];
  ctx.slope_l = e.margin[2] - e.margin[0];
  if (!std::isfinite(ctx.slope_w) || !std::isfinite(ctx.slope_l) || ctx.slope_w == 0.0 || ctx.slope_l == 0.0)
    return fail(name, "the margin does not respond to model_w and model_l (dh/dmodel_w = " + num(ctx.slope_w) +
                          ", dh/dmodel_l = " + num(ctx.slope_l) + ")");
  return pass(name, "dh/dmodel_w = " + num(ctx.slope_w, 17) + ", dh/dmodel_l = " + num(ctx.slope_l, 17));
}

std::vector<double> spread_margins(Context& ctx) {
  std::vector<double> h = {-40.0, -1.0, 0.0, 1.0, 40.0};
  while (h.size() < kPoints) h.push_back(ctx.uniform(-40.0, 40.0));
  return h;
}

// Central differences in model_w and model_l from ONE evaluation: pair i and its twin i+N start equal
// and move by +step and -step. Both are in the same batch, so a batch statistic (alpha-DPO's
// batch-mean alpha) is one and the same number for both (and only O(step^2) away from the unperturbed
// one): the difference measures the stop-gradient derivative that objective.h asks for.
// Error = max(0, |fd - g| - rounding) / (|g| + |g(h+dh) - g(h-dh)|), where rounding = 4 eps |l| / step
// is what the loss's own last bits can resolve (a loss near -1 cannot show a gradient of 1e-17).
CheckResult check_gradients(Context& ctx) {
  const std::string name = "gradient vs finite differences";
  const std::vector<double> h = spread_margins(ctx);
  const Batch points = batch_with_margins(ctx, h, 1.0);
  std::vector<size_t> rows;
  for (size_t r = 0; r < 2 * kPoints; ++r) rows.push_back(r % kPoints);
  const Batch base = subset(points, rows);
  const Evaluation e0 = ctx.fresh(base);
  if (e0.status != PD_OK) return fail(name, "evaluate failed: " + e0.message);

  double worst = 0.0, worst_raw = 0.0;
  size_t resolved = 0;
  std::string worst_where = "";
  for (int side = 0; side < 2; ++side) {
    const double slope = side == 0 ? ctx.slope_w : ctx.slope_l;
    const double step = std::ldexp(1.0, static_cast<int>(std::floor(std::log2(kMarginStep / std::fabs(slope)))));
    Batch moved = base;
    std::vector<double>& inputs = side == 0 ? moved.model_w : moved.model_l;
    for (size_t i = 0; i < kPoints; ++i) {
      inputs[i] += step;
      inputs[i + kPoints] -= step;
    }
    const Evaluation e = ctx.fresh(moved);
    if (e.status != PD_OK) return fail(name, "evaluate failed: " + e.message);
    const std::vector<double>& g0 = side == 0 ? e0.dloss_dmodel_w : e0.dloss_dmodel_l;
    const std::vector<double>& g = side == 0 ? e.dloss_dmodel_w : e.dloss_dmodel_l;
    for (size_t i = 0; i < kPoints; ++i) {
      const double fd = (e.loss[i] - e.loss[i + kPoints]) / (2.0 * step);
      const double rounding = 4.0 * std::numeric_limits<double>::epsilon() *
                              (std::fabs(e.loss[i]) + std::fabs(e.loss[i + kPoints])) / (2.0 * step);
      const double difference = std::max(0.0, std::fabs(fd - g0[i]) - rounding);
      const double scale = std::fabs(g0[i]) + std::fabs(g[i] - g[i + kPoints]);
      const double error = difference == 0.0 ? 0.0 : (scale > 0.0 ? difference / scale : INFINITY);
      worst = std::isfinite(fd) ? std::max(worst, error) : INFINITY;
      // The plain relative error, reported where the loss's rounding does not hide it.
      const double raw = fd == g0[i] ? 0.0 : std::fabs(fd - g0[i]) / scale;
      if (rounding <= 1e-3 * scale) ++resolved;
      if ((rounding <= 1e-3 * scale && !(raw <= worst_raw)) || !std::isfinite(fd)) {
        worst_raw = std::isfinite(fd) ? raw : INFINITY;
        worst_where = std::string(side == 0 ? "dloss_dmodel_w" : "dloss_dmodel_l") + " at h = " + num(e0.margin[i]) +
                      ": plugin " + num(g0[i], 10) + ", finite difference " + num(fd, 10);
      }
    }
  }
  const std::string detail =
      std::to_string(kPoints) + " pairs, h in [-40, 40]; worst error beyond the loss's rounding " + num(worst, 3) +
      " (tolerance " + num(kGradientTolerance) + "); worst relative error " + num(worst_raw, 3) + " over the " +
      std::to_string(resolved) + "/" + std::to_string(2 * kPoints) + " derivatives above the rounding level, for " +
      worst_where +
      (worst <= kGradientTolerance ? "" : ". HINT: dloss_dmodel_* must be the derivative of loss with batch "
                                          "statistics held fixed; a per-pair stop-gradient quantity (alpha-dpo "
                                          "per-sample alpha) cannot be checked this way: check it with the "
                                          "quantity fixed");
  return worst <= kGradientTolerance ? pass(name, detail) : fail(name, detail);
}

CheckResult check_extremes(Context& ctx) {
  const std::string name = "finite outputs at extreme inputs";
  const std::vector<double> h = {-1e4, -3e3, -1e3, -100.0, -40.0, -10.0, -1.0, 0.0,
                                 1.0,  10.0, 40.0, 100.0,  1e3,   3e3,   1e4};
  for (double scale : {1.0, 1e4}) {
    const Batch batch = batch_with_margins(ctx, h, scale);
    const Evaluation e = ctx.fresh(batch);
    if (e.status != PD_OK) return fail(name, "|h| up to 1e4 with MSEs ~" + num(scale) + ": status " + std::to_string(e.status) + ": " + e.message);
    const std::string bad = non_finite_output(e);
    if (!bad.empty()) return fail(name, "|h| up to 1e4 with MSEs ~" + num(scale) + ": " + bad);
  }
  // A margin that overflows double: an error status is fine, non-finite outputs with PD_OK are not.
  Batch overflow{{1e300, 0.0}, {0.0, 1e300}, {0.0, 0.0}, {0.0, 0.0}, {}, 0};
  const Evaluation o = ctx.fresh(overflow);
  if (o.status == PD_OK && !non_finite_output(o).empty())
    return fail(name, "MSE 1e300 (margin overflow): PD_OK with " + non_finite_output(o));
  const Evaluation empty = ctx.fresh(Batch{});
  if (empty.status != PD_OK) return fail(name, "an empty batch failed: " + empty.message);
  if (!non_finite_output(empty).empty()) return fail(name, "an empty batch gave " + non_finite_output(empty));
  return pass(name, "h in [-1e4, 1e4] with MSEs ~0.3 and ~1e4, an empty batch: finite; margin overflow: " +
                        std::string(o.status == PD_OK ? "finite outputs" : "refused with status " + std::to_string(o.status)));
}

std::string compare_rows(const Evaluation& full, const Evaluation& part, const std::vector<size_t>& rows, bool exact) {
  const std::vector<double> Evaluation::*fields[] = {&Evaluation::loss, &Evaluation::dloss_dmodel_w,
                                                     &Evaluation::dloss_dmodel_l, &Evaluation::margin};
  const char* names[] = {"loss", "dloss_dmodel_w", "dloss_dmodel_l", "margin"};
  for (int f = 0; f < 4; ++f)
    for (size_t k = 0; k < rows.size(); ++k) {
      const double a = (full.*fields[f])[rows[k]], b = (part.*fields[f])[k];
      if (exact ? std::memcmp(&a, &b, sizeof(double)) != 0 : !close(a, b, kPermutationTolerance))
        return std::string(names[f]) + " of pair " + std::to_string(rows[k]) + ": " + num(a, 17) + " vs " + num(b, 17);
    }
  return "";
}

CheckResult check_batch_independence(Context& ctx) {
  const std::string name = ctx.coupled ? "order equivariance" : "batch size and order independence";
  const Batch batch = batch_with_margins(ctx, spread_margins(ctx), 1.0);
  const Evaluation full = ctx.fresh(batch);
  if (full.status != PD_OK) return fail(name, "evaluate failed: " + full.message);
  std::vector<size_t> order(batch.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), ctx.rng);
  const Evaluation permuted = ctx.fresh(subset(batch, order));
  if (permuted.status != PD_OK) return fail(name, "evaluate failed: " + permuted.message);
  std::string problem = compare_rows(full, permuted, order, !ctx.coupled);
  if (!problem.empty()) return fail(name, "after a permutation, " + problem);
  for (size_t k = 0; k < full.diagnostics.size(); ++k)
    if (!close(full.diagnostics[k], permuted.diagnostics[k], kPermutationTolerance))
      return fail(name, "after a permutation, diagnostic " + std::to_string(k) + ": " + num(full.diagnostics[k], 17) +
                            " vs " + num(permuted.diagnostics[k], 17));
  if (ctx.coupled)
    return pass(name, "batch-coupled: per-pair outputs and diagnostics follow a permutation (within " +
                          num(kPermutationTolerance) + "); batch size not checked");
  const size_t cuts[] = {0, 1, 8, 29, batch.size()};
  for (int c = 0; c + 1 < 5; ++c) {
    std::vector<size_t> rows;
    for (size_t r = cuts[c]; r < cuts[c + 1]; ++r) rows.push_back(r);
    const Evaluation part = ctx.fresh(subset(batch, rows));
    if (part.status != PD_OK) return fail(name, "evaluate failed: " + part.message);
    problem = compare_rows(full, part, rows, true);
    if (!problem.empty()) return fail(name, "in a batch of " + std::to_string(rows.size()) + ", " + problem);
  }
  return pass(name, "per-pair outputs bit-identical after a permutation and in batches of 1, 7, 21, 35");
}

bool same_evaluation(const Evaluation& a, const Evaluation& b, bool with_diagnostics) {
  return a.status == b.status && bitwise_equal(a.loss, b.loss) && bitwise_equal(a.dloss_dmodel_w, b.dloss_dmodel_w) &&
         bitwise_equal(a.dloss_dmodel_l, b.dloss_dmodel_l) && bitwise_equal(a.margin, b.margin) &&
         (!with_diagnostics || bitwise_equal(a.diagnostics, b.diagnostics));
}

CheckResult check_determinism(Context& ctx) {
  const std::string name = "determinism";
  const Batch batch = batch_with_margins(ctx, spread_margins(ctx), 1.0);
  ObjectiveInstance a(ctx.plugin, ctx.params), b(ctx.plugin, ctx.params);
  const Evaluation first = a.try_evaluate(batch), other = b.try_evaluate(batch), again = a.try_evaluate(batch);
  if (first.status != PD_OK) return fail(name, "evaluate failed: " + first.message);
  if (!same_evaluation(first, other, true)) return fail(name, "two fresh instances give different outputs for the same inputs");
  if (!same_evaluation(first, again, !ctx.stateful))
    return fail(name, ctx.stateful ? "the same instance gives different per-pair outputs the second time"
                                   : "the same instance gives different outputs the second time (hidden state?)");
  return pass(name, "same inputs, bit-identical outputs (two instances, and one instance twice)");
}

CheckResult check_non_finite_inputs(Context& ctx) {
  const std::string name = "non-finite inputs";
  Batch batch = batch_with_margins(ctx, {-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0}, 1.0);
  batch.timestep.assign(batch.size(), 500.0);
  const double bad_values[] = {std::numeric_limits<double>::quiet_NaN(), INFINITY, -INFINITY};
  std::vector<double> Batch::*fields[] = {&Batch::model_w,  &Batch::model_l,  &Batch::ref_w,   &Batch::ref_l,
                                          &Batch::timestep, &Batch::error_ww, &Batch::error_wl, &Batch::error_ll};
  const char* names[] = {"model_w", "model_l", "ref_w", "ref_l", "timestep", "error_ww", "error_wl", "error_ll"};
  const int field_count = needs_error_inner_products(ctx.plugin) ? 8 : 5;
  std::string failures;
  for (int f = 0; f < field_count; ++f)
    for (double bad : bad_values) {
      Batch poisoned = batch;
      (poisoned.*fields[f])[3] = bad;
      const Evaluation e = ctx.fresh(poisoned);
      if (e.status != PD_ERR_NON_FINITE)
        failures += std::string(failures.empty() ? "" : "; ") + names[f] + "=" + num(bad) + " -> status " +
                    std::to_string(e.status) + (e.status == PD_OK ? " (" + non_finite_output(e) + ")" : "");
    }
  if (!failures.empty()) return fail(name, "expected PD_ERR_NON_FINITE: " + failures);
  return pass(name, "NaN, +Inf, -Inf in each input vector answered with PD_ERR_NON_FINITE");
}

// What the capabilities promise about the ABI 1.1 inputs. PD_CAP_REFERENCE_FREE: outputs do not depend on
// the references, and NULL references (a host that skipped the reference model) give the same bits.
// PD_CAP_NEEDS_ERROR_INNER_PRODUCTS: a batch without them is refused, not read.
CheckResult check_optional_inputs(Context& ctx) {
  const std::string name = "optional inputs";
  const bool reference_free = (ctx.plugin.descriptor->capabilities & PD_CAP_REFERENCE_FREE) != 0;
  const bool products = needs_error_inner_products(ctx.plugin);
  std::string detail;
  if (reference_free) {
    const Batch batch = batch_with_margins(ctx, spread_margins(ctx), 1.0);
    const Evaluation with = ctx.fresh(batch);
    if (with.status != PD_OK) return fail(name, "evaluate failed: " + with.message);
    Batch without = batch, other = batch;
    without.ref_w.clear();
    without.ref_l.clear();
    for (size_t i = 0; i < other.size(); ++i) {
      other.ref_w[i] = 3.0 * other.ref_w[i] + 0.25;
      other.ref_l[i] = 0.5 * other.ref_l[i];
    }
    const Evaluation no_reference = ctx.fresh(without), moved = ctx.fresh(other);
    if (no_reference.status != PD_OK)
      return fail(name, "PD_CAP_REFERENCE_FREE is set but evaluate() without ref_w/ref_l failed: " + no_reference.message);
    if (!same_evaluation(with, no_reference, true))
      return fail(name, "PD_CAP_REFERENCE_FREE is set but the outputs change when ref_w/ref_l are NULL");
    if (!same_evaluation(with, moved, true))
      return fail(name, "PD_CAP_REFERENCE_FREE is set but the outputs change with ref_w/ref_l");
    detail = "reference-free: the same outputs with other references and with none";
  } else {
    detail = "reads ref_w/ref_l (PD_CAP_REFERENCE_FREE unset)";
  }
  if (products) {
    Batch bare = batch_with_margins(ctx, {-1.0, 0.0, 2.0}, 1.0);
    bare.error_ww.clear();
    bare.error_wl.clear();
    bare.error_ll.clear();
    ObjectiveInstance instance(ctx.plugin, ctx.params);
    const Evaluation e = instance.try_evaluate(bare);
    if (e.status == PD_OK)
      return fail(name, "PD_CAP_NEEDS_ERROR_INNER_PRODUCTS is set but a batch without them was accepted");
    detail += "; reads error inner products, a batch without them refused (" + e.message + ")";
  }
  return pass(name, detail);
}

CheckResult check_state(Context& ctx) {
  const std::string name = "state round trip";
  if (!ctx.stateful) return pass(name, "not stateful (PD_CAP_STATEFUL unset): nothing to save");
  const Batch first = batch_with_margins(ctx, spread_margins(ctx), 1.0);
  Batch second = batch_with_margins(ctx, spread_margins(ctx), 1.0);
  second.step = 1;
  ObjectiveInstance a(ctx.plugin, ctx.params), b(ctx.plugin, ctx.params);
  if (a.try_evaluate(first).status != PD_OK) return fail(name, "evaluate failed");
  const std::string state = a.save_state();
  std::string message;
  if (b.try_load_state(state, &message) != PD_OK) return fail(name, "load_state of a state just saved failed: " + message);
  if (b.save_state() != state) return fail(name, "save(load(state)) differs from state");
  const Evaluation ea = a.try_evaluate(second), eb = b.try_evaluate(second);
  if (!same_evaluation(ea, eb, true)) return fail(name, "after load_state the instance does not continue like the original");
  ObjectiveInstance c(ctx.plugin, ctx.params);
  const std::string garbage = "\x01 this is not a saved state \x7f";
  if (c.try_load_state(garbage, &message) == PD_OK) return fail(name, "load_state accepted garbage instead of refusing it");
  return pass(name, std::to_string(state.size()) + " bytes; save/load/continue bit-identical; garbage refused (" +
                        message + ")");
}

}  // namespace

bool Report::passed() const {
  if (checks.empty()) return false;
  for (const CheckResult& c : checks)
    if (!c.passed) return false;
  return true;
}

std::string Report::text() const {
  std::string out = "conformance of objective plugin '" + plugin_id + "'\n";
  size_t passed_count = 0;
  for (const CheckResult& c : checks) {
    out += std::string(c.passed ? "  PASS " : "  FAIL ") + c.name + ": " + c.detail + "\n";
    passed_count += c.passed ? 1 : 0;
  }
  out += std::string(passed() ? "PASSED" : "FAILED") + " (" + std::to_string(passed_count) + "/" +
         std::to_string(checks.size()) + " checks)\n";
  return out;
}

Report check_objective(const PluginLibrary& plugin, const ParamSet& params,
                       const std::function<void(const CheckResult&)>& on_check) {
  Report report;
  report.plugin_id = plugin.id();
  auto add = [&](CheckResult result) {
    if (on_check) on_check(result);
    report.checks.push_back(std::move(result));
    return report.checks.back().passed;
  };
  if (!add(check_descriptor(plugin))) return report;
  add(check_schema(plugin));

  Context ctx{plugin, params};
  ctx.coupled = (plugin.descriptor->capabilities & PD_CAP_BATCH_COUPLED) != 0;
  ctx.stateful = (plugin.descriptor->capabilities & PD_CAP_STATEFUL) != 0;
  try {
    ObjectiveInstance probe(plugin, ctx.params);
  } catch (const std::exception& e) {
    add(fail("create", e.what()));
    return report;
  }
  if (!add(measure_margin_scale(ctx))) return report;

  using Check = CheckResult (*)(Context&);
  const std::pair<const char*, Check> checks[] = {
      {"gradient vs finite differences", &check_gradients},
      {"finite outputs at extreme inputs", &check_extremes},
      {"batch size and order independence", &check_batch_independence},
      {"determinism", &check_determinism},
      {"non-finite inputs", &check_non_finite_inputs},
      {"state round trip", &check_state},
      {"optional inputs", &check_optional_inputs}};
  for (const auto& check : checks) {
    try {
      add(check.second(ctx));
    } catch (const std::exception& e) {
      add(fail(check.first, e.what()));
    }
  }
  return report;
}

PluginLibrary load_plugin(const std::string& path) { return instance::load_library(path, default_host_services()); }

ParamSet resolve_params(const PluginLibrary& plugin, const Params& params) {
  return instance::resolve_or_throw(plugin, params);
}

Report check_objective(const PluginLibrary& plugin, const Params& params) {
  std::vector<instance::ParamProblem> problems;
  const ParamSet resolved = instance::resolve_params(plugin.params, params, {}, problems);
  if (problems.empty()) return check_objective(plugin, resolved, nullptr);
  Report report;
  report.plugin_id = plugin.id();
  std::string detail;
  for (const instance::ParamProblem& p : problems) detail += (detail.empty() ? "" : "; ") + p.message;
  report.checks.push_back(fail("parameters", detail));
  return report;
}

}  // namespace prefdiff::conformance
