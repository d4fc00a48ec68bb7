#pragma once
// Optimizers of the trainer: AdamW (the official SD1.5 Diffusion-DPO optimizer, LibTorch's own) and
// Adafactor (the official SDXL one; LibTorch has none, so it is implemented here from Shazeer & Stern 2018
// with the semantics of transformers' Adafactor(scale_parameter=False, relative_step=False)).
//
// Both expose their state as named tensors so that the checkpoint writer can store it in safetensors and a
// resumed run continues bit-identically.

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace prefdiff::optim {

// (name, tensor) pairs in a fixed order: parameters (diffusers names) or optimizer/EMA state.
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Bad options, parameters or state. Messages name the offending key and say how to fix it.
class OptimError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of every parameter whose .grad() is defined; parameters without a gradient are skipped and
  // their state (step counter included) is left unchanged, as in torch.optim.
  virtual void step() = 0;
  // Resets every gradient to undefined (torch's set_to_none=True).
  virtual void zero_grad() = 0;
  // The learning rate of the next step(); the trainer sets it from the schedule before each step.
  virtual void set_lr(double lr) = 0;
  virtual double lr() const = 0;
  // The complete state: "step.<param>" (int64, 0-dim, CPU) and the moment tensors "<kind>.<param>" on the
  // parameter's device. The tensors alias the live state (no copy: SDXL's moments are gigabytes); write
  // them out before the next step(). Parameters that have never been stepped have no entries.
  virtual NamedTensors state() const = 0;
  // Replaces the state with one returned by state() (possibly after a safetensors round trip, on any
  // device). Unknown names, missing companions, wrong shapes or dtypes are refused, all listed at once.
  virtual void load_state(const NamedTensors& state) = 0;
  virtual std::string name() const = 0;  // "adamw" or "adafactor", as [optim].name
  // Whether steps take the multi-tensor path ([optim] multi_tensor; fused AdamW, Adafactor batched by shape).
  virtual bool multi_tensor() const = 0;
};

// torch.optim.AdamW semantics (decoupled decay p *= 1 - lr*wd, bias-corrected moments); official SD1.5
// Diffusion-DPO settings are the defaults apart from lr.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  // The multi-tensor kernel (ATen's _fused_adamw_, as torch.optim.AdamW(fused=True)): one launch for all
  // parameters instead of ~10 per parameter tensor. Unset: fused where every parameter is on CUDA,
  // LibTorch's per-tensor loop elsewhere (CPU runs keep their bit-exact history). Same update either way.
  std::optional<bool> fused;
};

// transformers' Adafactor(lr, scale_parameter=False, relative_step=False, warmup_init=False, beta1=None):
// no first moment; factored second moment (row/column over the last two dims) for ndim >= 2; update
// clipped to RMS <= clip_threshold; p -= lr*weight_decay*p. State is float32 whatever the parameter dtype.
struct AdafactorOptions {
  double lr = 1e-3;
  double eps1 = 1e-30;         // added to grad^2 before averaging
  double eps2 = 1e-3;          // floor of the parameter scale; only used with parameter scaling, which the
                               // official settings (scale_parameter=False) turn off: accepted, no effect
  double clip_threshold = 1.0;
  double decay_rate = -0.8;    // beta2_t = 1 - t^decay_rate
  double weight_decay = 1e-2;
  // Parameters of one shape (and dtype, device and step) updated together as one stacked tensor, in chunks
  // of at most 2^26 elements: ~25 kernels per shape instead of ~20 per parameter tensor. Unset: batched where
  // every parameter is on CUDA, the per-tensor loop elsewhere (CPU runs keep their bit-exact history).
  std::optional<bool> batched;
  // With the batched path on CUDA: the fused kernels (framework/src/optim/adafactor_fused.cu; builds with CUDA)
  // for float32 parameters, a few launches per shape, each parameter read and written once, its gradient read
  // three times, no parameter-sized temporaries (same update to float32 rounding; reductions in another order).
  // Unset: on wherever the kernels are compiled; false: the batched ATen path; true in a build without CUDA
  // kernels is an error.
  std::optional<bool> fused;
};

// Parameters must be defined, floating point, distinct, and uniquely named.
std::unique_ptr<Optimizer> make_adamw(const NamedTensors& named_parameters, const AdamWOptions& options);
std::unique_ptr<Optimizer> make_adafactor(const NamedTensors& named_parameters, const AdafactorOptions& options);

// From the resolved [optim] section (keys of framework/src/recipe_schema.cpp: name, lr, beta1, beta2,
// weight_decay, eps, adafactor_eps1, adafactor_eps2, adafactor_clip_threshold, adafactor_decay_rate).
// Missing keys take the schema's defaults; unknown keys and out-of-range values are errors naming the key.
std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& optim_section, const NamedTensors& named_parameters);

}  // namespace prefdiff::optim
