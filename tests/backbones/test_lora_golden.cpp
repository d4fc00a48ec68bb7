// LoRA on the UNet vs peft/diffusers (golden lora_sd15_tiny/, tests/golden/refgen/cases/lora.py): the
// diffusers-format and kohya-style files load to peft's outputs with the adapters on, scaled and off, and to
// its adapter gradients; fresh adapters land on exactly the layers peft adapted; merged weights, gradient
// checkpointing and our own file writer give the same outputs. Ranks, alphas, shapes and the compared tensors
// come from the files, so the second reference set (rank 8, alpha 16, metadata) runs unchanged.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <set>

#include "common/golden.hpp"
#include "prefdiff/model_io/lora_file.hpp"
#include "prefdiff/model_io/safetensors.hpp"
#include "prefdiff/unet2d/unet2d_backbone.hpp"

using prefdiff::model_io::LoraFile;
using prefdiff::model_io::SafetensorsFile;
using prefdiff::unet2d::Unet2dBackbone;
using namespace prefdiff::testing;
namespace fs = std::filesystem;

namespace {

// README tolerances (lora_sd15_tiny, "Recommended tolerances"): outputs |a-b| <= 1e-4 + 1e-4|b|; adapter
// gradients max|a-b| <= 1e-4 max|b| + 1e-6 (observed float32 vs float64 error: 7.5e-7 and 2.5e-6 relative).
constexpr double kOutAtol = 1e-4, kOutRtol = 1e-4, kGradRel = 1e-4, kGradAbs = 1e-6;

struct Case {
  fs::path dir;
  nlohmann::json keys;
  std::map<std::string, at::Tensor> in;
  SafetensorsFile ref = SafetensorsFile::open(dir / "outputs.safetensors");

  explicit Case(fs::path d) : dir(std::move(d)) {
    std::ifstream f(dir / "lora_keys.json");
    keys = nlohmann::json::parse(f);
    const auto inputs = SafetensorsFile::open(dir / "inputs.safetensors");
    for (const auto& n : inputs.names()) in[n] = inputs.load(n);
  }
  std::unique_ptr<Unet2dBackbone> base() const { return Unet2dBackbone::from_pretrained(dir / ".." / "unet_sd15_tiny"); }
  at::Tensor forward(Unet2dBackbone& unet) const {
    return unet.forward(in.at("sample"), in.at("timestep"), in.at("encoder_hidden_states"));
  }
  // The modules of the file's adapters, from its key list.
  std::set<std::string> file_modules() const {
    std::set<std::string> out;
    for (const auto& k : keys["file_keys"]) {
      std::string key = k.get<std::string>();
      out.insert(key.substr(5, key.rfind(".lora.") - 5));  // "unet." ... ".lora.down.weight"
    }
    return out;
  }
  int64_t rank() const { return keys.value("rank", ref.load(grad_names().front()).size(0)); }
  double alpha() const { return keys.value("lora_alpha", static_cast<double>(rank())); }
  std::vector<std::string> grad_names() const {
    std::vector<std::string> out;
    for (const auto& n : ref.names())
      if (n.rfind("param_grad.", 0) == 0 && n.find(".lora.down.") != std::string::npos) out.push_back(n);
    return out;
  }
};

Case open_case() {
  const fs::path dir = golden_dir() / "lora_sd15_tiny";
  if (!fs::exists(dir / "lora_keys.json")) throw std::runtime_error(dir.string() + " is missing. " + golden_hint());
  return Case(dir);
}

// out_lora, out_lora_scale_<s>, out_base and the adapter gradients of a UNet carrying the reference's LoRA.
void check_against_peft(Unet2dBackbone& unet, const Case& c) {
  auto named = unet.lora_parameters();
  std::map<std::string, at::Tensor> params(named.begin(), named.end());
  int checked = 0;
  for (const auto& n : c.ref.names()) {
    const at::Tensor b = c.ref.load(n);
    if (n == "out_lora") {
      for (auto& [k, p] : params) p.mutable_grad() = at::Tensor();
      at::Tensor out = c.forward(unet);
      (out * c.in.at("grad_output")).sum().backward();
      EXPECT_TRUE(close_elementwise(n, out, b, kOutAtol, kOutRtol));
    } else if (n.rfind("out_lora_scale_", 0) == 0) {
      unet.set_lora_scale(std::stod(n.substr(15)));
      at::NoGradGuard no_grad;
      EXPECT_TRUE(close_elementwise(n, c.forward(unet), b, kOutAtol, kOutRtol));
      unet.set_lora_scale(1.0);
    } else if (n == "out_base") {
      unet.set_lora_enabled(false);
      at::NoGradGuard no_grad;
      EXPECT_TRUE(close_elementwise(n, c.forward(unet), b, kOutAtol, kOutRtol));
      unet.set_lora_enabled(true);
    } else {
      continue;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 3) << "outputs.safetensors should hold out_lora, out_lora_scale_* and out_base";
  for (const auto& n : c.ref.names()) {
    if (n.rfind("param_grad.unet.", 0) != 0) continue;
    auto it = params.find(n.substr(16));
    ASSERT_NE(it, params.end()) << "no adapter parameter for " << n;
    EXPECT_TRUE(close_maxnorm(n, it->second.grad(), c.ref.load(n), kGradRel, kGradAbs));
    ++checked;
  }
  EXPECT_GT(checked, 3) << "no adapter gradients compared";
}

TEST(LoraGolden, DiffusersFileMatchesPeftOnScaledAndOff) {
  const Case c = open_case();
  auto unet = c.base();
  unet->set_requires_grad(false);
  const LoraFile file = prefdiff::model_io::read_lora_file(c.dir / "pytorch_lora_weights.safetensors", unet->lora_layers());
  EXPECT_EQ(file.format, "diffusers");
  EXPECT_EQ(file.adapters.size() * 2, c.keys["file_keys"].size());
  for (const auto& a : file.adapters) {
    EXPECT_EQ(a.down.size(0), c.rank()) << a.module;
    EXPECT_DOUBLE_EQ(a.alpha, c.alpha()) << a.module << ": alpha not read from the file's lora_adapter_metadata";
  }
  unet->set_lora(file.adapters);
  check_against_peft(*unet, c);
}

TEST(LoraGolden, KohyaStyleFileMatchesPeft) {
  const Case c = open_case();
  auto unet = c.base();
  unet->set_requires_grad(false);
  const LoraFile file = prefdiff::model_io::read_lora_file(c.dir / "kohya_style_lora.safetensors", unet->lora_layers());
  EXPECT_EQ(file.format, "kohya");
  unet->set_lora(file.adapters);
  check_against_peft(*unet, c);
}

TEST(LoraGolden, CheckpointedForwardGivesTheSameGradients) {
  const Case c = open_case();
  auto unet = c.base();
  unet->set_requires_grad(false);
  unet->set_lora(prefdiff::model_io::read_lora_file(c.dir / "pytorch_lora_weights.safetensors", unet->lora_layers()).adapters);
  unet->train(true);  // checkpointing is a training-mode feature; dropout 0 keeps outputs the same
  unet->set_gradient_checkpointing(true);
  check_against_peft(*unet, c);
}

TEST(LoraGolden, FreshAdaptersSitOnPeftsLayersAndStartAtTheBase) {
  const Case c = open_case();
  auto unet = c.base();
  prefdiff::LoraOptions o;  // the defaults: the Diffusion-DPO example's to_q/to_k/to_v/to_out.0
  o.rank = c.rank();
  o.alpha = c.alpha();
  at::manual_seed(0);
  const auto names = unet->add_lora(o);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), c.file_modules());
  const auto file = prefdiff::model_io::read_lora_file(c.dir / "pytorch_lora_weights.safetensors", unet->lora_layers());
  std::map<std::string, const prefdiff::model_io::LoraTensors*> by_module;
  for (const auto& a : file.adapters) by_module[a.module] = &a;
  std::vector<at::Tensor> downs;
  for (const auto& a : unet->lora()) {
    ASSERT_TRUE(by_module.count(a.module)) << a.module;
    EXPECT_EQ(a.down.sizes(), by_module[a.module]->down.sizes()) << a.module;
    EXPECT_EQ(a.up.sizes(), by_module[a.module]->up.sizes()) << a.module;
    EXPECT_EQ(a.up.abs().max().item<double>(), 0.0) << a.module << ": up must start at zero";
    EXPECT_TRUE(a.down.requires_grad() && a.up.requires_grad());
    downs.push_back(a.down.detach().flatten());
  }
  // peft's "gaussian": down ~ N(0, 1/r). Over thousands of draws the sample std is within 5% of it.
  const double sample_std = at::cat(downs).std().item<double>();
  EXPECT_NEAR(sample_std, 1.0 / static_cast<double>(c.rank()), 0.05 / static_cast<double>(c.rank()));
  for (const auto& [name, p] : unet->named_parameters()) EXPECT_EQ(name.find(".lora."), std::string::npos) << name;
  at::NoGradGuard no_grad;
  EXPECT_TRUE(close_elementwise("out with fresh adapters vs out_base", c.forward(*unet), c.ref.load("out_base"), kOutAtol, kOutRtol));
}

