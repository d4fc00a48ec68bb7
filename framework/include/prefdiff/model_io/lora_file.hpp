#pragma once
// LoRA weight files (docs/training.md, "LoRA files"): diffusers' pytorch_lora_weights.safetensors
// (unet.<module>.lora.down.weight / .lora.up.weight, alpha in the lora_adapter_metadata header entry that
// diffusers >= 0.35 reads), peft's lora_A/lora_B names, and kohya-style files (lora_unet_<module with
// dots as _>.lora_down.weight / .lora_up.weight / .alpha).

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <string>
#include <vector>

namespace prefdiff::model_io {

// One adapter: the adapted layer's module name (diffusers' UNet names, e.g.
// "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"), down [r, in] or [r, in, k, k], up [out, r]
// or [out, r, 1, 1], and alpha (the delta is scaled by alpha / r).
struct LoraTensors {
  std::string module;
  at::Tensor down, up;
  double alpha = 0.0;
};

struct LoraFile {
  std::string format;                // "diffusers", "peft" or "kohya"
  std::vector<LoraTensors> adapters;  // in the file's order
  std::vector<std::string> ignored;   // text-encoder adapters (not the UNet's)
};

// Reads a LoRA file; `layers` are the model's adaptable layer names (kohya's names map back through them).
// Alpha: the file's per-module `.alpha` tensor, else lora_adapter_metadata's lora_alpha (per module through
// alpha_pattern), else the rank (scale 1, diffusers' convention). Throws ModelIoError naming the first keys
// it cannot place (an unknown naming scheme, a kohya name matching no layer, a down without its up).
LoraFile read_lora_file(const std::filesystem::path& file, const std::vector<std::string>& layers);

// Writes diffusers' format: "unet.<module>.lora.down.weight" / ".lora.up.weight" as held (exact: checkpoints
// resume from it), and lora_adapter_metadata {"unet.r", "unet.lora_alpha", "unet.target_modules" (the module
// names), rank_pattern/alpha_pattern where modules differ}, which diffusers >= 0.35 passes to peft's
// LoraConfig, so alpha != rank reloads at scale alpha / r. Atomic (a temporary file renamed).
void write_lora_file(const std::filesystem::path& file, const std::vector<LoraTensors>& adapters);

}  // namespace prefdiff::model_io
