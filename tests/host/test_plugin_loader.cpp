// Every way a plugin library can be wrong is refused with a message naming the file and the fix.
#include <gtest/gtest.h>

#include "prefdiff/host/host_services.hpp"
#include "prefdiff/host/objective_set.hpp"
#include "prefdiff/host/plugin_registry.hpp"

using namespace prefdiff;

namespace {

std::string plugin_dir(const std::string& name) { return std::string(TEST_PLUGIN_ROOT) + "/" + name; }
std::string plugin_file(const std::string& name) { return plugin_dir(name) + "/lib" + name + ".so"; }

std::string load_error(const std::string& path) {
  try {
    instance::load_library(path, host_services());
  } catch (const PluginLoadError& e) {
    return e.what();
  }
  return "";
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "expected '" << part << "' in: " << text;
}

}  // namespace

TEST(PluginLoader, LoadsAValidPluginWithItsSchema) {
  const PluginLibrary plugin = instance::load_library(plugin_file("test_objective"), host_services());
  EXPECT_EQ(plugin.id(), "test-objective");
  EXPECT_EQ(plugin.kind(), PD_KIND_OBJECTIVE);
  ASSERT_NE(plugin.param("scale"), nullptr);
  EXPECT_EQ(plugin.param("scale")->describe_range(), "[0, 1)");
  EXPECT_FALSE(plugin.param("table_path")->default_value);
}

TEST(PluginLoader, RefusesAFileThatIsNotASharedLibrary) {
  const std::string path = plugin_dir("not_a_library") + "/libnot_a_library.so";
  const std::string error = load_error(path);
  expect_contains(error, path);
  expect_contains(error, "is not a shared library");
}

TEST(PluginLoader, RefusesAMissingFile) { expect_contains(load_error("/nonexistent/libx.so"), "cannot be opened"); }

TEST(PluginLoader, RefusesAMissingEntrySymbol) {
  const std::string error = load_error(plugin_file("broken_missing_symbol"));
  expect_contains(error, "exports no 'prefdiff_plugin_entry' entry point");
  expect_contains(error, "PREFDIFF_EXPORT_");
}

TEST(PluginLoader, RefusesAnAbiMajorMismatchNamingBothVersions) {
  const std::string error = load_error(plugin_file("broken_abi_major"));
  expect_contains(error, "ABI major mismatch: plugin built for ABI 99.");
  expect_contains(error, "this host speaks ABI " + std::to_string(PD_ABI_MAJOR) + "." + std::to_string(PD_ABI_MINOR));
  expect_contains(error, "Rebuild the plugin");
}

TEST(PluginLoader, RefusesATooSmallDescriptor) {
  const std::string error = load_error(plugin_file("broken_tiny_descriptor"));
  expect_contains(error, "descriptor too small: struct_size 8 bytes");
  expect_contains(error, "needs at least 88");
}

TEST(PluginLoader, RefusesATooSmallFunctionTable) {
  expect_contains(load_error(plugin_file("broken_tiny_table")), "objective function table too small: struct_size 4");
}

TEST(PluginLoader, PassesThroughTheEntryPointsOwnMessage) {
  expect_contains(load_error(plugin_file("broken_entry_fails")), "the plugin's own reason: license file missing");
}

TEST(PluginLoader, PassesThroughAThrowingCreatesMessage) {
  const PluginLibrary plugin = instance::load_library(plugin_file("test_throwing"), host_services());
  try {
    instance::ObjectiveInstance objective(plugin, instance::resolve_or_throw(plugin, {{"scale", instance::Value::real(0.25), "", ""}}));
    FAIL() << "create should have failed";
  } catch (const std::runtime_error& e) {
    expect_contains(e.what(), "objective 'test-throwing' refused its parameters");
    expect_contains(e.what(), "cannot create: the test plugin always refuses (scale 0.250000)");
  }
}

TEST(PluginRegistry, ReportsDuplicateIdsWithBothPaths) {
  PluginRegistry registry;
  registry.scan({plugin_dir("test_objective"), plugin_dir("test_objective_copy")});
  ASSERT_EQ(registry.plugins().size(), 1u);
  ASSERT_EQ(registry.problems().size(), 1u);
  const std::string& message = registry.problems()[0].message;
  expect_contains(message, "duplicate plugin id 'test-objective'");
  expect_contains(message, plugin_file("test_objective"));
  expect_contains(registry.problems()[0].path, "test_objective_copy");
}