TEST(LoraGolden, MergedWeightsAndOurFileGiveTheSameOutput) {
  const Case c = open_case();
  auto unet = c.base();
  unet->set_requires_grad(false);
  unet->set_lora(prefdiff::model_io::read_lora_file(c.dir / "pytorch_lora_weights.safetensors", unet->lora_layers()).adapters);
  // Our writer, read back: the same tensors bit for bit and the same alpha (alpha != rank in the second set).
  const fs::path tmp = fs::temp_directory_path() / ("prefdiff_lora_" + std::to_string(::getpid()) + ".safetensors");
  prefdiff::model_io::write_lora_file(tmp, unet->lora());
  const auto again = prefdiff::model_io::read_lora_file(tmp, unet->lora_layers());
  fs::remove(tmp);
  const auto held = unet->lora();
  ASSERT_EQ(again.adapters.size(), held.size());
  std::map<std::string, const prefdiff::model_io::LoraTensors*> read_back;  // the file is in name order
  for (const auto& a : again.adapters) read_back[a.module] = &a;
  for (const auto& h : held) {
    ASSERT_TRUE(read_back.count(h.module)) << h.module;
    const auto& a = *read_back[h.module];
    EXPECT_TRUE(at::equal(a.down, h.down.detach())) << h.module;
    EXPECT_TRUE(at::equal(a.up, h.up.detach())) << h.module;
    EXPECT_DOUBLE_EQ(a.alpha, h.alpha) << h.module;
  }
  unet->merge_lora();
  EXPECT_TRUE(unet->lora().empty());
  at::NoGradGuard no_grad;
  EXPECT_TRUE(close_elementwise("out with merged weights vs out_lora", c.forward(*unet), c.ref.load("out_lora"), kOutAtol, kOutRtol));
}

}  // namespace
