// OpenCLIP checkpoints through the key map, and the LAION aesthetic head, against references the venv's
// open_clip / torch wrote for fixed inputs (make_encoder_references.py, run by ctest as a fixture): features,
// normalised embeddings, logit_scale.exp() and logits in float32 and float64; the head's scores. The
// checkpoints went through tools/convert_openclip_checkpoint.py and tools/convert_aesthetic_head.py, so the
// conversion scripts are checked too.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "clip/aesthetic_head.hpp"
#include "clip/openclip.hpp"
#include "common/golden.hpp"
#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/model_io/safetensors.hpp"

#include <set>

using prefdiff::model_io::SafetensorsFile;
using namespace prefdiff::testing;
namespace clip = prefdiff::clip;
namespace fs = std::filesystem;

namespace {

fs::path reference_dir() { return fs::path(PREFDIFF_ENCODER_REFERENCE_DIR); }

void compare_openclip(const fs::path& dir, bool f64, bool explicit_files) {
  ASSERT_TRUE(fs::exists(dir / "inputs.safetensors"))
      << dir << " missing: run the reference fixture (ctest -R encoder_references) first";
  clip::ClipLoadOptions opts;
  opts.dtype = f64 ? at::kDouble : at::kFloat;
  clip::ClipModel model = explicit_files
                              ? clip::load_openclip_model(dir / "folder" / "open_clip_config.json",
                                                          dir / "folder" / "open_clip_model.safetensors", opts)
                              : clip::load_openclip_model(dir / "folder", opts);
  auto in = SafetensorsFile::open(dir / "inputs.safetensors");
  auto ref = SafetensorsFile::open(dir / (f64 ? "reference_f64.safetensors" : "reference.safetensors"));
  at::NoGradGuard no_grad;
  const at::Tensor ids = in.load("input_ids");
  const at::Tensor image_features = model->image_features(in.load("pixel_values").to(opts.dtype));
  const at::Tensor text_features = model->text_features(ids);
  const clip::ClipOutput out = model->forward(ids, in.load("pixel_values").to(opts.dtype));
  // Two float32 implementations of the same network: the CLIP READMEs' 1e-4 + 1e-4|b|; float64 1e-9 (1+|b|).
  const double tol = f64 ? 1e-9 : 1e-4;
  int checked = 0;
  for (const auto& n : ref.names()) {
    at::Tensor a;
    if (n == "image_features") a = image_features;
    else if (n == "text_features") a = text_features;
    else if (n == "image_embeds") a = out.image_embeds;
    else if (n == "text_embeds") a = out.text_embeds;
    else if (n == "logit_scale_exp") a = model->logit_scale.exp();
    else if (n == "logits_per_image") a = out.logits_per_image;
    else FAIL() << "unknown reference tensor " << n;
    EXPECT_TRUE(close_elementwise(n, a, ref.load(n), tol, tol));
    ++checked;
  }
  EXPECT_EQ(checked, 6);
}

}  // namespace

TEST(OpenClip, VitFloat32) { compare_openclip(reference_dir() / "openclip" / "vit", false, false); }
TEST(OpenClip, VitFloat64) { compare_openclip(reference_dir() / "openclip" / "vit", true, false); }
TEST(OpenClip, VitFromExplicitConfigAndWeightsFiles) {
  compare_openclip(reference_dir() / "openclip" / "vit", false, true);
}
TEST(OpenClip, CustomTextQuickGeluEosPoolingFloat32) {
  compare_openclip(reference_dir() / "openclip" / "custom_text", false, false);
}
TEST(OpenClip, CustomTextQuickGeluEosPoolingFloat64) {
  compare_openclip(reference_dir() / "openclip" / "custom_text", true, false);
}

// HPSv2's architecture at real size: the key map turns the ClipModel built from OpenCLIP's ViT-H-14 config into
// exactly OpenCLIP's tensors (names and shapes), with the same parameter count. Meta device: no weights.
TEST(OpenClip, VitH14KeyMapCoversOpenClipsTensorsExactly) {
  const fs::path dir = reference_dir() / "openclip" / "vit_h_14";
  ASSERT_TRUE(fs::exists(dir / "tensor_shapes.json")) << dir << " missing: run the reference fixture first";
  const clip::ClipConfig cfg = clip::ClipConfig::from_openclip_json(
      prefdiff::model_io::read_json_file(dir / "open_clip_config.json"), (dir / "open_clip_config.json").string());
  EXPECT_EQ(cfg.vision.num_attention_heads, 16);  // width 1280 / head_width 80
  const nlohmann::json shapes = prefdiff::model_io::read_json_file(dir / "tensor_shapes.json");
  clip::ClipModel model(cfg, at::TensorOptions().device(at::kMeta));
  const auto map = clip::openclip_key_map(cfg);
  using Op = prefdiff::model_folder::TensorSource::Op;
  std::set<std::string> used;
  int64_t ours = 0, theirs = 0;
  for (const auto& item : model->named_parameters(true)) {
    const auto src = map.source(item.key());
    used.insert(src.name);
    ours += item.value().numel();
    std::vector<int64_t> want = item.value().sizes().vec();
    if (src.op == Op::kTranspose) std::swap(want[0], want[1]);
    if (src.op == Op::kRowBlock) want[0] *= src.blocks;
    ASSERT_TRUE(shapes.contains(src.name)) << item.key() << " maps to '" << src.name << "', which OpenCLIP lacks";
    EXPECT_EQ(shapes[src.name].get<std::vector<int64_t>>(), want) << src.name << " for " << item.key();
  }
  for (auto it = shapes.begin(); it != shapes.end(); ++it) {
    EXPECT_TRUE(used.count(it.key()) || map.ignored(it.key())) << "OpenCLIP tensor '" << it.key() << "' is not loaded";
    int64_t n = 1;
    for (int64_t d : it.value().get<std::vector<int64_t>>()) n *= d;
    theirs += n;
  }
  EXPECT_EQ(ours, theirs);
  std::printf("  ViT-H-14: %zu OpenCLIP tensors, %lld parameters\n", shapes.size(), static_cast<long long>(theirs));
}

TEST(AestheticHead, MatchesTheReferenceMlpOnNormalisedEmbeddings) {
  const fs::path dir = reference_dir() / "aesthetic";
  ASSERT_TRUE(fs::exists(dir / "reference.safetensors")) << dir << " missing: run the reference fixture first";
  clip::AestheticHead head = clip::load_aesthetic_head(dir / "aesthetic_head.safetensors");
  auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const at::Tensor embeds = ref.load("image_embeds");
  EXPECT_EQ(head->input_size(), embeds.size(1));
  at::NoGradGuard no_grad;
  const at::Tensor scores = head->forward(embeds);
  EXPECT_TRUE(close_elementwise("scores", scores, ref.load("scores"), 1e-4, 1e-4));
  // Normalisation makes the score scale-invariant (the zero row stays zero and scores the bias path).
  EXPECT_TRUE(close_elementwise("scores of 7x the embeddings", head->forward(embeds * 7), scores, 1e-5, 1e-5));
}
