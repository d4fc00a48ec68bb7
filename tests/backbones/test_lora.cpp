// LoRA without reference files: target patterns, the errors a user meets (a pattern matching nothing, a
// file for another model), the adapters-off switch, conv adapters against their closed form, kohya/peft
// naming, and that only adapters receive gradients.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <functional>

#include "prefdiff/model_io/lora_file.hpp"
#include "prefdiff/model_io/safetensors.hpp"
#include "prefdiff/unet2d/lora.hpp"
#include "prefdiff/unet2d/unet2d_backbone.hpp"

using prefdiff::unet2d::Unet2dBackbone;
namespace fs = std::filesystem;

namespace {

// A small SD1.5-like UNet (the toy world's shape).
std::unique_ptr<Unet2dBackbone> tiny_unet() {
  nlohmann::json c = {{"sample_size", 8}, {"in_channels", 4}, {"out_channels", 4},
                      {"down_block_types", {"CrossAttnDownBlock2D", "DownBlock2D"}},
                      {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D"}},
                      {"block_out_channels", {32, 64}}, {"layers_per_block", 1}, {"cross_attention_dim", 32},
                      {"attention_head_dim", 8}, {"norm_num_groups", 32}};
  at::manual_seed(1);
  return std::make_unique<Unet2dBackbone>(c, prefdiff::BackboneOptions{});
}

struct Inputs {
  at::Tensor x = at::randn({2, 4, 8, 8}), t = at::tensor({10, 500}), ctx = at::randn({2, 5, 32});
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

fs::path temp_file(const std::string& name) {
  return fs::temp_directory_path() / ("prefdiff_test_lora_" + std::to_string(::getpid()) + "_" + name);
}

TEST(LoraTargets, PeftSuffixRuleAndGlobs) {
  using prefdiff::unet2d::lora_target_matches;
  EXPECT_TRUE(lora_target_matches("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "to_q"));
  EXPECT_TRUE(lora_target_matches("a.attn1.to_out.0", "to_out.0"));
  EXPECT_TRUE(lora_target_matches("a.attn1.to_out.0", "attn1.to_out.0"));
  EXPECT_FALSE(lora_target_matches("a.attn1.xto_q", "to_q"));      // a whole dotted tail, not a substring
  EXPECT_FALSE(lora_target_matches("a.to_q.b", "to_q"));
  EXPECT_TRUE(lora_target_matches("up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", "up_blocks.*.attn2.to_k"));
  EXPECT_FALSE(lora_target_matches("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", "up_blocks.*.attn2.to_k"));
}

TEST(LoraTargets, APatternMatchingNothingIsAnErrorWithADidYouMean) {
  auto unet = tiny_unet();
  prefdiff::LoraOptions o;
  o.target_modules = {"to_q", "to_kk"};
  const std::string e = error_of([&] { unet->add_lora(o); });
  EXPECT_NE(e.find("[lora] target_modules: 'to_kk' matches no Linear or Conv2d layer"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'to_k'"), std::string::npos) << e;
  EXPECT_TRUE(unet->lora().empty()) << "a refused recipe adds no adapter";
}

TEST(LoraTargets, OtherLayersAndConvolutionsBySelection) {
  auto unet = tiny_unet();
  prefdiff::LoraOptions o;
  o.target_modules = {"ff.net.2", "proj_in", "conv1"};
  const auto names = unet->add_lora(o);
  ASSERT_FALSE(names.empty());
  bool conv = false, ff = false;
  for (const auto& a : unet->lora()) {
    conv |= a.down.dim() == 4;
    ff |= a.module.size() > 8 && a.module.compare(a.module.size() - 8, 8, "ff.net.2") == 0;
  }
  EXPECT_TRUE(conv && ff);
}

// Only the adapters get gradients; off, the model is exactly the base; on, a conv adapter adds
// scale * conv(conv(x, down), up), checked against merging it into the weights.
TEST(LoraModel, AdaptersOffIsTheBaseAndOnlyAdaptersLearn) {
  auto unet = tiny_unet();
  Inputs in;
  at::Tensor base;
  {
    at::NoGradGuard g;
    base = unet->forward(in.x, in.t, in.ctx);
  }
  unet->set_requires_grad(false);
  prefdiff::LoraOptions o;
  o.rank = 2;
  o.alpha = 6;  // scale 3
  o.target_modules = {"to_q", "to_v", "conv1", "conv_in"};
  unet->add_lora(o);
  {
    at::NoGradGuard g;
    for (auto& a : unet->lora()) a.up.normal_(0, 0.1);
  }
  at::Tensor on = unet->forward(in.x, in.t, in.ctx);
  on.pow(2).sum().backward();
  for (const auto& [name, p] : unet->named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
  for (const auto& [name, p] : unet->lora_parameters()) EXPECT_TRUE(p.grad().defined() && p.grad().abs().sum().item<double>() > 0) << name;
  at::NoGradGuard g;
  EXPECT_GT((on - base).abs().max().item<double>(), 1e-3) << "the adapters change the output";
  unet->set_lora_enabled(false);
  EXPECT_TRUE(at::equal(unet->forward(in.x, in.t, in.ctx), base)) << "adapters off must be the base model exactly";
  unet->set_lora_enabled(true);
  unet->merge_lora();
  EXPECT_TRUE(at::allclose(unet->forward(in.x, in.t, in.ctx), on, 1e-4, 1e-5)) << "merged weights (Linear and Conv2d)";
}

TEST(LoraFiles, AFileForAnotherModelNamesItsFirstKeys) {
  auto unet = tiny_unet();
  prefdiff::LoraOptions o;
  unet->add_lora(o);
  auto adapters = unet->lora();
  // A layer this UNet does not have.
  auto wrong = adapters;
  wrong[0].module = "down_blocks.7.attentions.0.transformer_blocks.0.attn1.to_q";
  std::string e = error_of([&] { unet->set_lora(wrong); });
  EXPECT_NE(e.find("name no Linear or Conv2d layer of this UNet: 'down_blocks.7.attentions.0.transformer_blocks.0.attn1.to_q'"),
            std::string::npos) << e;
  // A shape that does not fit.
  auto misfit = adapters;
  misfit[1].down = at::zeros({4, 48});
  e = error_of([&] { unet->set_lora(misfit); });
  EXPECT_NE(e.find("do not fit their layer's shape: '" + adapters[1].module + " (down [4, 48]"), std::string::npos) << e;
  // Keys in no known naming, and a kohya name for no layer, name the keys.
  const fs::path file = temp_file("bad.safetensors");
  prefdiff::model_io::write_safetensors(file, {{"unet.x.weird.weight", at::zeros({2})}});
  e = error_of([&] { prefdiff::model_io::read_lora_file(file, unet->lora_layers()); });
  EXPECT_NE(e.find("'unet.x.weird.weight'"), std::string::npos) << e;
  prefdiff::model_io::write_safetensors(file, {{"lora_unet_input_blocks_4_1_proj_in.lora_down.weight", at::zeros({2, 2})},
                                               {"lora_unet_input_blocks_4_1_proj_in.lora_up.weight", at::zeros({2, 2})}});
  e = error_of([&] { prefdiff::model_io::read_lora_file(file, unet->lora_layers()); });
  EXPECT_NE(e.find("kohya-style key(s) name no layer of this UNet: 'lora_unet_input_blocks_4_1_proj_in.lora_down.weight'"),
            std::string::npos) << e;
  fs::remove(file);
}

TEST(LoraFiles, PeftNamesAndKohyaAlphasAreRead) {
  auto unet = tiny_unet();
  const std::string layer = "conv_in";
  const auto layers = unet->lora_layers();
  ASSERT_NE(std::find(layers.begin(), layers.end(), layer), layers.end());
  std::string kohya = "lora_unet_" + layer;
  for (char& c : kohya)
    if (c == '.') c = '_';
  const at::Tensor down = at::randn({3, 4, 3, 3}), up = at::randn({32, 3, 1, 1});  // conv_in: 4 -> 32, 3x3
  const fs::path file = temp_file("named.safetensors");
  prefdiff::model_io::write_safetensors(file, {{kohya + ".lora_down.weight", down}, {kohya + ".lora_up.weight", up},
                                               {kohya + ".alpha", at::tensor(1.5)}, {"lora_te_text_model_x.alpha", at::tensor(1.0)}});
  auto f = prefdiff::model_io::read_lora_file(file, unet->lora_layers());
  ASSERT_EQ(f.adapters.size(), 1u);
  EXPECT_EQ(f.adapters[0].module, layer);
  EXPECT_DOUBLE_EQ(f.adapters[0].alpha, 1.5);
  EXPECT_EQ(f.ignored.size(), 1u);
  unet->set_lora(f.adapters);
  prefdiff::model_io::write_safetensors(file, {{"base_model.model." + layer + ".lora_A.weight", down},
                                               {"base_model.model." + layer + ".lora_B.weight", up}});
  f = prefdiff::model_io::read_lora_file(file, unet->lora_layers());
  EXPECT_EQ(f.format, "peft");
  EXPECT_DOUBLE_EQ(f.adapters.at(0).alpha, 3.0) << "no alpha anywhere: alpha = rank";
  fs::remove(file);
}

}  // namespace
