// Pins the layout of every shipped tier-1 struct version (ABI 1.0 and 1.1, LP64). A failing assert here
// means a change broke binary compatibility with plugins already built: append fields instead, and bump
// PD_ABI_MINOR. ABI 1.1 appended error_ww/error_wl/error_ll to pd_objective_inputs (a 1.0 struct ends at
// byte 72) and the capability bits PD_CAP_REFERENCE_FREE and PD_CAP_NEEDS_ERROR_INNER_PRODUCTS.
#include <cstddef>

#include <gtest/gtest.h>

#include "prefdiff/abi.h"
#include "prefdiff/dataset.h"
#include "prefdiff/noise.h"
#include "prefdiff/objective.h"

#define PIN(type, field, offset) static_assert(offsetof(type, field) == offset, #type "." #field " moved")

static_assert(sizeof(void*) == 8, "the pinned layout is the LP64 one");

static_assert(sizeof(pd_error) == 16);
PIN(pd_error, capacity, 4);
PIN(pd_error, message, 8);

static_assert(sizeof(pd_param_spec) == 80);
PIN(pd_param_spec, type, 4);
PIN(pd_param_spec, name, 8);
PIN(pd_param_spec, doc, 16);
PIN(pd_param_spec, default_number, 24);
PIN(pd_param_spec, default_string, 32);
PIN(pd_param_spec, min, 40);
PIN(pd_param_spec, max, 48);
PIN(pd_param_spec, bounds, 56);
PIN(pd_param_spec, choices, 64);
PIN(pd_param_spec, range_note, 72);

static_assert(sizeof(pd_param_value) == 32);
PIN(pd_param_value, type, 4);
PIN(pd_param_value, name, 8);
PIN(pd_param_value, number, 16);
PIN(pd_param_value, string, 24);

static_assert(sizeof(pd_host_services) == 64);
PIN(pd_host_services, context, 8);
PIN(pd_host_services, log, 16);
PIN(pd_host_services, metric, 24);
PIN(pd_host_services, allocate, 32);
PIN(pd_host_services, release, 40);
PIN(pd_host_services, all_reduce_sum, 48);
PIN(pd_host_services, rank, 56);
PIN(pd_host_services, world_size, 60);

static_assert(sizeof(pd_plugin_descriptor) == 88);
PIN(pd_plugin_descriptor, abi_major, 4);
PIN(pd_plugin_descriptor, abi_minor, 8);
PIN(pd_plugin_descriptor, kind, 12);
PIN(pd_plugin_descriptor, id, 16);
PIN(pd_plugin_descriptor, version, 24);
PIN(pd_plugin_descriptor, summary, 32);
PIN(pd_plugin_descriptor, citation, 40);
PIN(pd_plugin_descriptor, formula_version, 48);
PIN(pd_plugin_descriptor, params, 56);
PIN(pd_plugin_descriptor, param_count, 64);
PIN(pd_plugin_descriptor, capabilities, 72);
PIN(pd_plugin_descriptor, functions, 80);

// 1.0: 72 bytes, up to global_count. 1.1: 96 bytes.
constexpr size_t kObjectiveInputsSize_1_0 = 72;
static_assert(sizeof(pd_objective_inputs) == 96);
PIN(pd_objective_inputs, count, 8);
PIN(pd_objective_inputs, model_w, 16);
PIN(pd_objective_inputs, model_l, 24);
PIN(pd_objective_inputs, ref_w, 32);
PIN(pd_objective_inputs, ref_l, 40);
PIN(pd_objective_inputs, timestep, 48);
PIN(pd_objective_inputs, step, 56);
PIN(pd_objective_inputs, global_count, 64);
PIN(pd_objective_inputs, error_ww, kObjectiveInputsSize_1_0);
PIN(pd_objective_inputs, error_wl, 80);
PIN(pd_objective_inputs, error_ll, 88);

// Capability bits are part of the ABI too: their values never change.
static_assert(PD_CAP_BATCH_COUPLED == 0x1ull && PD_CAP_STATEFUL == 0x2ull);
static_assert(PD_CAP_REFERENCE_FREE == 0x4ull && PD_CAP_NEEDS_ERROR_INNER_PRODUCTS == 0x8ull);