TEST(PluginRegistry, CollectsEveryBrokenPluginAndKeepsTheGoodOnes) {
  PluginRegistry registry;
  registry.scan({plugin_dir("broken_abi_major"), plugin_dir("broken_missing_symbol"), plugin_dir("not_a_library"),
                 plugin_dir("test_objective"), plugin_dir("test_objective")});
  EXPECT_EQ(registry.plugins().size(), 1u);  // the same folder twice loads it once
  EXPECT_EQ(registry.problems().size(), 3u);
  EXPECT_NE(registry.find("test-objective"), nullptr);
  EXPECT_EQ(registry.ids(PD_KIND_OBJECTIVE), std::vector<std::string>{"test-objective"});
}

// Through the conformance kit: the global pair count reaches the plugin (ranks' batch-mean objectives),
// and a plugin's state failures come back in the host's words with the plugin's own message.
TEST(ObjectiveSet, ForwardsTheGlobalCountAndWordsStateFailures) {
  PluginRegistry registry;
  registry.scan({plugin_dir("test_state_fails")});
  const PluginLibrary& plugin = *registry.find("test-state-fails");
  instance::ObjectiveInstance objective(plugin, instance::resolve_or_throw(plugin, {}));
  ObjectiveInputs in;
  in.model_w = {0.10, 0.20};
  in.model_l = {0.12, 0.18};
  in.ref_w = {0.11, 0.19};
  in.ref_l = {0.11, 0.19};
  const auto global_count = [&] {
    const instance::Evaluation e = objective.evaluate(in);
    for (size_t d = 0; d < objective.diagnostic_names().size(); ++d)
      if (objective.diagnostic_names()[d] == "global_count") return e.diagnostics[d];
    return -1.0;
  };
  EXPECT_EQ(global_count(), 2.0);  // 0: this batch is the whole batch
  in.global_count = 6;
  EXPECT_EQ(global_count(), 6.0);

  ASSERT_TRUE(objective.stateful());
  try {
    objective.save_state();
    FAIL() << "expected a save_state failure";
  } catch (const std::runtime_error& e) {
    expect_contains(e.what(), "objective 'test-state-fails' could not save its state: the test state cannot be saved");
  }
  try {
    objective.load_state("anything");
    FAIL() << "expected a load_state failure";
  } catch (const std::runtime_error& e) {
    expect_contains(e.what(), "objective 'test-state-fails' could not load its state: the test state cannot be loaded");
  }
}

TEST(ObjectiveSet, SumsWeightedObjectives) {
  PluginRegistry registry;
  registry.scan({plugin_dir("test_objective")});
  nlohmann::json single = nlohmann::json::array({{{"id", "test-objective"}, {"weight", 1.0}, {"scale", 0.5}}});
  nlohmann::json both = nlohmann::json::array({{{"id", "test-objective"}, {"weight", 0.3}, {"scale", 0.5}},
                                               {{"id", "test-objective"}, {"weight", 2.0}, {"scale", 0.25}}});
  ObjectiveInputs in;
  in.model_w = {0.10, 0.20};
  in.model_l = {0.12, 0.18};
  in.ref_w = {0.11, 0.19};
  in.ref_l = {0.11, 0.19};
  ObjectiveOutputs a, b;
  ObjectiveSet(single, registry).evaluate(in, a);
  ObjectiveSet(both, registry).evaluate(in, b);
  // 0.3 * (0.5 l) + 2 * (0.25 l) = 0.65 l = 1.3 * (0.5 l).
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(b.loss[i], 1.3 * a.loss[i], 1e-12 * a.loss[i]);
    EXPECT_NEAR(b.dloss_dmodel_w[i], 1.3 * a.dloss_dmodel_w[i], 1e-9);
    EXPECT_EQ(b.margin[i], a.margin[i]);
  }
  EXPECT_EQ(a.diagnostics.at("scale"), 0.5);
  EXPECT_EQ(b.diagnostics.count("scale"), 0u);  // several objectives: only prefixed names
  EXPECT_EQ(b.diagnostics.at("test-objective/scale"), 0.25);
}
