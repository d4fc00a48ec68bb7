// UNet structure and behaviour without reference tensors: parameter counts and names of the real SD1.5/SDXL
// configs (built on the meta device, no memory), the diffusers tiny configs, config policy, registry,
// bit-exact save/load, checkpointing and input handling.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/module.h>

#include <unistd.h>

#include <fstream>
#include <map>

#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/unet2d/unet2d_backbone.hpp"

using namespace prefdiff;
using namespace prefdiff::unet2d;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

json fixture(const std::string& name) {
  return model_io::read_json_file(fs::path(PREFDIFF_SOURCE_DIR) / "tests" / "fixtures" / "configs" / name);
}

struct Count {
  int64_t params = 0;
  size_t tensors = 0;
  std::map<std::string, int64_t> per_top;  // by first name component (down_blocks.N kept whole)
  std::map<std::string, std::vector<int64_t>> shapes;
};

Count count_on_meta(const json& config) {
  Unet2dModel m(Unet2dConfig::from_json(config), at::TensorOptions().device(at::kMeta));
  Count c;
  for (const auto& p : m->named_parameters(true)) {
    EXPECT_TRUE(p.value().is_meta());
    c.params += p.value().numel();
    ++c.tensors;
    std::string k = p.key();
    auto dot = k.find('.');
    std::string top = k.substr(0, dot);
    if (top == "down_blocks" || top == "up_blocks") top = k.substr(0, k.find('.', dot + 1));
    if (top == "conv_norm_out") top = "conv_out";
    c.per_top[top] += p.value().numel();
    c.shapes[k] = p.value().sizes().vec();
  }
  return c;
}

