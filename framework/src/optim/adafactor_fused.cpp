// Host side of the fused CUDA Adafactor: one pointer table for the whole step (pinned, copied to the device
// without a synchronisation), scratch from the caching allocator, launches on the current stream.
#include "adafactor_fused.hpp"

#include <ATen/ATen.h>

#include <stdexcept>

#ifdef PREFDIFF_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace prefdiff::optim::detail {

#ifdef PREFDIFF_WITH_CUDA_KERNELS

bool fused_adafactor_available() { return true; }

bool fused_adafactor_eligible(const at::Tensor& param, const at::Tensor& grad) {
  return param.is_cuda() && grad.is_cuda() && param.device() == grad.device() && param.scalar_type() == at::kFloat &&
         grad.scalar_type() == at::kFloat && param.is_contiguous() && grad.is_contiguous() && !grad.is_sparse();
}

void fused_adafactor_step(const std::vector<FusedAdafactorGroup>& groups, const FusedAdafactorScalars& s) {
  if (groups.empty()) return;
  const at::Device device = groups.front().params.front().device();
  const c10::cuda::CUDAGuard guard(device);
  int64_t entries = 0;
  for (const auto& g : groups) entries += 4 * static_cast<int64_t>(g.params.size());
  at::Tensor host = at::empty({entries}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  int64_t* h = host.data_ptr<int64_t>();
  int64_t at_entry = 0;
  auto address = [](const at::Tensor& t) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(t.data_ptr())); };
  for (const auto& g : groups) {
    const bool factored = g.params.front().dim() >= 2;
    for (size_t k = 0; k < g.params.size(); ++k) {
      h[at_entry++] = address(g.params[k]);
      h[at_entry++] = address(g.grads[k]);
      h[at_entry++] = address(factored ? g.rows[k] : g.fulls[k]);
      h[at_entry++] = factored ? address(g.cols[k]) : 0;
    }
  }
  // Pinned and non-blocking: no host-device synchronisation; the caching host allocator keeps the pinned block
  // until the copy has run.
  const at::Tensor table = host.to(device, /*non_blocking=*/true);
  const auto* base = reinterpret_cast<const long long*>(table.data_ptr<int64_t>());
  void* stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  int64_t offset = 0;
  for (const auto& g : groups) {
    const at::Tensor& first = g.params.front();
    const long long K = static_cast<long long>(g.params.size());
    KernelScalars ks{static_cast<float>(g.beta2t), static_cast<float>(1.0 - g.beta2t), static_cast<float>(s.eps1),
                     static_cast<float>(s.lr), static_cast<float>(-s.weight_decay * s.lr),
                     static_cast<float>(s.clip_threshold)};
    const long long* t = base + offset;
    if (first.dim() >= 2) {
      const long long R = first.size(-2), C = first.size(-1), L = first.numel() / std::max<int64_t>(R * C, 1);
      if (first.numel() > 0) {
        at::Tensor scratch = at::empty({factored_scratch_floats(K, L, R, C)}, first.options());
        launch_factored(t, K, L, R, C, scratch.data_ptr<float>(), ks, stream);
      }
    } else if (first.numel() > 0) {
      at::Tensor scratch = at::empty({full_scratch_floats(K, first.numel())}, first.options());
      launch_full(t, K, first.numel(), scratch.data_ptr<float>(), ks, stream);
    }
    offset += 4 * K;
  }
}

#else

bool fused_adafactor_available() { return false; }
bool fused_adafactor_eligible(const at::Tensor&, const at::Tensor&) { return false; }
void fused_adafactor_step(const std::vector<FusedAdafactorGroup>&, const FusedAdafactorScalars&) {
  throw std::logic_error("fused Adafactor: this build has no CUDA kernels (no CUDA LibTorch or no nvcc at configure time)");
}

#endif

}  // namespace prefdiff::optim::detail
