// A noise injector ("none-test") and a dataset source descriptor ("test-dataset") for host recipe
// tests, so they do not depend on the first-party plugins' parameters. The dataset is only ever
// validated, never read.
#include <prefdiff/sdk.hpp>

#if defined(TEST_NOISE)
namespace {
using namespace prefdiff::sdk;
class NoneTest final : public NoiseInjector {
 public:
  static PluginInfo info() {
    PluginInfo info;
    info.id = "none-test";
    info.version = "0.0.1";
    info.summary = "flips nothing";
    info.citation = "none";
    info.formula_version = "none";
    info.params = {ParamSpec::integer("seed", 0, "Unused.").min(0)};
    return info;
  }
  NoneTest(const Params&, const Host&) {}
  void decide(const NoiseBatch& batch, uint8_t* flip) override {
    for (size_t i = 0; i < batch.count; ++i) flip[i] = 0;
  }
};
}  // namespace
PREFDIFF_EXPORT_NOISE_INJECTOR(NoneTest)

#elif defined(TEST_DATASET)
#include <prefdiff/dataset.h>
namespace {
// Validation only: every call reports that this source has no data.
pd_status no_data(pd_error* error) {
  prefdiff::sdk::write_error(error, "test-dataset holds no data");
  return PD_ERR_UNSUPPORTED;
}
const pd_dataset_functions table = {
    sizeof(pd_dataset_functions), 0,
    [](const pd_host_services*, const pd_param_value*, uint32_t, pd_instance**, pd_error* e) { return no_data(e); },
    [](pd_instance*) {},
    [](pd_instance*, const pd_dataset_description**, pd_error* e) { return no_data(e); },
    [](pd_instance*, const pd_dataset_request*, pd_error* e) { return no_data(e); }};
const pd_param_spec params[] = {{sizeof(pd_param_spec), PD_PARAM_STRING, "shards", "Shard glob.", 0, "", 0, 0,
                                 PD_PARAM_PATH, 0, nullptr, nullptr}};
const pd_plugin_descriptor descriptor = {sizeof(pd_plugin_descriptor), PD_ABI_MAJOR, PD_ABI_MINOR, PD_KIND_DATASET,
                                         "test-dataset", "0.0.1", "validation-only dataset", "none", "none", params,
                                         1, 0, 0, &table};
}  // namespace
extern "C" PD_EXPORT pd_status prefdiff_plugin_entry(uint32_t, uint32_t, const pd_host_services*,
                                                     const pd_plugin_descriptor** out, pd_error*) {
  *out = &descriptor;
  return PD_OK;
}
#endif
