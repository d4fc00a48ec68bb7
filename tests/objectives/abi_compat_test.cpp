// ABI 1.1 against 1.0, both ways: a plugin built with the 1.0 headers still loads, passes the kit and
// computes what it did; a 1.1 plugin reads a 1.0 host's smaller inputs struct, and one that needs the
// 1.1 inputs refuses such a host with a message instead of reading past the struct. Plus the rules for
// the optional inputs: NULL references only for PD_CAP_REFERENCE_FREE, inner products required by
// PD_CAP_NEEDS_ERROR_INNER_PRODUCTS.
#include <dlfcn.h>

#include <cstring>
#include <random>

#include "plugin_fixture.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff_test {
namespace {

constexpr uint32_t kInputsSize_1_0 = 72;  // sizeof(pd_objective_inputs) in ABI 1.0 (tests/host/test_abi_layout.cpp)

pc::Batch realistic_batch(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> mse(0.05, 1.0), offset(-3e-3, 3e-3);
  pc::Batch batch;
  for (size_t i = 0; i < n; ++i) {
    batch.ref_w.push_back(mse(rng));
    batch.ref_l.push_back(mse(rng));
    batch.model_l.push_back(mse(rng));
    batch.model_w.push_back(batch.ref_w.back() + batch.model_l.back() - batch.ref_l.back() + offset(rng));
    batch.error_ww.push_back(batch.model_w.back());
    batch.error_ll.push_back(batch.model_l.back());
    batch.error_wl.push_back(0.8 * std::sqrt(batch.model_w.back() * batch.model_l.back()));
  }
  return batch;
}

// Calls evaluate() through the raw function table with pd_objective_inputs.struct_size = `size`, as a host
// built for another minor version would.
pc::Evaluation evaluate_with_inputs_size(const pc::PluginLibrary& plugin, const pc::Batch& batch, uint32_t size) {
  const pd_objective_functions& f = *static_cast<const pd_objective_functions*>(plugin.descriptor->functions);
  const pc::ParamSet resolved = pc::resolve_params(plugin, {});
  const std::vector<pd_param_value>& params = resolved.abi();
  prefdiff::sdk::ErrorBuffer error;
  pd_instance* instance = nullptr;
  EXPECT_EQ(f.create(pc::default_host_services(), params.data(), static_cast<uint32_t>(params.size()), &instance,
                     error.get()),
            PD_OK)
      << error.message();
  const size_t n = batch.size();
  pc::Evaluation e;
  e.loss.resize(n);
  e.dloss_dmodel_w.resize(n);
  e.dloss_dmodel_l.resize(n);
  e.margin.resize(n);
  e.diagnostics.resize(f.diagnostic_count);
  pd_objective_inputs in{};
  in.struct_size = size;
  in.count = n;
  in.model_w = batch.model_w.data();
  in.model_l = batch.model_l.data();
  in.ref_w = batch.ref_w.data();
  in.ref_l = batch.ref_l.data();
  in.global_count = n;
  // Garbage beyond a 1.0 struct: a plugin that honours struct_size never looks at it.
  if (size <= kInputsSize_1_0) in.error_ww = in.error_wl = in.error_ll = reinterpret_cast<const double*>(0x10);
  pd_objective_outputs out{sizeof(pd_objective_outputs), static_cast<uint32_t>(e.diagnostics.size()), e.loss.data(),
                           e.dloss_dmodel_w.data(), e.dloss_dmodel_l.data(), e.margin.data(),
                           e.diagnostics.empty() ? nullptr : e.diagnostics.data()};
  error.reset();
  e.status = f.evaluate(instance, &in, &out, error.get());
  e.message = error.message();
  f.destroy(instance);
  return e;
}

void expect_same(const pc::Evaluation& a, const pc::Evaluation& b, const std::string& what) {
  ASSERT_EQ(a.status, PD_OK) << what << ": " << a.message;
  ASSERT_EQ(b.status, PD_OK) << what << ": " << b.message;
  const std::vector<double> pc::Evaluation::*fields[] = {&pc::Evaluation::loss, &pc::Evaluation::dloss_dmodel_w,
                                                         &pc::Evaluation::dloss_dmodel_l, &pc::Evaluation::margin};
  for (const auto field : fields) {
    ASSERT_EQ((a.*field).size(), (b.*field).size()) << what;
    EXPECT_EQ(std::memcmp((a.*field).data(), (b.*field).data(), (a.*field).size() * sizeof(double)), 0) << what;
  }
}

pc::PluginLibrary legacy() { return pc::load_plugin(std::string(PREFDIFF_LEGACY_PLUGIN_DIR) + "/liblegacy_dpo.so"); }

TEST(AbiCompat, APluginBuiltForAbi10LoadsPassesTheKitAndComputesAsBefore) {
  const pc::PluginLibrary old = legacy();
  EXPECT_EQ(old.descriptor->abi_major, 1u);
  EXPECT_EQ(old.descriptor->abi_minor, 0u);
  EXPECT_EQ(PD_ABI_MINOR, 1u);
  const pc::Report report = pc::check_objective(old);
  EXPECT_TRUE(report.passed()) << report.text();
  // Called with the 1.1 inputs (96 bytes, inner products set): it reads only its 1.0 prefix.
  const pc::Batch batch = realistic_batch(40, 1);
  pc::ObjectiveInstance a(old, pc::resolve_params(old, {}));
  pc::ObjectiveInstance b(objective("dpo"), pc::resolve_params(objective("dpo"), {}));
  expect_same(a.try_evaluate(batch), b.try_evaluate(batch), "legacy-dpo vs dpo");
}

TEST(AbiCompat, A11PluginReadsTheSmallerInputsOfA10Host) {
  const pc::Batch batch = realistic_batch(24, 2);
  for (const char* stem : {"dpo", "ipo", "dmpo", "mapo", "alpha_dpo", "holder_dpo"}) {
    const pc::PluginLibrary plugin = objective(stem);
    expect_same(evaluate_with_inputs_size(plugin, batch, kInputsSize_1_0),
                evaluate_with_inputs_size(plugin, batch, sizeof(pd_objective_inputs)), stem);
  }
}

TEST(AbiCompat, A11PluginThatNeedsTheNewInputsRefusesA10Host) {
  const pc::Evaluation e = evaluate_with_inputs_size(objective("sdpo"), realistic_batch(4, 3), kInputsSize_1_0);
  EXPECT_EQ(e.status, PD_ERR_UNSUPPORTED);
  for (const char* part : {"sdpo", "ABI 1.1", "struct_size 72", "error_ww"})
    EXPECT_NE(e.message.find(part), std::string::npos) << "'" << part << "' not in: " << e.message;
}

TEST(AbiCompat, EntryPointRefusesA10HostOnlyForPluginsThatNeedTheNewInputs) {
  for (const char* stem : {"sdpo", "dpo", "mapo"}) {
    void* handle = dlopen(plugin_path(stem).c_str(), RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(handle, nullptr) << dlerror();
    auto entry = reinterpret_cast<pd_entry_fn>(dlsym(handle, PREFDIFF_ENTRY_SYMBOL));
    ASSERT_NE(entry, nullptr);
    const pd_plugin_descriptor* descriptor = nullptr;
    prefdiff::sdk::ErrorBuffer error;
    const pd_status on_old = entry(1, 0, pc::default_host_services(), &descriptor, error.get());
    if (std::string(stem) == "sdpo") {
      EXPECT_EQ(on_old, PD_ERR_UNSUPPORTED);
      EXPECT_NE(error.message().find("ABI 1.1"), std::string::npos) << error.message();
      EXPECT_NE(error.message().find("speaks ABI 1.0"), std::string::npos) << error.message();
    } else {
      EXPECT_EQ(on_old, PD_OK) << stem << ": " << error.message();  // mapo: a 1.0 host just passes references
    }
    error.reset();
    EXPECT_EQ(entry(1, 1, pc::default_host_services(), &descriptor, error.get()), PD_OK) << error.message();
    ASSERT_NE(descriptor, nullptr);
    EXPECT_EQ(descriptor->abi_minor, 1u);
  }
}

TEST(AbiCompat, OnlyReferenceFreeObjectivesAcceptNoReference) {
  pc::Batch batch = realistic_batch(16, 4), bare = batch;
  bare.ref_w.clear();
  bare.ref_l.clear();
  pc::ObjectiveInstance mapo(objective("mapo"), pc::resolve_params(objective("mapo"), {}));
  expect_same(mapo.try_evaluate(batch), mapo.try_evaluate(bare), "mapo without references");
  EXPECT_TRUE(objective("mapo").descriptor->capabilities & PD_CAP_REFERENCE_FREE);
  for (const char* stem : {"dpo", "ipo", "dmpo", "sdpo"}) {
    EXPECT_FALSE(objective(stem).descriptor->capabilities & PD_CAP_REFERENCE_FREE) << stem;
    pc::ObjectiveInstance instance(objective(stem), pc::resolve_params(objective(stem), {}));
    const pc::Evaluation e = instance.try_evaluate(bare);
    EXPECT_EQ(e.status, PD_ERR_INVALID_ARGUMENT) << stem;
    EXPECT_NE(e.message.find("PD_CAP_REFERENCE_FREE"), std::string::npos) << e.message;
  }
  pc::Batch half = batch;
  half.ref_l.clear();
  const pc::Evaluation e = mapo.try_evaluate(half);
  EXPECT_EQ(e.status, PD_ERR_INVALID_ARGUMENT);
  EXPECT_NE(e.message.find("both or neither"), std::string::npos) << e.message;
}

TEST(AbiCompat, InnerProductsAreRequiredWhereDeclaredAndIgnoredElsewhere) {
  pc::Batch batch = realistic_batch(8, 5), bare = batch;
  bare.error_ww.clear();
  bare.error_wl.clear();
  bare.error_ll.clear();
  EXPECT_TRUE(objective("sdpo").descriptor->capabilities & PD_CAP_NEEDS_ERROR_INNER_PRODUCTS);
  pc::ObjectiveInstance sdpo(objective("sdpo"), pc::resolve_params(objective("sdpo"), {}));
  const pc::Evaluation e = sdpo.try_evaluate(bare);
  EXPECT_EQ(e.status, PD_ERR_INVALID_ARGUMENT);
  EXPECT_NE(e.message.find("error_ww/error_wl/error_ll"), std::string::npos) << e.message;
  // A NaN in an inner product an objective does not read is no error of its inputs.
  pc::Batch poisoned = batch;
  poisoned.error_wl[2] = NAN;
  pc::ObjectiveInstance dpo(objective("dpo"), pc::resolve_params(objective("dpo"), {}));
  expect_same(dpo.try_evaluate(poisoned), dpo.try_evaluate(bare), "dpo ignores the inner products");
  EXPECT_EQ(sdpo.try_evaluate(poisoned).status, PD_ERR_NON_FINITE);
}

}  // namespace
}  // namespace prefdiff_test
