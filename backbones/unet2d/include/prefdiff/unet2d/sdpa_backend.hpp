#pragma once
// Which kernel at::scaled_dot_product_attention takes for each attention call of a UNet (flash, memory-efficient,
// cuDNN or the unfused math path), asked of ATen's own dispatcher (at::_fused_sdp_choice) with q, k and v laid out
// as AttentionImpl passes them. The math path materialises the B x heads x N x N attention matrix; on a GPU in
// bf16 no call should take it (bench/device/run.sh asserts that for the SD1.5 and SDXL shapes).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "prefdiff/unet2d/activation_memory.hpp"
#include "prefdiff/unet2d/config.hpp"

namespace prefdiff::unet2d {

// "math", "flash", "efficient", "cudnn", "overrideable", or "error" (no kernel accepts the inputs).
std::string sdpa_backend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

struct AttentionCall {
  std::string kind;  // "self" or "cross"
  int64_t batch = 0, heads = 0, q_len = 0, kv_len = 0, head_dim = 0;
  int64_t calls = 0;  // how many attention calls of one forward have this shape
  std::string backend;
};

// Every distinct attention shape of one forward of `config` at `shape`, in `dtype` on `device` (the dtype SDPA
// sees: bf16 under bf16 autocast), with the backend it takes. Allocates one q, k, v per distinct shape.
std::vector<AttentionCall> attention_backends(const Unet2dConfig& config, const ActivationShape& shape,
                                              at::ScalarType dtype, c10::Device device);

}  // namespace prefdiff::unet2d
