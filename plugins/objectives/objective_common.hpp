// Shared by the first-party objective plugins: the beta parameter (one doc string, one default),
// and range checks whose messages name key, value
// and fix. Header-only and SDK-only, like everything a plugin includes.
#ifndef PREFDIFF_PLUGINS_OBJECTIVE_COMMON_HPP
#define PREFDIFF_PLUGINS_OBJECTIVE_COMMON_HPP

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "prefdiff/objective_math.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff::objectives {

// The shortest decimal that reads back as `value` (0.7, not 0.69999999999999996; 1e-06, not
// 9.9999999999999995e-07): what the user typed, and still exact.
inline std::string format_number(double value) {
  char text[64];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(text, sizeof(text), "%.*g", digits, value);
    if (std::strtod(text, nullptr) == value) break;
  }
  return text;
}

inline sdk::ParamSpec beta_param() {
  return sdk::ParamSpec::real(
             "beta", 5000.0,
             "Inverse temperature in the DiffusionDPO convention h = -0.5*beta*[(model_w-ref_w)-(model_l-ref_l)] "
             "on per-image mean squared errors (mean over C,H,W). Default 5000: the official DiffusionDPO value "
             "for SD1.5 and SDXL. diffusers' example drops the 0.5 and uses 2500 for the same objective; "
             "alpha-DPO's released SDXL script uses 4000 (i.e. 4000 here).")
      .min(0.0, /*exclusive=*/true)
      .range_note("beta must be > 0: beta = 0 makes every margin 0 (no learning signal) and beta < 0 trains "
                  "towards the rejected image.");
}

// A FLOAT parameter checked against [lo or (lo, hi] or hi). The host already validated it against the
// schema; create() checks again so that a direct C caller gets the same clear refusal.
inline double checked_real(const sdk::Params& params, const std::string& plugin_id, const char* name, double lo,
                           bool lo_exclusive, double hi, bool hi_exclusive, const std::string& note) {
  const double value = params.number(name);
  const bool below = lo_exclusive ? !(value > lo) : !(value >= lo);
  const bool above = hi_exclusive ? !(value < hi) : !(value <= hi);
  if (below || above) {
    std::string range = std::string(lo_exclusive ? "(" : "[") + format_number(lo) + ", " +
                        (std::isinf(hi) ? std::string("inf)") : format_number(hi) + (hi_exclusive ? ")" : "]"));
    throw sdk::Error(PD_ERR_INVALID_ARGUMENT, plugin_id + ": parameter '" + name + "' = " + format_number(value) +
                                                  " is outside " + range + ". " + note);
  }
  return value;
}

inline double checked_beta(const sdk::Params& params, const std::string& plugin_id) {
  return checked_real(params, plugin_id, "beta", 0.0, true, INFINITY, false,
                      "beta must be > 0 (DiffusionDPO convention, default 5000).");
}

}  // namespace prefdiff::objectives

#endif  // PREFDIFF_PLUGINS_OBJECTIVE_COMMON_HPP