json tiny_sd15() {
  return {{"block_out_channels", {32, 64}}, {"layers_per_block", 2}, {"sample_size", 32},
          {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D"}},
          {"up_block_types", {"CrossAttnUpBlock2D", "UpBlock2D"}}, {"cross_attention_dim", 32}};
}

json tiny_sdxl() {
  return {{"block_out_channels", {32, 64}}, {"layers_per_block", 2}, {"sample_size", 32},
          {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D"}},
          {"up_block_types", {"CrossAttnUpBlock2D", "UpBlock2D"}}, {"attention_head_dim", {2, 4}},
          {"use_linear_projection", true}, {"addition_embed_type", "text_time"}, {"addition_time_embed_dim", 8},
          {"transformer_layers_per_block", {1, 2}}, {"projection_class_embeddings_input_dim", 80},
          {"cross_attention_dim", 64}};
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("prefdiff_unet_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

}  // namespace

TEST(UnetStructure, Sd15MatchesTheSpecCountsNamesAndShapes) {
  Count c = count_on_meta(fixture("sd15_unet_config.json"));
  EXPECT_EQ(c.params, 859520964);
  EXPECT_EQ(c.tensors, 686u);
  std::map<std::string, int64_t> expect = {
      {"conv_in", 11840}, {"time_embedding", 2050560}, {"down_blocks.0", 10524480}, {"down_blocks.1", 36818560},
      {"down_blocks.2", 139992320}, {"down_blocks.3", 62277120}, {"mid_block", 97038080}, {"up_blocks.0", 162241280},
      {"up_blocks.1", 258330880}, {"up_blocks.2", 71413120}, {"up_blocks.3", 18810560}, {"conv_out", 12164}};
  EXPECT_EQ(c.per_top, expect);
  std::map<std::string, std::vector<int64_t>> keys = {
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight", {320, 320}},
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", {320, 768}},
      {"down_blocks.0.attentions.0.proj_in.weight", {320, 320, 1, 1}},
      {"down_blocks.1.resnets.0.conv_shortcut.weight", {640, 320, 1, 1}},
      {"down_blocks.2.downsamplers.0.conv.weight", {1280, 1280, 3, 3}},
      {"mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", {10240, 1280}},
      {"up_blocks.1.resnets.2.conv1.weight", {1280, 1920, 3, 3}},
      {"up_blocks.3.attentions.2.transformer_blocks.0.ff.net.2.weight", {320, 1280}},
      {"up_blocks.2.upsamplers.0.conv.weight", {640, 640, 3, 3}},
      {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.bias", {320}},
      {"time_embedding.linear_1.weight", {1280, 320}},
      {"conv_out.weight", {4, 320, 3, 3}}};
  for (const auto& [k, shape] : keys) {
    ASSERT_TRUE(c.shapes.count(k)) << k;
    EXPECT_EQ(c.shapes[k], shape) << k;
  }
  EXPECT_FALSE(c.shapes.count("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias"));
  EXPECT_FALSE(c.shapes.count("down_blocks.0.resnets.0.conv_shortcut.weight"));
}

TEST(UnetStructure, SdxlMatchesTheSpecCountsNamesAndShapes) {
  Count c = count_on_meta(fixture("sdxl_unet_config.json"));
  EXPECT_EQ(c.params, 2567463684);
  EXPECT_EQ(c.tensors, 1680u);
  std::map<std::string, int64_t> expect = {
      {"conv_in", 11840}, {"time_embedding", 2050560}, {"add_embedding", 5245440}, {"down_blocks.0", 5432000},
      {"down_blocks.1", 60105600}, {"down_blocks.2", 757404160}, {"mid_block", 413117440},
      {"up_blocks.0", 1206568960}, {"up_blocks.1", 106343680}, {"up_blocks.2", 11171840}, {"conv_out", 12164}};
  EXPECT_EQ(c.per_top, expect);
  EXPECT_EQ(c.shapes["add_embedding.linear_1.weight"], (std::vector<int64_t>{1280, 2816}));
  EXPECT_EQ(c.shapes["down_blocks.1.attentions.0.proj_in.weight"], (std::vector<int64_t>{640, 640}));
  EXPECT_EQ(c.shapes["down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.weight"],
            (std::vector<int64_t>{1280, 2048}));
  EXPECT_FALSE(c.shapes.count("down_blocks.0.attentions.0.proj_in.weight"));
  EXPECT_FALSE(c.shapes.count("down_blocks.2.downsamplers.0.conv.weight"));
  int blocks = 0;
  for (const auto& kv : c.shapes)
    if (kv.first.find("norm1.weight") != std::string::npos && kv.first.find("transformer_blocks") != std::string::npos) ++blocks;
  EXPECT_EQ(blocks, 70);
}

TEST(UnetStructure, DiffusersTinyTestConfigs) {
  // Spec section 3 (diffusers' own unit/pipeline test configs).
  EXPECT_EQ(count_on_meta(tiny_sd15()).params, 1427012);
  EXPECT_EQ(count_on_meta(tiny_sd15()).tensors, 304u);
  json b = {{"block_out_channels", {32, 64}}, {"down_block_types", {"CrossAttnDownBlock2D", "DownBlock2D"}},
            {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D"}}, {"cross_attention_dim", 32},
            {"attention_head_dim", 8}, {"layers_per_block", 2}, {"sample_size", 32}};
  EXPECT_EQ(count_on_meta(b).params, 1106212);
  json cfg_c = {{"block_out_channels", {4, 8}}, {"layers_per_block", 1}, {"sample_size", 32},
                {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D"}},
                {"up_block_types", {"CrossAttnUpBlock2D", "UpBlock2D"}}, {"cross_attention_dim", 8}, {"norm_num_groups", 2}};
  EXPECT_EQ(count_on_meta(cfg_c).params, 16928);
  json d = {{"block_out_channels", {4, 8}}, {"norm_num_groups", 4},
            {"down_block_types", {"CrossAttnDownBlock2D", "DownBlock2D"}},
            {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D"}}, {"cross_attention_dim", 8},
            {"attention_head_dim", 2}, {"layers_per_block", 1}, {"sample_size", 16}};
  EXPECT_EQ(count_on_meta(d).params, 13604);
  EXPECT_EQ(count_on_meta(d).tensors, 208u);
  EXPECT_EQ(count_on_meta(tiny_sdxl()).params, 1976516);
  EXPECT_EQ(count_on_meta(tiny_sdxl()).tensors, 428u);
  json f = tiny_sdxl();
  f["block_out_channels"] = {2, 4};
  f["norm_num_groups"] = 1;
  EXPECT_EQ(count_on_meta(f).params, 15416);
}

// The size check counts the model from its config alone; the reference is the model built on the meta
// device. Configs cover both block kinds, linear and conv projections, text_time, heads that do not divide
// the channels, odd kernels, per-block lists and no mid block.
TEST(UnetConfig, ParameterCountFromTheConfigMatchesTheBuiltModel) {
  std::vector<json> configs = {fixture("sd15_unet_config.json"), fixture("sdxl_unet_config.json"), tiny_sd15(),
                               tiny_sdxl()};
  json odd = tiny_sdxl();
  odd["attention_head_dim"] = {3, 5};  // 32 / 3 and 64 / 5: the inner width is rounded down
  odd["conv_in_kernel"] = 5;
  odd["conv_out_kernel"] = 1;
  odd["layers_per_block"] = {1, 3};
  odd["in_channels"] = 9;
  odd["out_channels"] = 3;
  odd["time_embedding_dim"] = 48;
  configs.push_back(odd);
  json no_mid = tiny_sd15();
  no_mid["mid_block_type"] = nullptr;
  no_mid["block_out_channels"] = {32, 64, 96};
  no_mid["down_block_types"] = {"CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"};
  no_mid["up_block_types"] = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
  configs.push_back(no_mid);
  for (const json& cfg : configs) {
    const double counted = Unet2dConfig::from_json(cfg).parameter_count();
    EXPECT_EQ(static_cast<int64_t>(counted), count_on_meta(cfg).params) << cfg.dump();
  }
}

// Issue 20: hostile config.json values gave follow-on errors, raw allocator errors after allocating
// gigabytes, or were accepted (norm_eps = -1); a JSON array gave "cannot use key() for non-object
// iterators" without the file. Each is now one problem naming the key, found before any allocation.
TEST(UnetConfig, HostileValuesAreRefusedByKeyBeforeAnyAllocation) {
  auto problems_of = [](const json& cfg) {
    try {
      Unet2dConfig::from_json(cfg, "hostile/config.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const json base = fixture("sd15_unet_config.json");
  struct Case {
    const char* key;
    json value;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"block_out_channels", {320, -640, 1280, 1280}, "'block_out_channels' entry 1 is -640; each must be an integer from 1 to 16384"},
      {"block_out_channels", {320, 640.5, 1280, 1280}, "'block_out_channels' entry 1 is 640.5"},
      {"block_out_channels", json::parse("[320, 640, 1180591620717411303424, 1280]"), "'block_out_channels' entry 2 is 1.1805916207174113e+21"},
      {"block_out_channels", {320, 640, 1280, 1000000000}, "'block_out_channels' entry 3 is 1000000000"},
      {"block_out_channels", json::parse("[18446744073709551615, 640, 1280, 1280]"), "entry 0 is 18446744073709551615"},
      {"layers_per_block", 1000000000, "'layers_per_block' must be an integer from 1 to 100"},
      {"transformer_layers_per_block", 1000000, "'transformer_layers_per_block' must be an integer from 1 to 100"},
      {"norm_eps", -1, "'norm_eps' must be a positive finite number, got -1"},
      {"norm_eps", 0, "'norm_eps' must be a positive finite number, got 0"},
      {"cross_attention_dim", 1 << 30, "'cross_attention_dim' must be an integer from 1 to 65536"},
      {"conv_in_kernel", 999, "'conv_in_kernel' must be an integer from 1 to 15"},
      {"in_channels", -4, "'in_channels' must be an integer from 1 to 16384"},
      {"mid_block_scale_factor", 0, "'mid_block_scale_factor' must be a positive finite number"},
  };
  for (const Case& c : cases) {
    json cfg = base;
    cfg[c.key] = c.value;
    const std::string m = problems_of(cfg);
    SCOPED_TRACE(std::string(c.key) + " = " + c.value.dump());
    EXPECT_NE(m.find("hostile/config.json: 1 problem(s) in the UNet config"), std::string::npos)
        << "one problem, no follow-on errors: " << m;
    EXPECT_NE(m.find(c.expected), std::string::npos) << m;
  }
  // Every value in range, the whole model too large: refused with its size, before allocating.
  json big = base;
  big["block_out_channels"] = {16384, 16384, 16384, 16384};
  big["layers_per_block"] = 100;
  const std::string m = problems_of(big);
  EXPECT_NE(m.find("describes a UNet of "), std::string::npos) << m;
  EXPECT_NE(m.find("prefdiff builds at most 2e+10"), std::string::npos) << m;
  // An array instead of an object: the file is named, and the backbone says so before anything else.
  EXPECT_NE(problems_of(json::array({1, 2})).find("hostile/config.json: the UNet config must be a JSON object"),
            std::string::npos);
  const fs::path dir = temp_dir("arrayconfig");
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << "[320, 640]";
  try {
    BackboneRegistry::instance().load("unet2d", dir);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind((dir / "config.json").string() + ": the UNet config must be a JSON object", 0), 0u)
        << e.what();
  }
  fs::remove_all(dir);
}

// A config within every limit but larger than this machine's memory: refused with its size by the backbone
// before it allocates (skipped where the machine could hold it: the test must never allocate it).
TEST(UnetBackbone, AModelLargerThanMemoryIsRefusedBeforeAllocation) {
  json cfg = fixture("sd15_unet_config.json");
  cfg["block_out_channels"] = {1088, 2176, 4352, 4352};  // about 1e10 parameters: 40 GB in float32
  cfg["attention_head_dim"] = 32;
  const double bytes = Unet2dConfig::from_json(cfg).parameter_count() * 4;
  const double memory = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  if (!(bytes > memory)) GTEST_SKIP() << "this machine has " << memory / 1e9 << " GB, enough for " << bytes / 1e9 << " GB";
  try {
    BackboneRegistry::instance().create("unet2d", cfg);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("GB of weights in Float; this machine has"), std::string::npos) << m;
  }
}

TEST(UnetConfig, ReportsEveryProblemAtOnceWithSuggestions) {
  json cfg = fixture("sd15_unet_config.json");
  cfg["cross_atention_dim"] = 768;         // typo
  cfg["resnet_time_scale_shift"] = "scale_shift";  // refused
  cfg["class_embed_type"] = "timestep";    // refused
  cfg["layers_per_block"] = {2, 2};        // wrong length
  try {
    Unet2dConfig::from_json(cfg, "my/config.json");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("my/config.json: 4 problem(s)"), std::string::npos) << m;
    EXPECT_NE(m.find("did you mean 'cross_attention_dim'"), std::string::npos) << m;
    EXPECT_NE(m.find("'resnet_time_scale_shift' is \"scale_shift\""), std::string::npos) << m;
    EXPECT_NE(m.find("'class_embed_type'"), std::string::npos) << m;
    EXPECT_NE(m.find("'layers_per_block'"), std::string::npos) << m;
  }
}

// A folder's bad config.json is named once, by its path; fp32 attention upcasting is refused, not ignored.
TEST(UnetConfig, FolderConfigProblemsNameTheFileAndUpcastingIsRefused) {
  const fs::path dir = temp_dir("badconfig");
  fs::create_directories(dir);
  json cfg = tiny_sd15();
  cfg["upcast_attention"] = true;
  std::ofstream(dir / "config.json") << cfg.dump();
  try {
    BackboneRegistry::instance().load("unet2d", dir);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    const std::string file = (dir / "config.json").string();
    EXPECT_EQ(m.rfind(file + ": 1 problem(s) in the UNet config:", 0), 0u) << m;
    EXPECT_EQ(m.find("config.json", file.size()), std::string::npos) << "the file is named once: " << m;
    EXPECT_NE(m.find("'upcast_attention' is true but prefdiff supports only false"), std::string::npos) << m;
  }
  fs::remove_all(dir);
}

TEST(UnetConfig, DefaultsNullsAndIgnoredKeys) {
  json cfg = fixture("sd15_unet_config.json");
  Unet2dConfig a = Unet2dConfig::from_json(cfg);
  EXPECT_EQ(a.num_heads, (std::vector<int64_t>{8, 8, 8, 8}));  // attention_head_dim is the head count
  EXPECT_TRUE(a.has_mid_block);
  EXPECT_FALSE(a.use_linear_projection);
  EXPECT_EQ(a.time_embedding_dim, 1280);
  cfg["num_attention_heads"] = 4;  // wins over attention_head_dim
  cfg["resnet_skip_time_act"] = true;  // ignored: not used by these block types
  cfg["upcast_attention"] = nullptr;
  cfg["mid_block_type"] = nullptr;     // null: no mid block
  Unet2dConfig b = Unet2dConfig::from_json(cfg);
  EXPECT_EQ(b.num_heads, (std::vector<int64_t>{4, 4, 4, 4}));
  EXPECT_FALSE(b.has_mid_block);
  json full = Unet2dConfig::to_diffusers_json(fixture("sd15_unet_config.json"));
  EXPECT_EQ(full["_class_name"], "UNet2DConditionModel");
  EXPECT_EQ(full["transformer_layers_per_block"], 1);
  EXPECT_EQ(full["mid_block_type"], "UNetMidBlock2DCrossAttn");
}

TEST(UnetBackbone, RegistryCreatesAndNamesUnknownIds) {
  auto& reg = BackboneRegistry::instance();
  auto ids = reg.ids();
  EXPECT_NE(std::find(ids.begin(), ids.end(), "unet2d"), ids.end());
  auto b = reg.create("unet2d", tiny_sd15());
  EXPECT_EQ(b->id(), "unet2d");
  EXPECT_FALSE(b->requires_added_conditions());
  try {
    reg.create("unet3d", tiny_sd15());
    FAIL();
  } catch (const BackboneError& e) {
    EXPECT_NE(std::string(e.what()).find("registered: unet2d"), std::string::npos) << e.what();
  }
}

TEST(UnetBackbone, SaveLoadRoundTripIsBitExact) {
  at::manual_seed(7);
  auto a = BackboneRegistry::instance().create("unet2d", tiny_sdxl());
  fs::path root = temp_dir("roundtrip");
  a->save(root / "unet");
  EXPECT_TRUE(fs::exists(root / "unet" / "config.json"));
  EXPECT_TRUE(fs::exists(root / "unet" / "diffusion_pytorch_model.safetensors"));
  auto b = BackboneRegistry::instance().load("unet2d", root);  // pipeline root -> unet/
  EXPECT_EQ(a->config(), b->config());
  auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    ASSERT_EQ(pa[i].first, pb[i].first);
    ASSERT_TRUE(at::equal(pa[i].second, pb[i].second)) << pa[i].first;
  }
  at::Tensor x = at::randn({2, 4, 8, 8}), ctx = at::randn({2, 5, 64});
  AddedConditions add{at::randn({2, 32}), at::tensor({64.f, 64.f, 0.f, 0.f, 64.f, 64.f}).repeat({2, 1})};
  at::NoGradGuard ng;
  EXPECT_TRUE(at::equal(a->forward(x, at::tensor({10, 500}), ctx, add), b->forward(x, at::tensor({10, 500}), ctx, add)));

  // An fp16 variant written from the same model loads into a float32 model as the rounded weights.
  BackboneSaveOptions half;
  half.variant = "fp16";
  half.dtype = at::kHalf;
  a->save(root / "unet", half);
  EXPECT_TRUE(fs::exists(root / "unet" / "diffusion_pytorch_model.fp16.safetensors"));
  b->load_weights(root, "fp16");
  auto pc = b->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    ASSERT_TRUE(at::equal(pa[i].second.to(at::kHalf).to(at::kFloat), pc[i].second)) << pa[i].first;
}

TEST(UnetBackbone, LoadingWeightsOfAnotherConfigNamesTheTensors) {
  auto a = BackboneRegistry::instance().create("unet2d", tiny_sd15());
  fs::path dir = temp_dir("mismatch");
  a->save(dir);
  json other = tiny_sd15();
  other["cross_attention_dim"] = 48;
  auto b = BackboneRegistry::instance().create("unet2d", other);
  try {
    b->load_weights(dir);
    FAIL();
  } catch (const model_io::ModelIoError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("attn2.to_k.weight' has shape [64,32]"), std::string::npos) << m;
    EXPECT_NE(m.find("expects [64,48]"), std::string::npos) << m;
  }
}

TEST(UnetBackbone, CheckpointingGivesTheSameGradientsThroughGradAndBackward) {
  at::manual_seed(3);
  auto net = BackboneRegistry::instance().create("unet2d", tiny_sd15());
  net->train(true);
  at::Tensor x = at::randn({2, 4, 8, 8}), ctx = at::randn({2, 3, 32}).requires_grad_(), t = at::tensor({3, 900});
  auto grads = [&](bool ckpt) {
    net->set_gradient_checkpointing(ckpt);
    std::vector<at::Tensor> wrt{ctx};
    for (auto& [n, p] : net->named_parameters()) wrt.push_back(p);
    at::Tensor loss = net->forward(x, t, ctx).square().mean();
    return torch::autograd::grad({loss}, wrt);
  };
  auto plain = grads(false), ckpt = grads(true);
  ASSERT_EQ(plain.size(), ckpt.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(at::allclose(plain[i], ckpt[i], 1e-5, 1e-7)) << i;
  // backward() accumulates into .grad through the checkpoint nodes as well.
  net->set_gradient_checkpointing(true);
  net->forward(x, t, ctx).square().mean().backward();
  auto params = net->named_parameters();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(at::allclose(params[i].second.grad(), plain[i + 1], 1e-5, 1e-7)) << params[i].first;
}

// With dropout the recomputation replays the forward's random draws, and leaves the generator where
// the forward left it: gradients and the next random number equal the run without checkpointing.
TEST(UnetBackbone, CheckpointingReplaysDropoutAndRestoresTheGenerator) {
  json cfg = tiny_sd15();
  cfg["dropout"] = 0.3;
  at::manual_seed(3);
  auto net = BackboneRegistry::instance().create("unet2d", cfg);
  net->train(true);
  at::Tensor x = at::randn({2, 4, 8, 8}), ctx = at::randn({2, 3, 32}), t = at::tensor({3, 900});
  auto run = [&](bool ckpt) {
    net->set_gradient_checkpointing(ckpt);
    std::vector<at::Tensor> wrt;
    for (auto& [n, p] : net->named_parameters()) wrt.push_back(p);
    at::manual_seed(11);
    at::Tensor loss = net->forward(x, t, ctx).square().mean();
    auto g = torch::autograd::grad({loss}, wrt);
    g.push_back(at::rand({4}));  // the generator's state after the step
    return g;
  };
  auto plain = run(false), ckpt = run(true), no_dropout_seed = run(false);
  ASSERT_EQ(plain.size(), ckpt.size());
  for (size_t i = 0; i + 1 < plain.size(); ++i) EXPECT_TRUE(at::allclose(plain[i], ckpt[i], 1e-5, 1e-7)) << i;
  EXPECT_TRUE(at::equal(plain.back(), ckpt.back()));
  EXPECT_TRUE(at::equal(plain[0], no_dropout_seed[0])) << "the same seed gives the same dropout masks";
}

TEST(UnetBackbone, InputHandling) {
  at::manual_seed(5);
  auto net = BackboneRegistry::instance().create("unet2d", tiny_sd15());
  at::NoGradGuard ng;
  at::Tensor x = at::randn({2, 4, 8, 8}), ctx = at::randn({2, 3, 32});
  // A scalar timestep broadcasts over the batch; float and int timesteps agree.
  EXPECT_TRUE(at::equal(net->forward(x, at::scalar_tensor(42, at::kLong), ctx), net->forward(x, at::tensor({42, 42}), ctx)));
  EXPECT_TRUE(at::allclose(net->forward(x, at::tensor({42.f, 42.f}), ctx), net->forward(x, at::tensor({42, 42}), ctx)));
  // Odd latent sizes use diffusers' forward_upsample_size path.
  EXPECT_EQ(net->forward(at::randn({1, 4, 9, 7}), at::tensor({1}), ctx.narrow(0, 0, 1)).sizes(), (at::IntArrayRef{1, 4, 9, 7}));
  // Channels-last gives the same numbers.
  at::Tensor ref = net->forward(x, at::tensor({5, 6}), ctx);
  net->set_channels_last(true);
  EXPECT_TRUE(at::allclose(net->forward(x, at::tensor({5, 6}), ctx), ref, 1e-5, 1e-6));
  // Wrong inputs are errors that say what was expected.
  EXPECT_THROW(net->forward(at::randn({2, 3, 8, 8}), at::tensor({1}), ctx), std::invalid_argument);
  EXPECT_THROW(net->forward(x, at::tensor({1}), at::randn({2, 3, 16})), std::invalid_argument);
  auto xl = BackboneRegistry::instance().create("unet2d", tiny_sdxl());
  EXPECT_TRUE(xl->requires_added_conditions());
  try {
    xl->forward(x, at::tensor({1}), at::randn({2, 3, 64}));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("text_embeds [B,32]"), std::string::npos) << e.what();
  }
}

TEST(UnetBackbone, DtypeMoves) {
  auto net = BackboneRegistry::instance().create("unet2d", tiny_sd15());
  net->to(at::kCPU, at::kBFloat16);
  EXPECT_EQ(net->dtype(), at::kBFloat16);
  at::NoGradGuard ng;
  at::Tensor y = net->forward(at::randn({1, 4, 8, 8}, at::kBFloat16), at::tensor({1}), at::randn({1, 3, 32}, at::kBFloat16));
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(y.isfinite().all().item<bool>());
}
