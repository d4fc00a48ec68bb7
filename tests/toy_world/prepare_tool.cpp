// Test helper: runs prepare_world in its own process and prints what it returned as JSON.
// Usage: toy_world_prepare_tool '<[data] section as JSON>' CACHE_ROOT
#include <cstdio>
#include <exception>
#include <iostream>

#include "prefdiff/toy_world/prepare.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " '<toy-world [data] JSON>' CACHE_ROOT\n";
    return 2;
  }
  try {
    const auto config = prefdiff::toy::WorldConfig::from_json(nlohmann::json::parse(argv[1]));
    prefdiff::toy::PrepareOptions options;
    options.cache_root = argv[2];
    const prefdiff::toy::PreparedWorld p = prefdiff::toy::prepare_world(config, options);
    std::cout << nlohmann::json{{"reference_key", p.reference_key},
                                {"data_key", p.data_key},
                                {"reference_built", p.reference_built},
                                {"data_built", p.data_built},
                                {"train_shard", p.train_shard.string()},
                                {"heldout_shard", p.heldout_shard.string()},
                                {"reference_model", p.reference_model.string()}}
                     .dump()
              << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
