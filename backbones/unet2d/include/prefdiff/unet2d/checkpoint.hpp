#pragma once
// Activation (gradient) checkpointing for LibTorch, which has no torch.utils.checkpoint: run `fn` without
// recording a graph, and recompute it with grad in backward. Parameters are explicit inputs of the
// backward node, so gradients reach them through the ordinary graph (works with backward() and with
// torch::autograd::grad, and never touches .grad directly). RNG and autocast state are replayed.

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace prefdiff::unet2d {

using TensorFn = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&)>;

// Returns fn(inputs). When grad mode is on and anything requires grad, the intermediate activations of fn are
// not kept; `params` must list every tensor requiring grad that fn uses besides `inputs`.
std::vector<at::Tensor> checkpoint(TensorFn fn, const std::vector<at::Tensor>& inputs,
                                   const std::vector<at::Tensor>& params);

}  // namespace prefdiff::unet2d
