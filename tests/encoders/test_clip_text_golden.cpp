// CLIPTextModel vs transformers' outputs (golden/clip_text_tiny): every hidden state, the final state,
// clip-skip, EOS pooling under both rules (the config's eos_token_id 2 = legacy argmax, and the
// eos_token_id rule), and parameter gradients, in float32 and float64. Shapes, the number of layers and
// the list of compared tensors come from the files.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>

#include "clip/clip_loading.hpp"
#include "clip/prompt_embeds.hpp"
#include "common/golden.hpp"
#include "encoder_test_util.hpp"

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
  clip::ClipTextModel model = clip::load_clip_text_model(dir, opts);
  ASSERT_FALSE(model->has_projection());

  auto in = SafetensorsFile::open(dir / "inputs.safetensors");
  auto ints = SafetensorsFile::open(dir / "outputs.safetensors");  // the I64 tensors live only here
  auto ref = SafetensorsFile::open(dir / (f64 ? "outputs_f64.safetensors" : "outputs.safetensors"));
  const at::Tensor ids = in.load("input_ids");

  // Forward with grad (the reference's param grads are of sum(last_hidden_state * grad_output)).
  clip::TextEncoderOutput out = model->forward(ids, {}, /*output_hidden_states=*/true);
  ASSERT_EQ(static_cast<int64_t>(out.hidden_states.size()), model->config().num_hidden_layers + 1);
  (out.last_hidden_state * in.load("grad_output").to(dtype)).sum().backward();
  std::map<std::string, at::Tensor> params;
  for (const auto& item : model->named_parameters(true)) params[item.key()] = item.value();

  // The same weights under the eos_token_id rule, with the id the reference names.
  int64_t eos = 49407;
  for (const auto& n : ref.names())
    if (starts_with(n, "pooler_output.eos_token_id_")) eos = std::stoll(n.substr(27));
  const auto alt_dir = scratch_dir("clip_text_eos");
  copy_model_folder(dir, alt_dir, [&](nlohmann::json& j) { j["eos_token_id"] = eos; });
  clip::ClipTextModel eos_model = clip::load_clip_text_model(alt_dir, opts);
  at::NoGradGuard no_grad;
  clip::TextEncoderOutput eos_out = eos_model->forward(ids);

  // README: states/pooled |a-b| <= 1e-4 + 1e-4|b|; grads max|a-b| <= 1e-4 max|b| + 1e-6; f64 1e-9 (1 + |b|).
  const double tol = f64 ? 1e-9 : 1e-4;
  int checked = 0;
  for (const auto& n : ref.names()) {
    const at::Tensor b = ref.load(n);
    at::Tensor a;
    bool grad = false;
    if (n == "last_hidden_state") a = out.last_hidden_state;
    else if (n == "pooler_output") a = out.pooler_output;
    else if (starts_with(n, "pooler_output.eos_token_id_")) a = eos_out.pooler_output;
    else if (starts_with(n, "hidden_states.")) a = out.hidden_states.at(std::stoul(n.substr(14)));
    else if (starts_with(n, "clip_skip_")) a = clip::sd15_prompt_embeds(model, ids, std::stoll(n.substr(10)));
    else if (n == "pooled_index.legacy" || n == "pooled_index.eos_token_id") {
      const at::Tensor& idx = n == "pooled_index.legacy" ? out.pooled_index : eos_out.pooled_index;
      EXPECT_TRUE(at::equal(idx.cpu(), b)) << n << ": " << idx << " vs " << b;  // integer positions: exact
      ++checked;
      continue;
    } else if (n == "param_grad_rows.index") {
      continue;  // used with the rows below
    } else if (starts_with(n, "param_grad_rows.")) {
      const at::Tensor index = ints.load("param_grad_rows.index");
      const at::Tensor g = params.at(n.substr(16)).grad();
      ASSERT_TRUE(g.defined()) << n;
      a = g.index_select(0, index);
      at::Tensor others = at::ones({g.size(0)}, at::kBool);
      others.index_fill_(0, index, false);
      // Rows of ids absent from the batch get no gradient at all (the reference stores only the used rows).
      EXPECT_EQ(at::count_nonzero(g.index({others})).item<int64_t>(), 0) << n << ": gradient in rows of unused ids";
      grad = true;
    } else if (starts_with(n, "param_grad.")) {
      auto it = params.find(n.substr(11));
      ASSERT_NE(it, params.end()) << "no parameter for " << n;
      a = it->second.grad();
      grad = true;
    } else {
      FAIL() << "unknown reference tensor " << n;
    }
    if (grad && !f64)
      EXPECT_TRUE(close_maxnorm(n, a, b, 1e-4, 1e-6));
    else
      EXPECT_TRUE(close_elementwise(n, a, b, tol, tol));
    ++checked;
  }
  EXPECT_GE(checked, 6);
  std::filesystem::remove_all(alt_dir);
}

}  // namespace

TEST(ClipTextGolden, TinyFloat32) { run_case("clip_text_tiny", false); }
TEST(ClipTextGolden, TinyFloat64) { run_case("clip_text_tiny", true); }
