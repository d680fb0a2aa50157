// Passes over the coordinates of G that also reduce over them (csrc/core/passes.h): per
// fixed block of coordinates and per row, a sum in double, tree-summed in a fixed order
// inside the CUDA block; then, per row, the block partials added in block order. Used by
// centered clipping, the geometric median and BrSGD.
#pragma once

#include "../core/passes.h"
#include "common.cuh"

namespace byzagg {
namespace cuda {
namespace {  // each translation unit that includes this header gets its own kernels

enum class RowSum : int {
  kSquared = 0,   // sum of (x - center)^2
  kAbsolute = 1,  // sum of |x - center|
};

// Per pass block b and row i: sums[b * n + i] = sum over the block of (x - center)^2 or
// |x - center| (center null: 0), probes[b * n + i] = sum of x * 0 (NaN when the row has a
// non-finite value in the block).
template <typename scalar_t>
__global__ void row_partials_kernel(const scalar_t* __restrict__ X, int64_t n, int64_t d, core::PassBlocks blocks,
                                    const double* __restrict__ center, RowSum kind, double* __restrict__ sums,
                                    double* __restrict__ probes) {
  __shared__ double shared[kThreads];
  const int64_t b = blockIdx.x;
  const int64_t c0 = blocks.begin(b), c1 = blocks.end(b);
  for (int64_t i = 0; i < n; ++i) {
    const scalar_t* row = X + i * d;
    double sum = 0.0, probe = 0.0;
    for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
      const double x = static_cast<double>(row[c]);
      const double diff = center == nullptr ? x : x - center[c];
      sum += kind == RowSum::kSquared ? diff * diff : fabs(diff);
      probe += x * 0.0;
    }
    sum = block_sum(sum, shared);
    probe = block_sum(probe, shared);
    if (threadIdx.x == 0) {
      sums[b * n + i] = sum;
      probes[b * n + i] = probe;
    }
  }
}

// Per row: total[i] = the block partials added in block order (their square root when
// `root`), finite[i] = whether the row has only finite values.
__global__ void finish_rows_kernel(const double* __restrict__ sums, const double* __restrict__ probes, int64_t n,
                                   int64_t blocks, bool root, double* __restrict__ total,
                                   uint8_t* __restrict__ finite) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const double sum = core::sum_in_block_order(sums, blocks, n, i);
  const double probe = core::sum_in_block_order(probes, blocks, n, i);
  total[i] = root ? sqrt(sum) : sum;
  finite[i] = probe == 0.0 ? 1 : 0;
}

// Row sums over all coordinates: per-row totals (n,) double and finite flags (n,) uint8.
struct RowTotals {
  core::PassBlocks blocks;
  at::Tensor sums, probes;  // blocks x n partials
  at::Tensor total;         // (n,) double
  at::Tensor finite;        // (n,) uint8

  RowTotals(const at::Tensor& X) : blocks(core::make_pass_blocks(X.size(0), X.size(1))) {
    const int64_t n = X.size(0);
    const auto doubles = X.options().dtype(at::kDouble);
    sums = at::empty({blocks.count, n}, doubles);
    probes = at::empty({blocks.count, n}, doubles);
    total = at::empty({n}, doubles);
    finite = at::empty({n}, X.options().dtype(at::kByte));
  }

  // One pass over X: total[i] = sum_c (x_ic - center_c)^2 (sqrt'ed when root) or
  // sum_c |x_ic - center_c|; center may be null (zero).
  void run(const at::Tensor& X, const double* center, RowSum kind, bool root) {
    const int64_t n = X.size(0), d = X.size(1);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_row_partials_cuda", [&] {
      row_partials_kernel<scalar_t><<<static_cast<unsigned>(blocks.count), kThreads, 0, current_stream()>>>(
          X.data_ptr<scalar_t>(), n, d, blocks, center, kind, sums.data_ptr<double>(), probes.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    finish_rows_kernel<<<static_cast<unsigned>(blocks_for(n)), kThreads, 0, current_stream()>>>(
        sums.data_ptr<double>(), probes.data_ptr<double>(), n, blocks.count, root, total.data_ptr<double>(),
        finite.data_ptr<uint8_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace
}  // namespace cuda
}  // namespace byzagg
