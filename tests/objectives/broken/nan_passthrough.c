/* A plugin written directly against the C ABI (no SDK guard) that forgets the NaN check: a NaN input
 * comes back as NaN outputs with PD_OK. The conformance kit must fail it. Otherwise it is correct DPO. */
#include <math.h>
#include <stddef.h>

#include "prefdiff/objective.h"

static const pd_param_spec kParams[] = {
    {sizeof(pd_param_spec), PD_PARAM_FLOAT, "beta", "inverse temperature", 5000.0, NULL, 0.0, 0.0,
     PD_PARAM_HAS_MIN | PD_PARAM_MIN_EXCLUSIVE, 0, NULL, NULL}};

typedef struct pd_instance {
  double beta;
} instance_t;

static instance_t g_instance;

static pd_status create(const pd_host_services* host, const pd_param_value* params, uint32_t count,
                        pd_instance** out, pd_error* error) {
  (void)host;
  (void)error;
  g_instance.beta = 5000.0;
  for (uint32_t i = 0; i < count; ++i) g_instance.beta = params[i].number;
  *out = &g_instance;
  return PD_OK;
}

static void destroy(pd_instance* instance) { (void)instance; }

static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static pd_status evaluate(pd_instance* instance, const pd_objective_inputs* in, pd_objective_outputs* out,
                          pd_error* error) {
  (void)error;
  for (uint64_t i = 0; i < in->count; ++i) {
    const double h = -0.5 * instance->beta * ((in->model_w[i] - in->ref_w[i]) - (in->model_l[i] - in->ref_l[i]));
    const double g = -1.0 / (1.0 + exp(h));
    out->margin[i] = h;
    out->loss[i] = softplus(-h);
    out->dloss_dmodel_w[i] = g * (-0.5 * instance->beta);
    out->dloss_dmodel_l[i] = g * (0.5 * instance->beta);
  }
  return PD_OK;
}

static const pd_objective_functions kFunctions = {sizeof(pd_objective_functions), 0, NULL, &create, &destroy,
                                                  &evaluate, NULL, NULL};

static const pd_plugin_descriptor kDescriptor = {
    sizeof(pd_plugin_descriptor), PD_ABI_MAJOR, PD_ABI_MINOR, PD_KIND_OBJECTIVE, "nan-passthrough", "0.0.1",
    "DPO in plain C without a NaN check", "none", "nan-passthrough/1", kParams, 1, 0, 0, &kFunctions};

PD_EXPORT pd_status prefdiff_plugin_entry(uint32_t host_major, uint32_t host_minor, const pd_host_services* host,
                                          const pd_plugin_descriptor** descriptor, pd_error* error) {
  (void)host_minor;
  (void)host;
  (void)error;
  if (host_major != PD_ABI_MAJOR) return PD_ERR_ABI_MISMATCH;
  *descriptor = &kDescriptor;
  return PD_OK;
}
