// CUDA kernels of the exact distance matrix: pairwise_distances, and squared_distances for
// the rules that select rows on it (selection.cu).
//
// Distances (csrc/core/distances.h arithmetic): a block computes the sums of a 16 x 16
// tile of row pairs (upper triangle of tiles) over a superblock of coordinates; the rows'
// values are staged in shared memory 64 coordinates at a time; each pair's chunk (8 KiB
// of a row) is summed in the chunk type (float, double for fp64) and added in double; a
// float chunk sum that may have overflowed or lost squares to underflow is summed again in
// double. Superblock partials are added in superblock order: no atomics, same bits each
// run.
#include "../checks.h"
#include "../core/distances.h"
#include "common.cuh"

namespace byzagg {
namespace cuda {
namespace {

constexpr int kTileRows = 16;                          // a block: 16 x 16 row pairs, one per thread
constexpr int kStage = 64;                             // coordinates staged in shared memory at a time
constexpr int64_t kTargetBlocks = 2048;                // enough blocks to fill a large GPU
constexpr int64_t kPartialBytes = int64_t(256) << 20;  // cap on superblocks x n x n doubles

struct Plan {
  int64_t n = 0, d = 0, chunk = 0, chunks = 0, tiles = 0, tile_pairs = 0;
  int64_t superblocks = 0, chunks_per_superblock = 0;
};

Plan make_plan(int64_t n, int64_t d, int64_t element_bytes) {
  Plan plan;
  plan.n = n;
  plan.d = d;
  plan.chunk = core::kDistanceChunkBytes / element_bytes;
  plan.chunks = core::ceil_div(d, plan.chunk);
  plan.tiles = core::ceil_div<int64_t>(n, kTileRows);
  plan.tile_pairs = plan.tiles * (plan.tiles + 1) / 2;
  int64_t superblocks = core::ceil_div(kTargetBlocks, plan.tile_pairs);
  const int64_t cap = std::max<int64_t>(1, kPartialBytes / (n * n * int64_t(sizeof(double))));
  superblocks = std::max<int64_t>(1, std::min({superblocks, cap, plan.chunks}));
  plan.chunks_per_superblock = core::ceil_div(plan.chunks, superblocks);
  plan.superblocks = core::ceil_div(plan.chunks, plan.chunks_per_superblock);
  return plan;
}

template <typename scalar_t>
using chunk_t = at::opmath_type<scalar_t>;  // float for fp16/bf16/fp32, double for fp64

// Grid (tile_pairs, superblocks), kTileRows x kTileRows threads. partials[s][i][j], i <= j.
template <typename scalar_t>
__global__ void distance_tiles_kernel(const scalar_t* __restrict__ X, Plan plan, double* __restrict__ partials) {
  using T = chunk_t<scalar_t>;
  __shared__ T rows_a[kTileRows][kStage + 1];
  __shared__ T rows_b[kTileRows][kStage + 1];
  // Tile pair p in row-major order of the upper triangle of tiles.
  int64_t p = blockIdx.x, ti = 0;
  while (p >= plan.tiles - ti) {
    p -= plan.tiles - ti;
    ++ti;
  }
  const int64_t tj = ti + p;
  const int ty = threadIdx.y, tx = threadIdx.x;
  const int64_t i = ti * kTileRows + ty, j = tj * kTileRows + tx;
  const int64_t n = plan.n, d = plan.d;
  const int flat = ty * kTileRows + tx;
  const int64_t s = blockIdx.y;
  const int64_t first_chunk = s * plan.chunks_per_superblock;
  const int64_t last_chunk = std::min(first_chunk + plan.chunks_per_superblock, plan.chunks);
  double total = 0.0;
  for (int64_t chunk = first_chunk; chunk < last_chunk; ++chunk) {
    const int64_t c0 = chunk * plan.chunk;
    const int64_t c1 = std::min(c0 + plan.chunk, d);
    T sum = T(0);
    T largest = T(0);  // the largest |difference|: zero means the chunk's sum is exactly zero
    for (int64_t k0 = c0; k0 < c1; k0 += kStage) {
      // 256 threads stage 16 rows x 64 coordinates of each side, consecutive threads reading
      // consecutive coordinates.
      for (int e = flat; e < kTileRows * kStage; e += kTileRows * kTileRows) {
        const int row = e / kStage, col = e % kStage;
        const int64_t c = k0 + col;
        const int64_t ra = ti * kTileRows + row, rb = tj * kTileRows + row;
        rows_a[row][col] = (ra < n && c < c1) ? static_cast<T>(X[ra * d + c]) : T(0);
        rows_b[row][col] = (rb < n && c < c1) ? static_cast<T>(X[rb * d + c]) : T(0);
      }
      __syncthreads();
      const int width = static_cast<int>(std::min<int64_t>(kStage, c1 - k0));
      for (int k = 0; k < width; ++k) {
        const T diff = rows_a[ty][k] - rows_b[tx][k];
        sum += diff * diff;
        const T magnitude = diff < T(0) ? -diff : diff;
        largest = magnitude > largest ? magnitude : largest;
      }
      __syncthreads();
    }
    if (i < n && j < n && i <= j) {
      double partial = static_cast<double>(sum);
      const bool exact_zero = largest == T(0);
      if (sizeof(T) < sizeof(double) && i != j && !exact_zero && !core::float_partial_trusted(partial)) {
        partial = core::squared_sum_double(X + i * d + c0, X + j * d + c0, c1 - c0);
      }
      total += partial;
    }
  }
  if (i < n && j < n && i <= j) partials[(s * n + i) * n + j] = total;
}

// D2[i][j] (i <= j) = sum over superblocks in order; finite[i] from the diagonal (NaN for a
// row with a non-finite value).
__global__ void sum_superblocks_kernel(const double* __restrict__ partials, int64_t n, int64_t superblocks,
                                       double* __restrict__ D2, uint8_t* __restrict__ finite) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= n * n) return;
  const int64_t i = e / n, j = e % n;
  if (i > j) return;
  double sum = 0.0;
  for (int64_t s = 0; s < superblocks; ++s) sum += partials[(s * n + i) * n + j];
  D2[i * n + j] = sum;
  if (i == j) finite[i] = sum == sum ? 1 : 0;
}

// Symmetric, +inf for pairs with a non-finite row, zero diagonal.
__global__ void finish_distances_kernel(double* __restrict__ D2, const uint8_t* __restrict__ finite, int64_t n) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= n * n) return;
  const int64_t i = e / n, j = e % n;
  if (i == j) {
    D2[e] = 0.0;
    return;
  }
  // The thread of (j, i) may read this entry before or after it is written here: either way
  // it reads the sum, or the value this thread derives from it, and derives the same.
  const double upper = D2[std::min(i, j) * n + std::max(i, j)];
  D2[e] = (finite[i] && finite[j]) ? upper : positive_infinity<double>();
}

