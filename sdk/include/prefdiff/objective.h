/*
 * Tier-1 function table for preference objectives (pd_kind PD_KIND_OBJECTIVE).
 *
 * The host passes four per-pair vectors of denoising errors (per-image mean squared errors, fp32 on the
 * device, handed over as doubles): the policy ("model") and the frozen reference ("ref") for the
 * preferred image (w) and the other one (l), plus each pair's timestep and the optimizer step.
 *
 * Optional inputs (ABI 1.1), requested through the descriptor's capabilities:
 *   - PD_CAP_REFERENCE_FREE: the objective never reads ref_w/ref_l. A 1.1 host may then skip the
 *     reference model and pass ref_w = ref_l = NULL (both or neither). Without the flag they are always set.
 *   - PD_CAP_NEEDS_ERROR_INNER_PRODUCTS: the objective reads, per pair, the Gram matrix of the policy's
 *     error vectors e = model_pred - target (the tensor whose mean square is model_w / model_l), divided
 *     by D, the number of elements of one image's error (C*H*W):
 *       error_ww[i] = <e_w, e_w>/D   (the same number as model_w[i])
 *       error_wl[i] = <e_w, e_l>/D
 *       error_ll[i] = <e_l, e_l>/D   (the same number as model_l[i])
 *     They are constants for differentiation: the host backpropagates only through model_w and model_l
 *     (the surrogate below), so an objective may use error_ww/error_ll as stop-gradient copies of
 *     model_w/model_l. A host that does not fill them (a 1.0 host, whose struct_size ends before them, or
 *     NULL pointers) must be refused with a message, never read.
 *
 * The plugin writes, per pair i:
 *   loss[i]            the pair's loss l_i (NOT divided by the batch size)
 *   dloss_dmodel_w[i]  d l_i / d model_w[i]
 *   dloss_dmodel_l[i]  d l_i / d model_l[i]
 *   margin[i]          the pair's preference logit, > 0 when the policy prefers the winner: for objectives
 *                      with a reference the Diffusion-DPO h_i = -0.5*beta*((model_w-ref_w) - (model_l-ref_l));
 *                      a reference-free objective reports its own (the host logs it and counts h > 0)
 * and `diagnostic_count` batch-level scalars named by `diagnostic_names` (e.g. alpha).
 *
 * Quantities that are stop-gradient in the objective (alpha-DPO's alpha) are constants in these
 * derivatives. The host averages over the global batch and backpropagates through the surrogate
 * sum_i (dloss_dmodel_w[i]*model_w[i] + dloss_dmodel_l[i]*model_l[i]) / B.
 *
 * A NaN or Inf in any input must be answered with PD_ERR_NON_FINITE, never with non-finite outputs.
 */
#ifndef PREFDIFF_OBJECTIVE_H
#define PREFDIFF_OBJECTIVE_H

#include "prefdiff/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pd_objective_inputs {
  uint32_t struct_size;
  uint32_t reserved;
  uint64_t count;          /* pairs on this rank */
  const double* model_w;
  const double* model_l;
  const double* ref_w;     /* NULL only for PD_CAP_REFERENCE_FREE objectives on a 1.1 host */
  const double* ref_l;
  const double* timestep;  /* may be NULL */
  int64_t step;            /* optimizer step, 0-based */
  uint64_t global_count;   /* pairs over all ranks (== count on one rank) */
  /* ABI 1.1 (struct_size >= 96): filled for PD_CAP_NEEDS_ERROR_INNER_PRODUCTS, else NULL. */
  const double* error_ww;  /* <e_w, e_w>/D */
  const double* error_wl;  /* <e_w, e_l>/D */
  const double* error_ll;  /* <e_l, e_l>/D */
} pd_objective_inputs;

typedef struct pd_objective_outputs {
  uint32_t struct_size;
  uint32_t diagnostic_capacity; /* length of `diagnostics` */
  double* loss;
  double* dloss_dmodel_w;
  double* dloss_dmodel_l;
  double* margin;
  double* diagnostics;
} pd_objective_outputs;

typedef struct pd_objective_functions {
  uint32_t struct_size;
  uint32_t diagnostic_count;
  const char* const* diagnostic_names;
  /* params: schema-checked values with defaults filled in. */
  pd_status (*create)(const pd_host_services* host, const pd_param_value* params, uint32_t param_count,
                      pd_instance** instance, pd_error* error);
  void (*destroy)(pd_instance* instance);
  pd_status (*evaluate)(pd_instance* instance, const pd_objective_inputs* inputs,
                        pd_objective_outputs* outputs, pd_error* error);
  /* Optional (NULL when not PD_CAP_STATEFUL). save_state: when `buffer` is NULL or too small, sets
   * *size to the needed size and returns PD_ERR_BUFFER_TOO_SMALL (PD_OK with buffer NULL is also fine). */
  pd_status (*save_state)(pd_instance* instance, void* buffer, size_t* size, pd_error* error);
  pd_status (*load_state)(pd_instance* instance, const void* buffer, size_t size, pd_error* error);
} pd_objective_functions;

#ifdef __cplusplus
}
#endif

#endif /* PREFDIFF_OBJECTIVE_H */
