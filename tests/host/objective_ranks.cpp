// One data-parallel rank evaluating objectives on its share of a fixed global batch, with batch
// statistics all-reduced over a c10d Gloo group (launched by test_distributed with torchrun-style
// variables). Writes, per pair it owns, "index dloss_dmodel_w dloss_dmodel_l loss" and the diagnostics.
//   objective_ranks OUT_FILE OBJECTIVE_ID [--die]   (--die: rank 1 exits before the collective)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include "prefdiff/torch_host/distributed.hpp"
#include "prefdiff/host/objective_set.hpp"

using namespace prefdiff;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: objective_ranks OUT_FILE OBJECTIVE_ID [--die]\n");
    return 2;
  }
  const bool die = argc > 3 && std::strcmp(argv[3], "--die") == 0;
  try {
    const DistributedEnv env = DistributedEnv::from_environment();
    DataParallelGroup group(env, "gloo", /*timeout_s=*/5.0);
    group.install_as_host_group();
    if (die && env.rank == 1) _exit(0);  // a rank that vanishes mid-run

    PluginRegistry registry;
    registry.scan({PREFDIFF_PLUGIN_BUILD_DIR});
    ObjectiveSet objectives(nlohmann::json::array({{{"id", argv[2]}, {"weight", 1.0}}}), registry);

    // The global batch: 10 pairs with margins spread over [-6, 6] (beta = 5000 default).
    const size_t global = 10;
    ObjectiveInputs in;
    std::vector<size_t> mine;
    for (size_t i = 0; i < global; ++i) {
      if (i % static_cast<size_t>(env.world_size) != static_cast<size_t>(env.rank)) continue;
      mine.push_back(i);
      const double h = -6.0 + 12.0 * static_cast<double>(i) / (global - 1) + 0.1 * std::sin(static_cast<double>(i));
      in.model_w.push_back(0.1 - h / 5000.0);  // h = -0.5 * 5000 * ((mw - rw) - (ml - rl)) with rw = ml = rl = 0.1
      in.model_l.push_back(0.1);
      in.ref_w.push_back(0.1);
      in.ref_l.push_back(0.1);
    }
    in.global_count = global;
    ObjectiveOutputs out;
    objectives.evaluate(in, out);

    FILE* file = std::fopen(argv[1], "w");
    for (size_t k = 0; k < mine.size(); ++k)
      std::fprintf(file, "pair %zu %.17g %.17g %.17g\n", mine[k], out.dloss_dmodel_w[k], out.dloss_dmodel_l[k], out.loss[k]);
    for (const auto& [name, value] : out.diagnostics) std::fprintf(file, "diag %s %.17g\n", name.c_str(), value);
    std::fclose(file);
    group.barrier();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "objective_ranks: %s\n", e.what());
    return 1;
  }
  return 0;
}
