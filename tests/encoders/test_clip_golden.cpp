// CLIPModel (the PickScore / HPSv2 structure) vs transformers (golden/clip_tiny): both towers' outputs,
// projected features, normalised embeddings, logit_scale.exp() and the logits, in float32 and float64.
// Shapes come from the files (images, captions, caption length with padding mask).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "clip/clip_loading.hpp"
#include "common/golden.hpp"
#include "prefdiff/model_io/safetensors.hpp"

using prefdiff::model_io::SafetensorsFile;
using namespace prefdiff::testing;
namespace clip = prefdiff::clip;

namespace {

void run_case(const std::string& name, bool f64) {
  const auto dir = golden_dir() / name;
  ASSERT_TRUE(std::filesystem::exists(dir)) << dir << " missing; set PREFDIFF_GOLDEN_DIR";
  const auto dtype = f64 ? at::kDouble : at::kFloat;
  clip::ClipLoadOptions opts;
  opts.dtype = dtype;
  clip::ClipModel model = clip::load_clip_model(dir, opts);

  auto in = SafetensorsFile::open(dir / "inputs.safetensors");
  auto ref = SafetensorsFile::open(dir / (f64 ? "outputs_f64.safetensors" : "outputs.safetensors"));
  const at::Tensor ids = in.load("input_ids"), pixels = in.load("pixel_values").to(dtype);
  const at::Tensor mask = in.contains("attention_mask") ? in.load("attention_mask") : at::Tensor();
  at::NoGradGuard no_grad;
  const clip::ClipOutput out = model->forward(ids, pixels, mask);
  const at::Tensor image_features = model->image_features(pixels);
  const at::Tensor text_features = model->text_features(ids, mask);

  const double tol = f64 ? 1e-9 : 1e-4;  // README: 1e-4 + 1e-4|b| (float32), 1e-9 (1 + |b|) (float64)
  int checked = 0;
  for (const auto& n : ref.names()) {
    at::Tensor a;
    if (n == "image_embeds") a = out.image_embeds;
    else if (n == "text_embeds") a = out.text_embeds;
    else if (n == "logits_per_image") a = out.logits_per_image;
    else if (n == "logits_per_text") a = out.logits_per_text;
    else if (n == "vision_model.last_hidden_state") a = out.vision.last_hidden_state;
    else if (n == "vision_model.pooler_output") a = out.vision.pooler_output;
    else if (n == "text_model.last_hidden_state") a = out.text.last_hidden_state;
    else if (n == "text_model.pooler_output") a = out.text.pooler_output;
    else if (n == "image_features") a = image_features;
    else if (n == "text_features") a = text_features;
    else if (n == "logit_scale_exp") a = model->logit_scale.exp();
    else FAIL() << "unknown reference tensor " << n;
    EXPECT_TRUE(close_elementwise(n, a, ref.load(n), tol, tol));
    ++checked;
  }
  EXPECT_GE(checked, 5);

  // The per-pair score the scorers use equals the diagonal of logits_per_image (pairs i <-> i).
  const int64_t pairs = std::min(image_features.size(0), text_features.size(0));
  const at::Tensor scores = model->paired_scores(image_features.narrow(0, 0, pairs), text_features.narrow(0, 0, pairs));
  EXPECT_TRUE(close_elementwise("paired_scores vs diag(logits_per_image)", scores,
                                ref.load("logits_per_image").narrow(0, 0, pairs).narrow(1, 0, pairs).diagonal(), tol, tol));
}

}  // namespace

TEST(ClipGolden, TinyFloat32) { run_case("clip_tiny", false); }
TEST(ClipGolden, TinyFloat64) { run_case("clip_tiny", true); }
