// CLIPTextModelWithProjection (SDXL text_encoder_2) and SDXL's encode_prompt vs transformers/diffusers
// (golden/clip_text_proj_tiny): text_embeds, every hidden state, prompt_embeds = both encoders'
// hidden_states[-2] concatenated, pooled_prompt_embeds, for prompts and negative prompts, in float32 and
// float64. Shapes and the compared tensors come from the files.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "clip/clip_loading.hpp"
#include "clip/prompt_embeds.hpp"
#include "common/golden.hpp"
#include "prefdiff/model_io/safetensors.hpp"

using prefdiff::model_io::SafetensorsFile;
using namespace prefdiff::testing;
namespace clip = prefdiff::clip;

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

void run_case(const std::string& name, bool f64) {
  const auto dir = golden_dir() / name;
  ASSERT_TRUE(std::filesystem::exists(dir)) << dir << " missing; set PREFDIFF_GOLDEN_DIR";
  const auto dtype = f64 ? at::kDouble : at::kFloat;
  clip::ClipLoadOptions opts;
  opts.dtype = dtype;
  // A pipeline root: text_encoder/ and text_encoder_2/ below it.
  clip::ClipTextModel te1 = clip::load_clip_text_model(dir, opts, "text_encoder");
  clip::ClipTextModel te2 = clip::load_clip_text_model(dir, opts, "text_encoder_2");
  ASSERT_FALSE(te1->has_projection());
  ASSERT_TRUE(te2->has_projection());

  auto in = SafetensorsFile::open(dir / "inputs.safetensors");
  auto ref = SafetensorsFile::open(dir / (f64 ? "outputs_f64.safetensors" : "outputs.safetensors"));
  at::NoGradGuard no_grad;
  const clip::TextEncoderOutput out2 = te2->forward(in.load("input_ids_2"), {}, true);
  const clip::TextEncoderOutput out1 = te1->forward(in.load("input_ids"), {}, true);
  const clip::SdxlPromptEmbeds pos = clip::sdxl_prompt_embeds(&te1, te2, in.load("input_ids"), in.load("input_ids_2"));
  const clip::SdxlPromptEmbeds neg =
      clip::sdxl_prompt_embeds(&te1, te2, in.load("negative_input_ids"), in.load("negative_input_ids_2"));

  const double tol = f64 ? 1e-9 : 1e-4;  // README: 1e-4 + 1e-4|b| (float32), 1e-9 (1 + |b|) (float64)
  int checked = 0;
  for (const auto& n : ref.names()) {
    at::Tensor a;
    if (n == "text_embeds") a = out2.text_embeds;
    else if (n == "last_hidden_state") a = out2.last_hidden_state;
    else if (starts_with(n, "hidden_states.")) a = out2.hidden_states.at(std::stoul(n.substr(14)));
    else if (starts_with(n, "text_encoder.hidden_states.")) a = out1.hidden_states.at(std::stoul(n.substr(27)));
    else if (n == "prompt_embeds") a = pos.prompt_embeds;
    else if (n == "pooled_prompt_embeds") a = pos.pooled_prompt_embeds;
    else if (n == "negative_prompt_embeds") a = neg.prompt_embeds;
    else if (n == "negative_pooled_prompt_embeds") a = neg.pooled_prompt_embeds;
    else FAIL() << "unknown reference tensor " << n;
    EXPECT_TRUE(close_elementwise(n, a, ref.load(n), tol, tol));
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

}  // namespace

TEST(ClipTextProjGolden, TinyFloat32) { run_case("clip_text_proj_tiny", false); }
TEST(ClipTextProjGolden, TinyFloat64) { run_case("clip_text_proj_tiny", true); }
