/*
 * Tier-1 function table for dataset sources (pd_kind PD_KIND_DATASET).
 *
 * A dataset source serves preference pairs by index. It describes its tensors once (names, dtypes,
 * per-pair shapes), its size and its attributes, then fills host-allocated buffers for whatever pair
 * indices the host asks for. Shuffling, rank sharding, prefetching, caption dropout and latent sampling
 * are host policy and stay out of sources, so a new source (LMDB, webdataset, a database) is only a
 * describe() and a read().
 *
 * Standard tensor names (per-pair shapes; the host prepends the batch axis):
 *   latent_w, latent_l          [C, h, w]  f16 or f32   VAE latent mean, already times the scale factor
 *   latent_w_std, latent_l_std  [C, h, w]  optional     posterior std, for sampling the latent
 *   prompt_embeds               [S, X]                  text-encoder hidden states of the pair's prompt
 *   pooled_embeds               [D]        SDXL only    pooled text embedding
 *   time_ids                    [2, 6]     f32, SDXL    (orig_h, orig_w, crop_top, crop_left, target_h, target_w)
 *                                                       of winner (row 0) and loser (row 1)
 *   pair_id                     []         u64          stable id from the source data (noise, dedup)
 *   meta/<name>                 []         f64          per-pair metadata column (flag PD_TENSOR_METADATA)
 * The winner is first per the source labels; label noise is applied by the host afterwards.
 *
 * Standard attribute names (values are strings): format_version, backbone_family, latent_shape
 * ("CxHxW"), latent_scale_factor, vae_id, text_encoder_id, text_encoder_2_id, encoder, source_dataset,
 * source_split, location. The host checks them against the recipe and names both values on a mismatch.
 *
 * Threading: the host may call read() from a thread other than the one that called create(), but never
 * concurrently on one instance.
 */
#ifndef PREFDIFF_DATASET_H
#define PREFDIFF_DATASET_H

#include "prefdiff/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pd_dtype {
  PD_DTYPE_F16 = 1, /* IEEE 754 binary16, stored as uint16_t */
  PD_DTYPE_F32 = 2,
  PD_DTYPE_F64 = 3,
  PD_DTYPE_I64 = 4,
  PD_DTYPE_U64 = 5,
  PD_DTYPE_U8 = 6
} pd_dtype;

#define PD_TENSOR_MAX_RANK 8u

/* Tensor flags. */
#define PD_TENSOR_METADATA 0x1u /* a per-pair metadata column (rank 0, f64): input to noise injectors */
#define PD_TENSOR_TEXT 0x2u     /* depends on the prompt: replaced by the empty prompt's on caption dropout */

typedef struct pd_tensor_info {
  uint32_t struct_size;
  uint32_t dtype;                     /* pd_dtype */
  const char* name;
  uint32_t rank;                      /* per-pair rank: the leading pair axis is not counted */
  uint32_t flags;                     /* PD_TENSOR_* */
  int64_t shape[PD_TENSOR_MAX_RANK];  /* per-pair shape; entries past `rank` are 0 */
} pd_tensor_info;

typedef struct pd_dataset_attribute {
  uint32_t struct_size;
  uint32_t reserved;
  const char* name;
  const char* value;
} pd_dataset_attribute;

/* Owned by the instance; valid until destroy(). */
typedef struct pd_dataset_description {
  uint32_t struct_size;
  uint32_t tensor_count;
  uint64_t pair_count;
  const pd_tensor_info* tensors;
  const pd_dataset_attribute* attributes;
  uint32_t attribute_count;
  uint32_t reserved;
} pd_dataset_description;

/* One host-allocated output: `count` rows of the named tensor, row-major, in the tensor's dtype. */
typedef struct pd_dataset_buffer {
  uint32_t struct_size;
  uint32_t reserved;
  const char* name;   /* a tensor name from describe() */
  void* data;
  uint64_t capacity;  /* bytes at `data`; at least count * row bytes */
} pd_dataset_buffer;

typedef struct pd_dataset_request {
  uint32_t struct_size;
  uint32_t buffer_count;           /* only the named tensors are read */
  uint64_t count;                  /* pairs in this call */
  const uint64_t* indices;         /* `count` pair indices in [0, pair_count), any order, repeats allowed */
  const uint8_t* empty_prompt;     /* NULL, or `count` flags: 1 = fill PD_TENSOR_TEXT tensors with the empty
                                      prompt's values (caption dropout) */
  pd_dataset_buffer* buffers;
} pd_dataset_request;

typedef struct pd_dataset_functions {
  uint32_t struct_size;
  uint32_t reserved;
  pd_status (*create)(const pd_host_services* host, const pd_param_value* params, uint32_t param_count,
                      pd_instance** instance, pd_error* error);
  void (*destroy)(pd_instance* instance);
  pd_status (*describe)(pd_instance* instance, const pd_dataset_description** description, pd_error* error);
  pd_status (*read)(pd_instance* instance, const pd_dataset_request* request, pd_error* error);
} pd_dataset_functions;

#ifdef __cplusplus
}
#endif

#endif /* PREFDIFF_DATASET_H */
