#pragma once
// How many bytes a training forward of the UNet leaves saved for its backward, from the config and the input
// shape alone (torch-free), per checkpointing unit, and which units to checkpoint so that the rest fits a
// memory budget with the least recomputation. The formulas (one per unit kind, tensor by tensor) and their
// check against the bytes LibTorch's CPU allocator holds are in docs/performance.md ("Selective activation
// checkpointing").
//
// Checkpointing units: every ResnetBlock2D, every Transformer2DModel's input part (GroupNorm + proj_in) and
// every BasicTransformerBlock. A checkpointed unit keeps only its input (held by the checkpoint) and runs its
// forward again in backward; a unit that is not checkpointed keeps what autograd saves inside it.

#include <cstdint>
#include <string>
#include <vector>

#include "prefdiff/unet2d/config.hpp"

namespace prefdiff::unet2d {

struct ActivationShape {
  int64_t batch = 1;        // images per forward
  int64_t height = 64;      // latent size
  int64_t width = 64;
  int64_t context_len = 77; // text tokens
};

// float32 (no autocast), or autocast to a 16-bit type: convolution and matmul outputs (and the copies their
// float32 inputs are cast to) in 16 bits, weights cast once per forward (2 bytes per weight, kept by the ops that
// save them). CUDA's autocast runs group and layer norms in float32 (its float32 list: a 16-bit input is cast up
// and the cast is what the norm saves); the CPU's runs them in the input's dtype.
struct ActivationPrecision {
  bool autocast = false;
  int64_t low_bytes = 4;       // bytes of an autocast (or plain) matmul/conv element
  bool norms_float32 = false;  // under autocast: norms in float32 (CUDA) or in the input dtype (CPU)
  // What every checkpoint keeps besides its inputs: the state of the inputs' device generator, to replay
  // dropout (CUDA's Philox: 16 bytes; the CPU's mt19937: 5056).
  int64_t checkpoint_state_bytes = 16;
  static ActivationPrecision float32() { return {false, 4, false, 16}; }
  static ActivationPrecision autocast16() { return {true, 2, true, 16}; }  // CUDA
  static ActivationPrecision cpu_autocast16() { return {true, 2, false, 5056}; }
};

enum class UnitKind { kResnet, kTransformerIn, kTransformerBlock };

struct CheckpointUnit {
  std::string name;      // module path, e.g. "down_blocks.1.attentions.0.transformer_blocks.0"
  UnitKind kind = UnitKind::kResnet;
  double saved = 0;      // bytes autograd keeps inside the unit when it is not checkpointed (not its input)
  bool saves_input = false;  // when not checkpointed, whether an op inside saves the input tensor itself
  size_t input = 0;      // index of the input tensor in ActivationEstimate::tensors
  double flops = 0;      // forward FLOPs of the unit: what checkpointing it costs again in backward
};

struct ActivationEstimate {
  std::vector<CheckpointUnit> units;  // in forward order
  // Tensors passed between units (a unit's output, a concatenation, ...) and whether something other than the
  // units saves them (a downsampler, proj_out, the head): then they are kept whatever is checkpointed.
  struct Boundary {
    double bytes = 0;
    bool kept = false;
  };
  std::vector<Boundary> tensors;
  double fixed = 0;   // saved outside the units: embeddings, conv_in, resamplers, proj_out, the head
  double output = 0;  // the model's output tensor
  double per_checkpoint = 0;  // kept by each checkpointed unit besides its input (generator state)

  // Bytes saved for backward after the forward (the output excluded), with `checkpointed[u]` for units[u].
  double saved_bytes(const std::vector<bool>& checkpointed) const;
  // saved_bytes plus the largest checkpointed unit's recomputation, which backward holds while it runs.
  double peak_bytes(const std::vector<bool>& checkpointed) const;
  double recompute_flops(const std::vector<bool>& checkpointed) const;
};

ActivationEstimate estimate_activations(const Unet2dConfig& config, const ActivationShape& shape,
                                        const ActivationPrecision& precision);

struct CheckpointPlan {
  std::vector<bool> checkpointed;  // per unit of the estimate
  double peak_bytes = 0;           // estimate's peak_bytes for this choice
  double recompute_flops = 0;
  bool fits = true;  // false: even checkpointing every unit exceeds the budget (then every unit is)
};

// The units to checkpoint so that peak_bytes <= budget_bytes with as little recomputation as possible (greedy:
// starting from every unit checkpointed, units are kept, i.e. not recomputed, in decreasing order of recompute
// FLOPs per saved byte while the peak stays within the budget).
CheckpointPlan plan_checkpointing(const ActivationEstimate& estimate, double budget_bytes);

}  // namespace prefdiff::unet2d