__global__ void sqrt_kernel(const double* __restrict__ D2, int64_t count, double* __restrict__ out) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e < count) out[e] = sqrt(D2[e]);
}

template <typename scalar_t>
void launch_distance_tiles(const at::Tensor& X, const Plan& plan, double* partials) {
  const dim3 grid(static_cast<unsigned>(plan.tile_pairs), static_cast<unsigned>(plan.superblocks));
  const dim3 block(kTileRows, kTileRows);
  distance_tiles_kernel<scalar_t><<<grid, block, 0, current_stream()>>>(X.data_ptr<scalar_t>(), plan, partials);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor pairwise_distances_cuda(const at::Tensor& G, bool squared) {
  check_matrix(G, "pairwise_distances");
  const at::cuda::CUDAGuard guard(G.device());
  const SquaredDistances dist = squared_distances(G.contiguous());
  if (squared) return dist.D2.to(G.scalar_type());
  at::Tensor D = at::empty_like(dist.D2);
  const int64_t count = D.numel();
  sqrt_kernel<<<static_cast<unsigned>(blocks_for(count)), kThreads, 0, current_stream()>>>(dist.D2.data_ptr<double>(),
                                                                                           count, D.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return D.to(G.scalar_type());
}

}  // namespace

SquaredDistances squared_distances(const at::Tensor& X) {
  TORCH_CHECK(X.is_contiguous(), "squared_distances: X must be contiguous");
  const int64_t n = X.size(0), d = X.size(1);
  SquaredDistances result;
  result.D2 = at::empty({n, n}, X.options().dtype(at::kDouble));
  result.finite = at::empty({n}, X.options().dtype(at::kByte));
  const Plan plan = make_plan(n, d, X.element_size());
  at::Tensor partials = at::empty({plan.superblocks, n, n}, X.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_squared_distances_cuda",
                                  [&] { launch_distance_tiles<scalar_t>(X, plan, partials.data_ptr<double>()); });
  const unsigned blocks = static_cast<unsigned>(blocks_for(n * n));
  sum_superblocks_kernel<<<blocks, kThreads, 0, current_stream()>>>(partials.data_ptr<double>(), n, plan.superblocks,
                                                                    result.D2.data_ptr<double>(),
                                                                    result.finite.data_ptr<uint8_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  finish_distances_kernel<<<blocks, kThreads, 0, current_stream()>>>(result.D2.data_ptr<double>(),
                                                                     result.finite.data_ptr<uint8_t>(), n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return result;
}

}  // namespace cuda

TORCH_LIBRARY_IMPL(byzagg, CUDA, m) { m.impl("pairwise_distances", &cuda::pairwise_distances_cuda); }

}  // namespace byzagg