static_assert(sizeof(pd_objective_outputs) == 48);
PIN(pd_objective_outputs, diagnostic_capacity, 4);
PIN(pd_objective_outputs, loss, 8);
PIN(pd_objective_outputs, dloss_dmodel_w, 16);
PIN(pd_objective_outputs, dloss_dmodel_l, 24);
PIN(pd_objective_outputs, margin, 32);
PIN(pd_objective_outputs, diagnostics, 40);

static_assert(sizeof(pd_objective_functions) == 56);
PIN(pd_objective_functions, diagnostic_count, 4);
PIN(pd_objective_functions, diagnostic_names, 8);
PIN(pd_objective_functions, create, 16);
PIN(pd_objective_functions, destroy, 24);
PIN(pd_objective_functions, evaluate, 32);
PIN(pd_objective_functions, save_state, 40);
PIN(pd_objective_functions, load_state, 48);

static_assert(sizeof(pd_noise_inputs) == 48);
PIN(pd_noise_inputs, metadata_count, 4);
PIN(pd_noise_inputs, count, 8);
PIN(pd_noise_inputs, pair_ids, 16);
PIN(pd_noise_inputs, metadata_names, 24);
PIN(pd_noise_inputs, metadata, 32);
PIN(pd_noise_inputs, dataset_size, 40);

static_assert(sizeof(pd_noise_outputs) == 16);
PIN(pd_noise_outputs, flip, 8);

static_assert(sizeof(pd_noise_functions) == 32);
PIN(pd_noise_functions, create, 8);
PIN(pd_noise_functions, destroy, 16);
PIN(pd_noise_functions, decide, 24);

static_assert(sizeof(pd_tensor_info) == 88);
PIN(pd_tensor_info, dtype, 4);
PIN(pd_tensor_info, name, 8);
PIN(pd_tensor_info, rank, 16);
PIN(pd_tensor_info, flags, 20);
PIN(pd_tensor_info, shape, 24);
static_assert(sizeof(pd_dataset_attribute) == 24);
PIN(pd_dataset_attribute, name, 8);
PIN(pd_dataset_attribute, value, 16);
static_assert(sizeof(pd_dataset_description) == 40);
PIN(pd_dataset_description, tensor_count, 4);
PIN(pd_dataset_description, pair_count, 8);
PIN(pd_dataset_description, tensors, 16);
PIN(pd_dataset_description, attributes, 24);
PIN(pd_dataset_description, attribute_count, 32);
static_assert(sizeof(pd_dataset_buffer) == 32);
PIN(pd_dataset_buffer, name, 8);
PIN(pd_dataset_buffer, data, 16);
PIN(pd_dataset_buffer, capacity, 24);
static_assert(sizeof(pd_dataset_request) == 40);
PIN(pd_dataset_request, buffer_count, 4);
PIN(pd_dataset_request, count, 8);
PIN(pd_dataset_request, indices, 16);
PIN(pd_dataset_request, empty_prompt, 24);
PIN(pd_dataset_request, buffers, 32);
static_assert(sizeof(pd_dataset_functions) == 40);
PIN(pd_dataset_functions, create, 8);
PIN(pd_dataset_functions, destroy, 16);
PIN(pd_dataset_functions, describe, 24);
PIN(pd_dataset_functions, read, 32);

TEST(AbiLayout, VersionIsOnePointOne) {
  EXPECT_EQ(PD_ABI_MAJOR, 1u);
  EXPECT_EQ(PD_ABI_MINOR, 1u);
}

TEST(AbiLayout, HasFieldReadsOnlyWhatTheSizeCovers) {
  pd_objective_inputs inputs{};
  inputs.struct_size = offsetof(pd_objective_inputs, global_count);  // an older, shorter version
  EXPECT_TRUE(PD_HAS_FIELD(&inputs, pd_objective_inputs, step));
  EXPECT_FALSE(PD_HAS_FIELD(&inputs, pd_objective_inputs, global_count));
  // What a 1.1 plugin sees from a 1.0 host: everything up to global_count, none of the inner products.
  inputs.struct_size = kObjectiveInputsSize_1_0;
  EXPECT_TRUE(PD_HAS_FIELD(&inputs, pd_objective_inputs, global_count));
  EXPECT_FALSE(PD_HAS_FIELD(&inputs, pd_objective_inputs, error_ww));
  EXPECT_FALSE(PD_HAS_FIELD(&inputs, pd_objective_inputs, error_ll));
  inputs.struct_size = sizeof(pd_objective_inputs);
  EXPECT_TRUE(PD_HAS_FIELD(&inputs, pd_objective_inputs, error_ll));
}
