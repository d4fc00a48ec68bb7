// Timing half of bench/unet_vs_diffusers.py: prefdiff's UNet, same config, shapes, threads and dtype as the
// Python side. Prints one JSON line with per-iteration seconds; the script takes medians and ratios.
//   bench_unet_vs_diffusers <config.json> <mode fwd|fwdbwd> <batch> <res> <ctx_len> <threads> <warmup> <reps>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/unet2d/unet2d_backbone.hpp"

int main(int argc, char** argv) {
  if (argc != 9) {
    std::cerr << "usage: bench_unet_vs_diffusers <config.json> <fwd|fwdbwd> <batch> <res> <ctx_len> <threads> <warmup> <reps>\n";
    return 2;
  }
  std::string mode = argv[2];
  int64_t b = std::stoll(argv[3]), res = std::stoll(argv[4]), ctx_len = std::stoll(argv[5]);
  int threads = std::stoi(argv[6]), warmup = std::stoi(argv[7]), reps = std::stoi(argv[8]);
  at::set_num_threads(threads);
  at::set_num_interop_threads(1);
  at::manual_seed(0);
  auto config = prefdiff::model_io::read_json_file(argv[1]);
  auto unet = prefdiff::BackboneRegistry::instance().create("unet2d", config);
  const auto& c = unet->config();
  int64_t x_dim = c["cross_attention_dim"].is_array() ? c["cross_attention_dim"].back().get<int64_t>()
                                                      : c["cross_attention_dim"].get<int64_t>();
  at::Tensor x = at::randn({b, c["in_channels"].get<int64_t>(), res, res});
  at::Tensor ctx = at::randn({b, ctx_len, x_dim});
  at::Tensor t = at::randint(0, 1000, {b}, at::kLong);
  std::optional<prefdiff::AddedConditions> add;
  if (unet->requires_added_conditions()) {
    int64_t p = c["projection_class_embeddings_input_dim"].get<int64_t>() - 6 * c["addition_time_embed_dim"].get<int64_t>();
    add = prefdiff::AddedConditions{at::randn({b, p}), at::full({b, 6}, static_cast<float>(res * 8))};
  }
  bool train = mode == "fwdbwd";
  unet->train(train);
  unet->set_requires_grad(train);
  std::vector<double> times;
  for (int i = 0; i < warmup + reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    if (train) {
      unet->forward(x, t, ctx, add).square().mean().backward();
      for (auto& [n, p] : unet->named_parameters()) p.mutable_grad().reset();  // like zero_grad(set_to_none=True)
    } else {
      at::NoGradGuard ng;
      unet->forward(x, t, ctx, add);
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i >= warmup) times.push_back(s);
  }
  std::printf("{\"times\": [");
  for (size_t i = 0; i < times.size(); ++i) std::printf("%s%.6f", i ? ", " : "", times[i]);
  std::printf("]}\n");
  return 0;
}
