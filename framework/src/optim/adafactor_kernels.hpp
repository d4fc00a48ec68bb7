// The fused Adafactor kernels' launchers (adafactor_fused.cu), on raw device pointers: no ATen, so that nvcc
// compiles the kernels without LibTorch's headers. Used by adafactor_fused.cpp only.
#pragma once

namespace prefdiff::optim::detail {

// `table` holds, per member k, 4 pointers
// (param, grad, row, col) for factored groups or (param, grad, state, -) for full ones.
struct KernelScalars {
  float beta, one_minus_beta, eps1, lr, neg_wd_lr, clip;
};
// Scratch floats a factored group of K members of shape [L.., R, C] needs (full groups: full_scratch_floats).
long long factored_scratch_floats(long long K, long long L, long long R, long long C);
long long full_scratch_floats(long long K, long long n);
void launch_factored(const long long* table, long long K, long long L, long long R, long long C, float* scratch,
                     const KernelScalars& s, void* stream);
void launch_full(const long long* table, long long K, long long n, float* scratch, const KernelScalars& s, void* stream);

}  // namespace prefdiff::optim::detail
