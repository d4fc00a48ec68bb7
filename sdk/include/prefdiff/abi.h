/*
 * prefdiff tier-1 plugin ABI (pure C, stable).
 *
 * A plugin is a shared library exporting exactly one symbol, PREFDIFF_ENTRY_SYMBOL, of type
 * pd_entry_fn. The host calls it with the highest ABI version it speaks and a table of host services;
 * the plugin answers with a descriptor (static data that lives as long as the library).
 *
 * Versioning rules (see docs/plugin-guide.md):
 *   - PD_ABI_MAJOR must match exactly between host and plugin.
 *   - A minor version only appends fields to the end of structs. Every struct that crosses the boundary
 *     starts with uint32_t struct_size; a reader uses a field only if struct_size says it is there
 *     (PD_HAS_FIELD). Offsets of every shipped version are pinned by static_asserts in
 *     tests/host/test_abi_layout.cpp. A host or plugin built for an older minor version keeps working:
 *     the newer side reads the older, smaller structs through struct_size.
 *   - Every function returns pd_status and never lets a C++ exception escape. On failure it writes a
 *     message into the caller's pd_error buffer.
 *
 * Per-kind function tables live in objective.h, noise.h and dataset.h.
 */
#ifndef PREFDIFF_ABI_H
#define PREFDIFF_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PD_ABI_MAJOR 1u
#define PD_ABI_MINOR 1u /* 1.1: objective input requests (PD_CAP_REFERENCE_FREE, error inner products) */

/* The one exported symbol of every tier-1 plugin library. */
#define PREFDIFF_ENTRY_SYMBOL "prefdiff_plugin_entry"

#if defined(_WIN32)
#define PD_EXPORT __declspec(dllexport)
#else
#define PD_EXPORT __attribute__((visibility("default")))
#endif

/* True when a struct of the given size (struct_size as read from the struct) contains `field`. */
#define PD_HAS_FIELD(ptr, type, field) \
  ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type*)0)->field))

typedef enum pd_status {
  PD_OK = 0,
  PD_ERR_INVALID_ARGUMENT = 1, /* a parameter or input is outside what the plugin accepts */
  PD_ERR_NON_FINITE = 2,       /* a NaN or Inf input */
  PD_ERR_ABI_MISMATCH = 3,     /* the plugin cannot speak the host's ABI major */
  PD_ERR_UNSUPPORTED = 4,      /* the call is not implemented by this plugin */
  PD_ERR_OUT_OF_MEMORY = 5,
  PD_ERR_BUFFER_TOO_SMALL = 6, /* an output buffer is too small; the needed size is reported */
  PD_ERR_IO = 7,
  PD_ERR_INTERNAL = 8          /* anything else, including a C++ exception caught at the boundary */
} pd_status;

typedef enum pd_kind {
  PD_KIND_OBJECTIVE = 1,
  PD_KIND_NOISE_INJECTOR = 2,
  PD_KIND_DATASET = 3
} pd_kind;

typedef enum pd_log_level {
  PD_LOG_DEBUG = 0,
  PD_LOG_INFO = 1,
  PD_LOG_WARN = 2,
  PD_LOG_ERROR = 3
} pd_log_level;

/* Error message buffer, owned by the caller. A callee writes a NUL-terminated message of at most
 * capacity-1 bytes (truncating if needed). */
typedef struct pd_error {
  uint32_t struct_size;
  uint32_t capacity;
  char* message;
} pd_error;

/* ---------------------------------------------------------------- parameter schema */

typedef enum pd_param_type {
  PD_PARAM_FLOAT = 1,  /* double */
  PD_PARAM_INT = 2,    /* int64 stored in number */
  PD_PARAM_BOOL = 3,   /* 0 or 1 stored in number */
  PD_PARAM_STRING = 4  /* string; may be restricted to `choices` */
} pd_param_type;

/* Bounds flags for pd_param_spec.bounds. */
#define PD_PARAM_HAS_MIN 0x1u
#define PD_PARAM_HAS_MAX 0x2u
#define PD_PARAM_MIN_EXCLUSIVE 0x4u
#define PD_PARAM_MAX_EXCLUSIVE 0x8u
#define PD_PARAM_OPTIONAL 0x10u /* no default; absent means "not set" (e.g. alpha in fixed mode) */
#define PD_PARAM_PATH 0x20u     /* STRING is a filesystem path: the host makes a relative one relative to
                                   the recipe file that sets it */

