// Helper for lora_interop.py: the C++ side of "diffusers loads prefdiff's LoRA file, and prefdiff loads a
// LoRA file diffusers/peft saved".
//   lora_interop_tool write <base unet folder> <dir>   adds adapters (rank 4, alpha 8, attention projections,
//                        the feed-forward output and the resnets' conv1) with random weights, writes
//                        <dir>/pytorch_lora_weights.safetensors, <dir>/inputs.safetensors and prefdiff's
//                        output <dir>/outputs.safetensors
//   lora_interop_tool check <base unet folder> <lora file> <inputs> <output file>   loads the base and the
//                        LoRA file, runs the inputs, writes {"out"}
#include <ATen/ATen.h>

#include <iostream>

#include "prefdiff/model_io/lora_file.hpp"
#include "prefdiff/model_io/safetensors.hpp"
#include "prefdiff/unet2d/unet2d_backbone.hpp"

namespace fs = std::filesystem;
using namespace prefdiff;

namespace {

at::Tensor run(Backbone& b, const model_io::NamedTensors& in) {
  std::map<std::string, at::Tensor> m(in.begin(), in.end());
  at::NoGradGuard ng;
  return b.forward(m["sample"], m["timestep"], m["encoder_hidden_states"]);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "write" && argc == 4) {
      at::manual_seed(2025);
      auto b = unet2d::Unet2dBackbone::from_pretrained(argv[2]);
      LoraOptions o;
      o.rank = 4;
      o.alpha = 8;  // alpha != rank: the file must carry it
      o.target_modules = {"to_q", "to_k", "to_v", "to_out.0", "ff.net.2", "conv1"};
      b->add_lora(o);
      {
        at::NoGradGuard ng;
        for (auto& a : b->lora()) a.up.normal_(0, 0.05);
      }
      const fs::path dir = argv[3];
      fs::create_directories(dir);
      const int64_t xdim = b->config().at("cross_attention_dim").get<int64_t>();
      model_io::NamedTensors in = {{"sample", at::randn({2, 4, 16, 16})},
                                   {"timestep", at::tensor({10, 981}, at::kLong)},
                                   {"encoder_hidden_states", at::randn({2, 7, xdim})}};
      model_io::write_lora_file(dir / "pytorch_lora_weights.safetensors", b->lora());
      model_io::write_safetensors(dir / "inputs.safetensors", in);
      model_io::write_safetensors(dir / "outputs.safetensors", {{"out", run(*b, in)}});
      return 0;
    }
    if (cmd == "check" && argc == 6) {
      auto b = unet2d::Unet2dBackbone::from_pretrained(argv[2]);
      b->set_lora(model_io::read_lora_file(argv[3], b->lora_layers()).adapters);
      auto in = model_io::SafetensorsFile::open(argv[4]).load_all();
      model_io::write_safetensors(argv[5], {{"out", run(*b, in)}});
      return 0;
    }
    std::cerr << "usage: lora_interop_tool write <base unet> <dir> | check <base unet> <lora file> <inputs> <out>\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "lora_interop_tool: " << e.what() << "\n";
    return 1;
  }
}
