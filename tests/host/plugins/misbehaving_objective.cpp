// Objectives that break the plugin contract in ways the host cannot prevent, one per MISBEHAVE_* define,
// to test that the host names the plugin and the call instead of dying silently (docs/quickstart.md, exit
// codes). Written against the raw C ABI, without the SDK's export guard, so that exceptions do escape.
// Until the optimizer step `at_step` (default 0) they are plain DPO at beta 5000.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <prefdiff/objective.h>

namespace {

#define STRINGIFY2(x) #x
#define STRINGIFY(x) STRINGIFY2(x)

struct Instance {
  long long at_step = 0;
};

#if defined(MISBEHAVE_EXIT_WHEN_LOADED)
// A load-time constructor that ends the process: runs inside dlopen, before the entry point.
__attribute__((constructor)) void leave_at_load() { std::exit(0); }
#endif

void misbehave() {
#if defined(MISBEHAVE_SEGV)
  volatile int* nowhere = nullptr;
  *nowhere = 1;
#elif defined(MISBEHAVE_ABORT)
  std::abort();
#elif defined(MISBEHAVE_EXIT)
  std::exit(0);
#elif defined(MISBEHAVE_THROW)
  throw std::runtime_error("the misbehaving objective throws out of evaluate");
#endif
}

pd_status create(const pd_host_services*, const pd_param_value* params, uint32_t count, pd_instance** out, pd_error*) {
  Instance* instance = new Instance;
  for (uint32_t i = 0; i < count; ++i)
    if (std::strcmp(params[i].name, "at_step") == 0) instance->at_step = static_cast<long long>(params[i].number);
  *out = reinterpret_cast<pd_instance*>(instance);
  return PD_OK;
}

void destroy(pd_instance* instance) { delete reinterpret_cast<Instance*>(instance); }

pd_status evaluate(pd_instance* handle, const pd_objective_inputs* in, pd_objective_outputs* out, pd_error* error) {
  const Instance& instance = *reinterpret_cast<Instance*>(handle);
  if (in->step >= instance.at_step) misbehave();
  for (uint64_t i = 0; i < in->count; ++i) {
    const double values[] = {in->model_w[i], in->model_l[i], in->ref_w[i], in->ref_l[i]};
    for (double v : values)
      if (!std::isfinite(v)) {
        std::snprintf(error->message, error->capacity, "non-finite input");
        return PD_ERR_NON_FINITE;
      }
    const double h = -0.5 * 5000.0 * ((in->model_w[i] - in->ref_w[i]) - (in->model_l[i] - in->ref_l[i]));
    const double s = 1.0 / (1.0 + std::exp(h));  // sigmoid(-h)
    out->margin[i] = h;
    out->loss[i] = h > 0 ? std::log1p(std::exp(-h)) : -h + std::log1p(std::exp(h));
    out->dloss_dmodel_w[i] = -s * -2500.0;
    out->dloss_dmodel_l[i] = -s * 2500.0;
  }
  return PD_OK;
}

const pd_param_spec params[] = {{sizeof(pd_param_spec), PD_PARAM_INT, "at_step", "The step from which it misbehaves.",
                                 0, nullptr, 0, 0, PD_PARAM_HAS_MIN, 0, nullptr, nullptr}};
const pd_objective_functions functions = {sizeof(pd_objective_functions), 0, nullptr, &create, &destroy, &evaluate,
                                          nullptr, nullptr};
const pd_plugin_descriptor descriptor = {sizeof(pd_plugin_descriptor), PD_ABI_MAJOR, PD_ABI_MINOR, PD_KIND_OBJECTIVE,
                                         MISBEHAVING_ID, "0.0.1", "misbehaves on purpose (tests only)", "none", "none",
                                         params, 1, 0, 0, &functions};

}  // namespace

extern "C" PD_EXPORT pd_status prefdiff_plugin_entry(uint32_t, uint32_t, const pd_host_services*,
                                                     const pd_plugin_descriptor** out, pd_error*) {
#if defined(MISBEHAVE_THROW_IN_ENTRY)
  throw std::runtime_error("the misbehaving plugin throws out of its entry point");
#endif
  *out = &descriptor;
  return PD_OK;
}
