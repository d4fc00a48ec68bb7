// Helper for diffusers_interop.py: the C++ side of "diffusers loads what prefdiff writes, and prefdiff
// loads what diffusers writes".
//   unet_interop_tool write <dir>   tiny SD1.5- and SDXL-structured UNets saved by prefdiff under
//                                   <dir>/prefdiff_{sd15,sdxl}/unet, with inputs.safetensors and prefdiff's
//                                   output in outputs.safetensors next to unet/
//   unet_interop_tool check <dir> <variant>   loads <dir>/unet (written by diffusers), runs inputs.safetensors,
//                                   writes prefdiff_out.safetensors
#include <ATen/ATen.h>

#include <cstdio>
#include <iostream>

#include "prefdiff/model_io/safetensors.hpp"
#include "prefdiff/unet2d/unet2d_backbone.hpp"

namespace fs = std::filesystem;
using namespace prefdiff;

namespace {

nlohmann::json sd15_config() {
  return {{"block_out_channels", {32, 32, 64, 64}}, {"layers_per_block", 2}, {"norm_num_groups", 8},
          {"attention_head_dim", 2}, {"cross_attention_dim", 32}, {"sample_size", 16}};
}

nlohmann::json sdxl_config() {
  return {{"block_out_channels", {32, 64, 64}}, {"layers_per_block", 2}, {"norm_num_groups", 8},
          {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}},
          {"up_block_types", {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}},
          {"transformer_layers_per_block", {1, 2, 2}}, {"attention_head_dim", {2, 4, 4}},
          {"cross_attention_dim", 64}, {"use_linear_projection", true}, {"addition_embed_type", "text_time"},
          {"addition_time_embed_dim", 8}, {"projection_class_embeddings_input_dim", 80}, {"sample_size", 16}};
}

at::Tensor run(Backbone& b, const model_io::NamedTensors& in) {
  std::map<std::string, at::Tensor> m(in.begin(), in.end());
  std::optional<AddedConditions> add;
  if (m.count("text_embeds")) add = AddedConditions{m["text_embeds"], m["time_ids"]};
  at::NoGradGuard ng;
  return b.forward(m["sample"], m["timestep"], m["encoder_hidden_states"], add);
}

void write_case(const fs::path& dir, const nlohmann::json& config, bool sdxl) {
  auto b = BackboneRegistry::instance().create("unet2d", config);
  // Non-trivial norms: PyTorch's init leaves them at 1/0, which would hide a swapped weight/bias.
  {
    at::NoGradGuard ng;
    for (auto& [n, p] : b->named_parameters())
      if (n.find("norm") != std::string::npos) p.add_(at::randn_like(p) * 0.1);
  }
  b->save(dir / "unet");
  model_io::NamedTensors in = {{"sample", at::randn({2, 4, 16, 16})},
                               {"timestep", at::tensor({10, 981}, at::kLong)},
                               {"encoder_hidden_states", at::randn({2, 7, sdxl ? 64 : 32})}};
  if (sdxl) {
    in.emplace_back("text_embeds", at::randn({2, 32}));
    in.emplace_back("time_ids", at::tensor({1024.f, 1024.f, 0.f, 0.f, 1024.f, 1024.f, 896.f, 1152.f, 64.f, 32.f, 1024.f, 1024.f}).reshape({2, 6}));
  }
  model_io::write_safetensors(dir / "inputs.safetensors", in);
  model_io::write_safetensors(dir / "outputs.safetensors", {{"out", run(*b, in)}});
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "write" && argc == 3) {
      at::manual_seed(2024);
      write_case(fs::path(argv[2]) / "prefdiff_sd15", sd15_config(), false);
      write_case(fs::path(argv[2]) / "prefdiff_sdxl", sdxl_config(), true);
      return 0;
    }
    if (cmd == "check" && (argc == 3 || argc == 4)) {
      fs::path dir = argv[2];
      BackboneOptions opts;
      opts.variant = argc == 4 ? argv[3] : "";
      auto b = BackboneRegistry::instance().load("unet2d", dir, opts);  // pipeline-root form: dir/unet
      auto in = model_io::SafetensorsFile::open(dir / "inputs.safetensors").load_all();
      model_io::write_safetensors(dir / "prefdiff_out.safetensors", {{"out", run(*b, in)}});
      return 0;
    }
    std::cerr << "usage: unet_interop_tool write <dir> | check <dir> [variant]\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "unet_interop_tool: " << e.what() << "\n";
    return 1;
  }
}
