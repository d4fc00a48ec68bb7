#include "clip/aesthetic_head.hpp"

#include <ATen/ATen.h>

#include "model_folder/mapped_load.hpp"

namespace prefdiff::clip {

AestheticHeadImpl::AestheticHeadImpl(int64_t input_size, const at::TensorOptions& opts) : input_size_(input_size) {
  using unet2d::Dropout;
  using unet2d::Linear;
  layers = register_module("layers", torch::nn::ModuleList());
  const int64_t widths[] = {input_size, 1024, 128, 64, 16, 1};
  const double dropout[] = {0.2, 0.2, 0.1};
  for (int i = 0; i < 5; ++i) {
    linears_.push_back(Linear(widths[i], widths[i + 1], true, opts));
    layers->push_back(linears_.back());
    if (i < 3) {  // no dropout between the last two linears
      dropouts_.push_back(Dropout(dropout[i]));
      layers->push_back(dropouts_.back());
    }
  }
}

at::Tensor AestheticHeadImpl::forward(const at::Tensor& image_embeds) {
  if (!image_embeds.defined() || image_embeds.dim() != 2 || image_embeds.size(1) != input_size_)
    throw std::invalid_argument("aesthetic head: expects CLIP image embeddings [B," + std::to_string(input_size_) + "]");
  const at::Tensor& w = linears_[0]->weight;
  at::Tensor x = image_embeds.to(w.device(), w.scalar_type());
  at::Tensor norm = x.pow(2).sum(-1, true).sqrt();
  x = x / at::where(norm == 0, at::ones_like(norm), norm);
  for (size_t i = 0; i < linears_.size(); ++i) {
    x = linears_[i]->forward(x);
    if (i < dropouts_.size()) x = dropouts_[i]->forward(x);
  }
  return x.squeeze(-1);
}

AestheticHead load_aesthetic_head(const std::filesystem::path& file, const ClipLoadOptions& options) {
  const auto files = model_folder::WeightFiles::open_file(file);
  int64_t input_size = 768;  // CLIP ViT-L/14; when layers.0.weight is missing the loader reports it
  if (files.contains("layers.0.weight") && files.entry("layers.0.weight").shape.size() == 2)
    input_size = files.entry("layers.0.weight").shape[1];
  AestheticHead head(input_size, at::TensorOptions().device(options.device).dtype(options.dtype));
  model_io::NamedTensors targets;
  for (const auto& item : head->named_parameters(true)) targets.emplace_back(item.key(), item.value());
  model_folder::load_mapped(targets, files, {}, "the aesthetic predictor head",
                            "expected the state dict of improved-aesthetic-predictor's MLP "
                            "(layers.0/2/4/6/7), converted with tools/convert_aesthetic_head.py.");
  head->eval();
  return head;
}

}  // namespace prefdiff::clip
