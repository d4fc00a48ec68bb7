// Fused Adafactor kernels (see adafactor.cpp for the update and adafactor_fused.hpp for the contract). A group is
// K parameters of one shape, reached through a device table of pointers; every reduction runs in a fixed order
// (no atomics), so a step is deterministic.
//
// Factored parameters, shape [L.., R, C] seen as L matrices R x C:
//   large matrices (R > 4 or C > 4), blocks over tiles of kTileRows rows:
//     stats   G read once: row sums of G^2+eps1 (complete per tile) and per-tile column sums
//     state   per matrix: row/column states updated from the sums, mean of the new row state
//     sumsq   G read again: sum of U^2 per tile, U = G * rsqrt(row/mean(row)) * rsqrt(col)
//     divisor per parameter: max(1, RMS(U) / clip)
//     update  G read a third time, the parameter read and written once
//   small matrices (conv kernels 3x3, 1x1: R, C <= 4), one thread per matrix: stats, state and sumsq in one
//   pass (everything is in registers), divisor, update.
// Full (ndim < 2) parameters: state update and sum of U^2 in one pass, divisor, update.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "adafactor_kernels.hpp"

namespace prefdiff::optim::detail {

namespace {

constexpr int kThreads = 256;
constexpr int kTileRows = 16;
constexpr int kSmall = 4;

// Sum over the block, returned to every thread. `shm` holds kThreads / 32 floats.
__device__ float block_sum(float v, float* shm) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // shm may still be read by a previous call
  if (lane == 0) shm[warp] = v;
  __syncthreads();
  float total = 0.f;
  if (threadIdx.x == 0) {
    for (int w = 0; w < kThreads / 32; ++w) total += shm[w];
    shm[0] = total;
  }
  __syncthreads();
  return shm[0];
}

template <class T>
__device__ T* ptr(const long long* table, long long k, int slot) {
  return reinterpret_cast<T*>(table[4 * k + slot]);
}

// ------------------------------------------------------------------------------------------ large factored
// grid: x = L * ntiles, y = K
__global__ void large_stats(const long long* table, long long L, long long R, long long C, long long ntiles,
                            float eps1, float* rowsum, float* colpart) {
  __shared__ float shm[kThreads / 32];
  const long long k = blockIdx.y, l = blockIdx.x / ntiles, tile = blockIdx.x % ntiles;
  const float* g = ptr<const float>(table, k, 1) + l * R * C;
  const long long r0 = tile * kTileRows, rows = R - r0 < kTileRows ? R - r0 : kTileRows;
  float racc[kTileRows];
#pragma unroll
  for (int i = 0; i < kTileRows; ++i) racc[i] = 0.f;
  float* cp = colpart + ((k * L + l) * ntiles + tile) * C;
  for (long long c = threadIdx.x; c < C; c += kThreads) {
    float cacc = 0.f;
#pragma unroll
    for (int i = 0; i < kTileRows; ++i) {
      if (i < rows) {
        const float x = g[(r0 + i) * C + c];
        const float v = x * x + eps1;
        cacc += v;
        racc[i] += v;
      }
    }
    cp[c] = cacc;
  }
  float* rs = rowsum + (k * L + l) * R;
#pragma unroll
  for (int i = 0; i < kTileRows; ++i) {
    const float s = block_sum(racc[i], shm);
    if (threadIdx.x == 0 && i < rows) rs[r0 + i] = s;
  }
}

// grid: x = L, y = K. row = beta*row + (1-beta)*rowsum/C; col = beta*col + (1-beta)*colsum/R; rmean = mean(row).
__global__ void large_state(const long long* table, long long L, long long R, long long C, long long ntiles, float beta,
                            float omb, const float* rowsum, const float* colpart, float* rmean) {
  __shared__ float shm[kThreads / 32];
  const long long k = blockIdx.y, l = blockIdx.x;
  float* row = ptr<float>(table, k, 2) + l * R;
  float* col = ptr<float>(table, k, 3) + l * C;
  const float* cp = colpart + (k * L + l) * ntiles * C;
  for (long long c = threadIdx.x; c < C; c += kThreads) {
    float s = 0.f;
    for (long long t = 0; t < ntiles; ++t) s += cp[t * C + c];
    col[c] = col[c] * beta + omb * (s / static_cast<float>(R));
  }
  const float* rs = rowsum + (k * L + l) * R;
  float acc = 0.f;
  for (long long r = threadIdx.x; r < R; r += kThreads) {
    const float v = row[r] * beta + omb * (rs[r] / static_cast<float>(C));
    row[r] = v;
    acc += v;
  }
  const float total = block_sum(acc, shm);
  if (threadIdx.x == 0) rmean[k * L + l] = total / static_cast<float>(R);
}

// The tile's rsqrt(row / mean(row)) into shared memory.
__device__ void tile_row_factors(const float* row, long long r0, long long rows, float mean, float* rinv) {
  if (threadIdx.x < rows) rinv[threadIdx.x] = rsqrtf(row[r0 + threadIdx.x] / mean);
  __syncthreads();
}

// grid: x = L * ntiles, y = K. Per-tile sum of U^2 into partial[k * L * ntiles + x].
__global__ void large_sumsq(const long long* table, long long L, long long R, long long C, long long ntiles,
                            const float* rmean, float* partial) {
  __shared__ float shm[kThreads / 32];
  __shared__ float rinv[kTileRows];
  const long long k = blockIdx.y, l = blockIdx.x / ntiles, tile = blockIdx.x % ntiles;
  const float* g = ptr<const float>(table, k, 1) + l * R * C;
  const float* row = ptr<const float>(table, k, 2) + l * R;
  const float* col = ptr<const float>(table, k, 3) + l * C;
  const long long r0 = tile * kTileRows, rows = R - r0 < kTileRows ? R - r0 : kTileRows;
  tile_row_factors(row, r0, rows, rmean[k * L + l], rinv);
  float acc = 0.f;
  for (long long c = threadIdx.x; c < C; c += kThreads) {
    const float cinv = rsqrtf(col[c]);
#pragma unroll
    for (int i = 0; i < kTileRows; ++i) {
      if (i < rows) {
        const float u = rinv[i] * cinv * g[(r0 + i) * C + c];
        acc += u * u;
      }
    }
  }
  const float s = block_sum(acc, shm);
  if (threadIdx.x == 0) partial[k * L * ntiles + blockIdx.x] = s;
}

// grid: x = L * ntiles, y = K. p = p + (-wd*lr)*p - ((rinv*cinv)*g / divisor) * lr.
__global__ void large_update(const long long* table, long long L, long long R, long long C, long long ntiles,
                             const float* rmean, const float* divisor, float lr, float neg_wd_lr) {
  __shared__ float rinv[kTileRows];
  const long long k = blockIdx.y, l = blockIdx.x / ntiles, tile = blockIdx.x % ntiles;
  float* p = ptr<float>(table, k, 0) + l * R * C;
  const float* g = ptr<const float>(table, k, 1) + l * R * C;
  const float* row = ptr<const float>(table, k, 2) + l * R;
  const float* col = ptr<const float>(table, k, 3) + l * C;
  const long long r0 = tile * kTileRows, rows = R - r0 < kTileRows ? R - r0 : kTileRows;
  tile_row_factors(row, r0, rows, rmean[k * L + l], rinv);
  const float d = divisor[k];
  for (long long c = threadIdx.x; c < C; c += kThreads) {
    const float cinv = rsqrtf(col[c]);
#pragma unroll
    for (int i = 0; i < kTileRows; ++i) {
      if (i < rows) {
        const long long at = (r0 + i) * C + c;
        const float u = (rinv[i] * cinv) * g[at] / d * lr;
        float w = p[at];
        w = w + neg_wd_lr * w;
        p[at] = w - u;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ small factored
// The matrix's new row/column state and its factors, in registers (one thread per matrix).
struct SmallFactors {
  float rinv[kSmall], cinv[kSmall];
};

__device__ SmallFactors small_factors(const float* row, const float* col, int R, int C) {
  SmallFactors f;
  float sum = 0.f;
#pragma unroll
  for (int r = 0; r < kSmall; ++r)
    if (r < R) sum += row[r];
  const float mean = sum / static_cast<float>(R);
#pragma unroll
  for (int r = 0; r < kSmall; ++r) f.rinv[r] = r < R ? rsqrtf(row[r] / mean) : 0.f;
#pragma unroll
  for (int c = 0; c < kSmall; ++c) f.cinv[c] = c < C ? rsqrtf(col[c]) : 0.f;
  return f;
}

// grid: x = ceil(L / kThreads), y = K. State update and per-block sum of U^2 into partial[k * gridDim.x + x].
__global__ void small_stats(const long long* table, long long L, int R, int C, float beta, float omb, float eps1,
                            float* partial) {
  __shared__ float shm[kThreads / 32];
  const long long k = blockIdx.y, l = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x;
  float acc = 0.f;
  if (l < L) {
    const float* g = ptr<const float>(table, k, 1) + l * R * C;
    float* row = ptr<float>(table, k, 2) + l * R;
    float* col = ptr<float>(table, k, 3) + l * C;
    float gv[kSmall][kSmall], rs[kSmall], cs[kSmall];
#pragma unroll
    for (int i = 0; i < kSmall; ++i) rs[i] = cs[i] = 0.f;
#pragma unroll
    for (int r = 0; r < kSmall; ++r) {
#pragma unroll
      for (int c = 0; c < kSmall; ++c) {
        gv[r][c] = 0.f;
        if (r < R && c < C) {
          gv[r][c] = g[r * C + c];
          const float v = gv[r][c] * gv[r][c] + eps1;
          rs[r] += v;
        }
      }
    }
    // Column sums in row order, as a reduction over rows would add them.
#pragma unroll
    for (int c = 0; c < kSmall; ++c) {
#pragma unroll
      for (int r = 0; r < kSmall; ++r)
        if (r < R && c < C) cs[c] += gv[r][c] * gv[r][c] + eps1;
    }
    float nrow[kSmall], ncol[kSmall];
#pragma unroll
    for (int r = 0; r < kSmall; ++r)
      if (r < R) row[r] = nrow[r] = row[r] * beta + omb * (rs[r] / static_cast<float>(C));
#pragma unroll
    for (int c = 0; c < kSmall; ++c)
      if (c < C) col[c] = ncol[c] = col[c] * beta + omb * (cs[c] / static_cast<float>(R));
    const SmallFactors f = small_factors(nrow, ncol, R, C);
#pragma unroll
    for (int r = 0; r < kSmall; ++r) {
#pragma unroll
      for (int c = 0; c < kSmall; ++c) {
        if (r < R && c < C) {
          const float u = f.rinv[r] * f.cinv[c] * gv[r][c];
          acc += u * u;
        }
      }
    }
  }
  const float s = block_sum(acc, shm);
  if (threadIdx.x == 0) partial[k * gridDim.x + blockIdx.x] = s;
}

__global__ void small_update(const long long* table, long long L, int R, int C, const float* divisor, float lr,
                             float neg_wd_lr) {
  const long long k = blockIdx.y, l = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x;
  if (l >= L) return;
  float* p = ptr<float>(table, k, 0) + l * R * C;
  const float* g = ptr<const float>(table, k, 1) + l * R * C;
  const float* row = ptr<const float>(table, k, 2) + l * R;
  const float* col = ptr<const float>(table, k, 3) + l * C;
  float nrow[kSmall], ncol[kSmall];
#pragma unroll
  for (int i = 0; i < kSmall; ++i) {
    nrow[i] = i < R ? row[i] : 1.f;
    ncol[i] = i < C ? col[i] : 1.f;
  }
  const SmallFactors f = small_factors(nrow, ncol, R, C);
  const float d = divisor[k];
#pragma unroll
  for (int r = 0; r < kSmall; ++r) {
#pragma unroll
    for (int c = 0; c < kSmall; ++c) {
      if (r < R && c < C) {
        const float u = (f.rinv[r] * f.cinv[c]) * g[r * C + c] / d * lr;
        float w = p[r * C + c];
        w = w + neg_wd_lr * w;
        p[r * C + c] = w - u;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------- full
// grid: x = blocks per parameter, y = K. v = beta*v + (1-beta)*(g^2+eps1); sum of (rsqrt(v)*g)^2 per block.
__global__ void full_stats(const long long* table, long long n, float beta, float omb, float eps1, float* partial) {
  __shared__ float shm[kThreads / 32];
  const long long k = blockIdx.y;
  const float* g = ptr<const float>(table, k, 1);
  float* v = ptr<float>(table, k, 2);
  float acc = 0.f;
  for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * kThreads) {
    const float x = g[i];
    const float nv = v[i] * beta + omb * (x * x + eps1);
    v[i] = nv;
    const float u = rsqrtf(nv) * x;
    acc += u * u;
  }
  const float s = block_sum(acc, shm);
  if (threadIdx.x == 0) partial[k * gridDim.x + blockIdx.x] = s;
}

__global__ void full_update(const long long* table, long long n, const float* divisor, float lr, float neg_wd_lr) {
  const long long k = blockIdx.y;
  float* p = ptr<float>(table, k, 0);
  const float* g = ptr<const float>(table, k, 1);
  const float* v = ptr<const float>(table, k, 2);
  const float d = divisor[k];
  for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * kThreads) {
    const float u = rsqrtf(v[i]) * g[i] / d * lr;
    float w = p[i];
    w = w + neg_wd_lr * w;
    p[i] = w - u;
  }
}

// ---------------------------------------------------------------------------------------------- divisor
// grid: K blocks. divisor[k] = max(1, sqrt(sum of parts) / sqrt(numel) / clip), the parts summed in order.
__global__ void clip_divisor(const float* partial, long long parts, long long numel, float clip, float* divisor) {
  __shared__ float shm[kThreads / 32];
  const long long k = blockIdx.x;
  float acc = 0.f;
  for (long long j = threadIdx.x; j < parts; j += kThreads) acc += partial[k * parts + j];
  const float s = block_sum(acc, shm);
  if (threadIdx.x == 0) {
    const float rms = sqrtf(s) / static_cast<float>(sqrt(static_cast<double>(numel)));
    const float ratio = rms / clip;
    divisor[k] = ratio > 1.f ? ratio : 1.f;
  }
}

void check(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("fused Adafactor: launching ") + what + " failed: " + cudaGetErrorString(e));
}

bool small(long long R, long long C) { return R <= kSmall && C <= kSmall; }
long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }
long long full_blocks(long long n) {
  const long long b = ceil_div(n, kThreads);
  return b < 1 ? 1 : (b > 1024 ? 1024 : b);
}

}  // namespace

long long factored_scratch_floats(long long K, long long L, long long R, long long C) {
  if (small(R, C)) return K * ceil_div(L, kThreads) + K;  // partial, divisor
  const long long ntiles = ceil_div(R, kTileRows);
  return K * L * R + K * L * ntiles * C + K * L + K * L * ntiles + K;  // rowsum, colpart, rmean, partial, divisor
}

long long full_scratch_floats(long long K, long long n) { return K * full_blocks(n) + K; }

void launch_factored(const long long* table, long long K, long long L, long long R, long long C, float* scratch,
                     const KernelScalars& s, void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const long long numel = L * R * C;
  if (small(R, C)) {
    const long long blocks = ceil_div(L, kThreads);
    float* partial = scratch;
    float* divisor = partial + K * blocks;
    const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(K));
    small_stats<<<grid, kThreads, 0, stream>>>(table, L, static_cast<int>(R), static_cast<int>(C), s.beta,
                                               s.one_minus_beta, s.eps1, partial);
    check("small_stats");
    clip_divisor<<<static_cast<unsigned>(K), kThreads, 0, stream>>>(partial, blocks, numel, s.clip, divisor);
    check("clip_divisor");
    small_update<<<grid, kThreads, 0, stream>>>(table, L, static_cast<int>(R), static_cast<int>(C), divisor, s.lr,
                                                s.neg_wd_lr);
    check("small_update");
    return;
  }
  const long long ntiles = ceil_div(R, kTileRows);
  float* rowsum = scratch;
  float* colpart = rowsum + K * L * R;
  float* rmean = colpart + K * L * ntiles * C;
  float* partial = rmean + K * L;
  float* divisor = partial + K * L * ntiles;
  const dim3 tiles(static_cast<unsigned>(L * ntiles), static_cast<unsigned>(K));
  large_stats<<<tiles, kThreads, 0, stream>>>(table, L, R, C, ntiles, s.eps1, rowsum, colpart);
  check("large_stats");
  large_state<<<dim3(static_cast<unsigned>(L), static_cast<unsigned>(K)), kThreads, 0, stream>>>(
      table, L, R, C, ntiles, s.beta, s.one_minus_beta, rowsum, colpart, rmean);
  check("large_state");
  large_sumsq<<<tiles, kThreads, 0, stream>>>(table, L, R, C, ntiles, rmean, partial);
  check("large_sumsq");
  clip_divisor<<<static_cast<unsigned>(K), kThreads, 0, stream>>>(partial, L * ntiles, numel, s.clip, divisor);
  check("clip_divisor");
  large_update<<<tiles, kThreads, 0, stream>>>(table, L, R, C, ntiles, rmean, divisor, s.lr, s.neg_wd_lr);
  check("large_update");
}

void launch_full(const long long* table, long long K, long long n, float* scratch, const KernelScalars& s,
                 void* stream_ptr) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const long long blocks = full_blocks(n);
  float* partial = scratch;
  float* divisor = partial + K * blocks;
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(K));
  full_stats<<<grid, kThreads, 0, stream>>>(table, n, s.beta, s.one_minus_beta, s.eps1, partial);
  check("full_stats");
  clip_divisor<<<static_cast<unsigned>(K), kThreads, 0, stream>>>(partial, blocks, n, s.clip, divisor);
  check("clip_divisor");
  full_update<<<grid, kThreads, 0, stream>>>(table, n, divisor, s.lr, s.neg_wd_lr);
  check("full_update");
}

}  // namespace prefdiff::optim::detail
