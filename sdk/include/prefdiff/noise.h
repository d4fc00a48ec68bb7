/*
 * Tier-1 function table for noise injectors (pd_kind PD_KIND_NOISE_INJECTOR).
 *
 * A noise injector decides, per pair, whether the preference label is flipped (winner and loser
 * swapped). The decision must be a pure function of (parameters, pair id, metadata), so the same pair
 * is flipped identically across epochs, ranks, resumes and objectives.
 *
 * Metadata are named per-pair columns the dataset provides (e.g. "score_gap", "agreement",
 * "annotator"); a column the injector needs but the dataset lacks is an error naming it.
 */
#ifndef PREFDIFF_NOISE_H
#define PREFDIFF_NOISE_H

#include "prefdiff/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pd_noise_inputs {
  uint32_t struct_size;
  uint32_t metadata_count;
  uint64_t count;                      /* pairs in this call */
  const uint64_t* pair_ids;            /* stable ids from the dataset */
  const char* const* metadata_names;   /* metadata_count names */
  const double* const* metadata;       /* metadata_count columns of `count` values */
  uint64_t dataset_size;               /* total pairs in the dataset (for exact-count schemes) */
} pd_noise_inputs;

typedef struct pd_noise_outputs {
  uint32_t struct_size;
  uint32_t reserved;
  uint8_t* flip;                       /* count entries: 1 = swap winner and loser */
} pd_noise_outputs;

typedef struct pd_noise_functions {
  uint32_t struct_size;
  uint32_t reserved;
  pd_status (*create)(const pd_host_services* host, const pd_param_value* params, uint32_t param_count,
                      pd_instance** instance, pd_error* error);
  void (*destroy)(pd_instance* instance);
  pd_status (*decide)(pd_instance* instance, const pd_noise_inputs* inputs, pd_noise_outputs* outputs,
                      pd_error* error);
} pd_noise_functions;

#ifdef __cplusplus
}
#endif

#endif /* PREFDIFF_NOISE_H */
