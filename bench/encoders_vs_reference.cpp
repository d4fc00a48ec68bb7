// The C++ side of bench/encoders_vs_reference.py: loads a VAE or CLIP text encoder folder written by the
// driver, runs warmup + timed no-grad passes on the driver's inputs and prints one JSON line: per-pass
// times and a checksum of the output (so the driver can check both sides computed the same thing).
//
//   encoders_vs_reference vae <folder> <inputs.safetensors> <threads> <warmup> <reps>
//   encoders_vs_reference text <folder> <inputs.safetensors> <threads> <warmup> <reps>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "clip/clip_loading.hpp"
#include "prefdiff/model_io/safetensors.hpp"
#include "vae/autoencoder_kl.hpp"

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: %s vae|text <folder> <inputs.safetensors> <threads> <warmup> <reps>\n", argv[0]);
    return 2;
  }
  const std::string kind = argv[1], folder = argv[2];
  const int threads = std::stoi(argv[4]), warmup = std::stoi(argv[5]), reps = std::stoi(argv[6]);
  at::set_num_threads(threads);
  at::set_num_interop_threads(1);
  auto inputs = prefdiff::model_io::SafetensorsFile::open(argv[3]);
  at::NoGradGuard no_grad;
  std::function<at::Tensor()> pass;
  prefdiff::vae::AutoencoderKL vae{nullptr};
  prefdiff::clip::ClipTextModel text{nullptr};
  at::Tensor x;
  if (kind == "vae") {
    vae = prefdiff::vae::load_autoencoder_kl(folder);
    x = inputs.load("images");
    pass = [&] { return vae->encode(x).mean; };
  } else {
    text = prefdiff::clip::load_clip_text_model(folder);
    x = inputs.load("input_ids");
    pass = [&] { return text->forward(x).last_hidden_state; };
  }
  std::vector<double> times;
  double checksum = 0;
  for (int i = 0; i < warmup + reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor out = pass();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i >= warmup) times.push_back(s);
    checksum = out.to(at::kDouble).abs().sum().item<double>();
  }
  std::printf("{\"times\": [");
  for (size_t i = 0; i < times.size(); ++i) std::printf("%s%.6f", i ? ", " : "", times[i]);
  std::printf("], \"checksum\": %.10g}\n", checksum);
  return 0;
}
