// Helpers shared by the CUDA kernels: argument checks, launch shapes, loads in the
// accumulation type, fixed-order block reductions and the device-side ranking of rows.
//
// Every kernel runs on the current stream of G's device, under a device guard; no rule
// copies anything to the host or waits for the device, so the ops can be captured in a
// CUDA graph. Reductions are done in a fixed order (no atomics on floating values), so the
// same input gives the same bits.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/types.h>

#include <cstdint>
#include <limits>

#include "../checks.h"
#include "../core/selection.h"
#include "../core/window.h"

namespace byzagg {
namespace cuda {

constexpr int kThreads = 256;

inline int64_t blocks_for(int64_t work, int64_t threads = kThreads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return blocks < 1 ? 1 : blocks;
}

// G is 2-D, floating, non-empty and on a CUDA device (csrc/checks.h).
inline void check_matrix(const at::Tensor& G, const char* rule) {
  byzagg::check_matrix(G, rule, c10::DeviceType::CUDA);
}

inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

template <typename T>
__device__ __forceinline__ T quiet_nan() {
  return std::numeric_limits<T>::quiet_NaN();
}

template <typename T>
__device__ __forceinline__ T positive_infinity() {
  return std::numeric_limits<T>::infinity();
}

// Sum of one value per thread over a block of blockDim.x threads (a power of two, at most
// 1024), in a fixed tree order; the result is valid in thread 0. `shared` holds blockDim.x
// values.
template <typename T>
__device__ T block_sum(T value, T* shared) {
  const int t = threadIdx.x;
  shared[t] = value;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half >>= 1) {
    if (t < half) shared[t] += shared[t + half];
    __syncthreads();
  }
  const T total = shared[0];
  __syncthreads();
  return total;
}

// order[r * width + rank] = j: for each ranking r, the columns j sorted by (finite[j]
// first, keys[r * n + j], NaN keys last, j), the order of core::rank_rows on the host. Each
// entry finds its place by counting the entries that rank before it (O(n) per entry, no
// sort). With skip_self, column r is left out of ranking r (width n - 1, else n). `finite`
// may be null (all rows finite).
void rank_rows(const double* keys, const uint8_t* finite, int64_t rankings, int64_t n, bool skip_self, int64_t* order);

// out[o, c] = mean over k < count of X[sets[o * stride + k], c] (the rows added in the order
// given, in the accumulation type), for o < outputs: out is (outputs, d) of X's dtype, or
// `into` when given (contiguous, outputs * d elements of X's dtype). X is contiguous; sets
// an int64 CUDA tensor.
at::Tensor row_set_means(const at::Tensor& X, const at::Tensor& sets, int64_t outputs, int64_t count, int64_t stride,
                         const at::Tensor& into = at::Tensor());

// Exact squared distances of the rows of the contiguous CUDA matrix X (csrc/core/
// distances.h): D2 (n, n) float64 with +inf for pairs with a non-finite row and a zero
// diagonal, and finite (n,) uint8.
struct SquaredDistances {
  at::Tensor D2;
  at::Tensor finite;
};
SquaredDistances squared_distances(const at::Tensor& X);

// Per coordinate of the rows `rows` (an int64 CUDA tensor of row indices; all rows when
// undefined) of the contiguous matrix X: the coordinate-wise rule with f (csrc/core/
// window.h), computed in acc_dtype (float or double) and returned in acc_dtype: in `into`
// when given (a contiguous (d,) tensor of acc_dtype). With a mask (uint8, one per row of
// X), rows whose mask is 0 are left out: the rule applies to the values of the other rows
// (NaN when none is left).
at::Tensor coordinate_rule(const at::Tensor& X, const at::Tensor& rows, int64_t f, core::CoordinateRule rule,
                           at::ScalarType acc_dtype, const at::Tensor& mask = at::Tensor(),
                           const at::Tensor& into = at::Tensor());

// The same in X's accumulation type, written into result, a contiguous (d,) tensor of X's
// dtype: straight from the kernel for float and double, through a float buffer for half
// precision.
void coordinate_rule_into(const at::Tensor& X, const at::Tensor& rows, int64_t f, core::CoordinateRule rule,
                          const at::Tensor& result);

}  // namespace cuda
}  // namespace byzagg