typedef struct pd_param_spec {
  uint32_t struct_size;
  uint32_t type;           /* pd_param_type */
  const char* name;        /* lowercase, [a-z0-9_] */
  const char* doc;         /* one or two sentences; units and conventions */
  double default_number;   /* FLOAT, INT, BOOL */
  const char* default_string; /* STRING */
  double min;
  double max;
  uint32_t bounds;         /* PD_PARAM_* flags */
  uint32_t reserved;
  const char* choices;     /* STRING: '|'-separated allowed values, or NULL for any */
  const char* range_note;  /* optional: why the bounds are what they are (shown when violated) */
} pd_param_spec;

/* One parameter value, as passed to a plugin's create(). Values are already checked against the
 * schema by the host: names exist, types match, bounds hold. Absent parameters are filled with their
 * defaults (PD_PARAM_OPTIONAL ones are simply absent). */
typedef struct pd_param_value {
  uint32_t struct_size;
  uint32_t type;       /* pd_param_type */
  const char* name;
  double number;       /* FLOAT, INT, BOOL */
  const char* string;  /* STRING */
} pd_param_value;

/* ---------------------------------------------------------------- host services */

typedef struct pd_host_services {
  uint32_t struct_size;
  uint32_t reserved;
  void* context; /* passed back as the first argument of every service */
  void (*log)(void* context, pd_log_level level, const char* plugin_id, const char* message);
  /* Records a named scalar for the current step (averaged over the logging window by the host). */
  void (*metric)(void* context, const char* plugin_id, const char* name, double value);
  /* Host memory, aligned to `alignment` (a power of two). May return NULL. */
  void* (*allocate)(void* context, size_t bytes, size_t alignment);
  void (*release)(void* context, void* pointer);
  /* In-place sum of `count` doubles over every rank of the data-parallel group (identity when there is
   * one rank). Collective: every rank must call it the same number of times with the same count. */
  pd_status (*all_reduce_sum)(void* context, double* values, size_t count, pd_error* error);
  int32_t rank;       /* this process's data-parallel rank */
  int32_t world_size; /* number of data-parallel ranks */
} pd_host_services;

/* ---------------------------------------------------------------- descriptor */

/* Capability flags. */
#define PD_CAP_BATCH_COUPLED 0x1ull /* per-pair outputs depend on the whole (all-ranks) batch, e.g. batch-mean alpha */
#define PD_CAP_STATEFUL 0x2ull      /* has state to save in checkpoints (save_state/load_state) */
/* ABI 1.1, objectives: which optional inputs the plugin reads (objective.h). A host computes only what
 * the objectives of a recipe declare; a 1.0 host ignores these bits and always passes the references. */
#define PD_CAP_REFERENCE_FREE 0x4ull /* never reads ref_w/ref_l: the host may skip the reference model and pass NULL */
#define PD_CAP_NEEDS_ERROR_INNER_PRODUCTS 0x8ull /* reads error_ww/error_wl/error_ll of pd_objective_inputs 1.1 */

typedef struct pd_plugin_descriptor {
  uint32_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t kind; /* pd_kind */
  const char* id;              /* unique, e.g. "alpha-dpo" */
  const char* version;         /* the plugin's own semantic version */
  const char* summary;         /* one line */
  const char* citation;        /* the paper or code it implements */
  const char* formula_version; /* bumps whenever the maths changes, even with the same id */
  const pd_param_spec* params;
  uint32_t param_count;
  uint32_t reserved;
  uint64_t capabilities;       /* PD_CAP_* */
  const void* functions;       /* kind-specific table: pd_objective_functions, pd_noise_functions, ... */
} pd_plugin_descriptor;

/* The entry point. `host` stays valid for the life of the process. */
typedef pd_status (*pd_entry_fn)(uint32_t host_abi_major, uint32_t host_abi_minor,
                                 const pd_host_services* host, const pd_plugin_descriptor** descriptor,
                                 pd_error* error);

/* An opaque plugin instance (one per configured component). */
typedef struct pd_instance pd_instance;

#ifdef __cplusplus
}
#endif

#endif /* PREFDIFF_ABI_H */
