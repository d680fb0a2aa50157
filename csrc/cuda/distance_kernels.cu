// CUDA kernels of the exact distance matrix and the rules built on it: pairwise_distances,
// krum_scores, krum (and multi_krum), bulyan, nnm, medoid.
//
// Distances (csrc/core/distances.h arithmetic): a block computes the sums of a 16 x 16
// tile of row pairs (upper triangle of tiles) over a superblock of coordinates; the rows'
// values are staged in shared memory 64 coordinates at a time; each pair's chunk (8 KiB
// of a row) is summed in the chunk type (float, double for fp64) and added in double; a
// float chunk sum that may have overflowed or lost squares to underflow is summed again in
// double. Superblock partials are added in superblock order: no atomics, same bits each
// run. Selections (Krum scores, rankings, Bulyan's repeated Krum) run on the n x n matrix
// on the device; a last kernel averages the selected rows.
#include "../checks.h"
#include "../core/distances.h"
#include "common.cuh"

namespace byzagg {
namespace cuda {
namespace {

constexpr int kTileRows = 16;                       // a block: 16 x 16 row pairs, one per thread
constexpr int kStage = 64;                          // coordinates staged in shared memory at a time
constexpr int64_t kTargetBlocks = 2048;             // enough blocks to fill a large GPU
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

// scores[i] = sum of D2[i][lists[i][k]] for k < neighbours, in ascending order.
__global__ void krum_scores_kernel(const double* __restrict__ D2, const int64_t* __restrict__ lists, int64_t n,
                                   int64_t neighbours, double* __restrict__ scores) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t* list = lists + i * (n - 1);
  double sum = 0.0;
  for (int64_t k = 0; k < neighbours && k < n - 1; ++k) sum += D2[i * n + list[k]];
  scores[i] = sum;
}

// Bulyan's selection in one block (csrc/core/selection.h bulyan_select): theta rounds, each
// scoring the active rows with (remaining - f - 2) active neighbours and taking the best by
// (finite first, score, index).
__global__ void bulyan_select_kernel(const double* __restrict__ D2, const int64_t* __restrict__ lists,
                                     const uint8_t* __restrict__ finite, int64_t n, int64_t f, int64_t theta,
                                     uint8_t* __restrict__ active, double* __restrict__ scores,
                                     int64_t* __restrict__ selected) {
  __shared__ int64_t best_row[kThreads];
  const int t = threadIdx.x;
  for (int64_t i = t; i < n; i += blockDim.x) active[i] = 1;
  __syncthreads();
  for (int64_t round = 0; round < theta; ++round) {
    const int64_t neighbours = n - round - f - 2;
    int64_t best = -1;
    for (int64_t i = t; i < n; i += blockDim.x) {
      if (!active[i]) continue;
      const double sum = core::krum_score_within(D2, n, lists + i * (n - 1), active, neighbours, i);
      scores[i] = sum;
      if (best < 0 || core::ranks_before(finite[i] != 0, sum, i, finite[best] != 0, scores[best], best)) best = i;
    }
    best_row[t] = best;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
      if (t < half) {
        const int64_t a = best_row[t], b = best_row[t + half];
        if (a < 0 || (b >= 0 && core::ranks_before(finite[b] != 0, scores[b], b, finite[a] != 0, scores[a], a)))
          best_row[t] = b;
      }
      __syncthreads();
    }
    if (t == 0) {
      selected[round] = best_row[0];
      active[best_row[0]] = 0;
    }
    __syncthreads();
  }
}

// Medoid keys: the sum of Euclidean distances to the finite rows (column order) for a
// finite row, +inf for a non-finite row (ranked after every finite row anyway).
__global__ void medoid_keys_kernel(const double* __restrict__ D2, const uint8_t* __restrict__ finite, int64_t n,
                                   double* __restrict__ keys) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j)
    if (finite[j]) sum += sqrt(D2[i * n + j]);
  keys[i] = finite[i] ? sum : positive_infinity<double>();
}

template <typename scalar_t>
void launch_distance_tiles(const at::Tensor& X, const Plan& plan, double* partials) {
  const dim3 grid(static_cast<unsigned>(plan.tile_pairs), static_cast<unsigned>(plan.superblocks));
  const dim3 block(kTileRows, kTileRows);
  distance_tiles_kernel<scalar_t><<<grid, block, 0, current_stream()>>>(X.data_ptr<scalar_t>(), plan, partials);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Each row's other rows in ascending order of (distance, index): (n, n - 1) int64.
at::Tensor neighbour_lists(const SquaredDistances& dist) {
  const int64_t n = dist.D2.size(0);
  at::Tensor lists = at::empty({n, std::max<int64_t>(n - 1, 1)}, dist.D2.options().dtype(at::kLong));
  if (n > 1) rank_rows(dist.D2.data_ptr<double>(), nullptr, n, n, /*skip_self=*/true, lists.data_ptr<int64_t>());
  return lists;
}

at::Tensor krum_scores_of(const SquaredDistances& dist, const at::Tensor& lists, int64_t f) {
  const int64_t n = dist.D2.size(0);
  at::Tensor scores = at::empty({n}, dist.D2.options());
  krum_scores_kernel<<<static_cast<unsigned>(blocks_for(n)), kThreads, 0, current_stream()>>>(
      dist.D2.data_ptr<double>(), lists.data_ptr<int64_t>(), n, n - f - 2, scores.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return scores;
}

at::Tensor pairwise_distances_cuda(const at::Tensor& G, bool squared) {
  check_matrix(G, "pairwise_distances");
  const at::cuda::CUDAGuard guard(G.device());
  const SquaredDistances dist = squared_distances(G.contiguous());
  if (squared) return dist.D2.to(G.scalar_type());
  at::Tensor D = at::empty_like(dist.D2);
  const int64_t count = D.numel();
  sqrt_kernel<<<static_cast<unsigned>(blocks_for(count)), kThreads, 0, current_stream()>>>(
      dist.D2.data_ptr<double>(), count, D.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return D.to(G.scalar_type());
}

at::Tensor krum_scores_cuda(const at::Tensor& G, int64_t f) {
  check_matrix(G, "krum_scores");
  check_krum_f("krum_scores", G.size(0), f);
  const at::cuda::CUDAGuard guard(G.device());
  const SquaredDistances dist = squared_distances(G.contiguous());
  return krum_scores_of(dist, neighbour_lists(dist), f);  // float64: the values the selection ranks
}

at::Tensor krum_cuda(const at::Tensor& G, int64_t f, int64_t m) {
  check_matrix(G, "krum");
  const int64_t n = G.size(0);
  check_krum_f("krum", n, f);
  check_krum_m(n, f, m);
  const at::cuda::CUDAGuard guard(G.device());
  const at::Tensor X = G.contiguous();
  const SquaredDistances dist = squared_distances(X);
  const at::Tensor scores = krum_scores_of(dist, neighbour_lists(dist), f);
  at::Tensor order = at::empty({n}, scores.options().dtype(at::kLong));
  rank_rows(scores.data_ptr<double>(), dist.finite.data_ptr<uint8_t>(), 1, n, false, order.data_ptr<int64_t>());
  return row_set_means(X, order, 1, m, n).reshape({X.size(1)});
}

at::Tensor bulyan_cuda(const at::Tensor& G, int64_t f) {
  check_matrix(G, "bulyan");
  const int64_t n = G.size(0);
  check_bulyan_f(n, f);
  const at::cuda::CUDAGuard guard(G.device());
  const at::Tensor X = G.contiguous();
  const SquaredDistances dist = squared_distances(X);
  const at::Tensor lists = neighbour_lists(dist);
  const int64_t theta = n - 2 * f;
  at::Tensor active = at::empty({n}, dist.finite.options());
  at::Tensor scores = at::empty({n}, dist.D2.options());
  at::Tensor selected = at::empty({theta}, dist.D2.options().dtype(at::kLong));
  bulyan_select_kernel<<<1, kThreads, 0, current_stream()>>>(
      dist.D2.data_ptr<double>(), lists.data_ptr<int64_t>(), dist.finite.data_ptr<uint8_t>(), n, f, theta,
      active.data_ptr<uint8_t>(), scores.data_ptr<double>(), selected.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // MeaMed over the theta selected rows with f' = 2f keeps the beta = theta - 2f values
  // nearest their median: Bulyan's last step.
  const at::ScalarType acc = X.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return coordinate_rule(X, selected, 2 * f, core::CoordinateRule::kMeaMed, acc).to(X.scalar_type());
}

at::Tensor nnm_cuda(const at::Tensor& G, int64_t f) {
  check_matrix(G, "nnm");
  const int64_t n = G.size(0);
  check_n_above_2f("nnm", n, f);
  const at::cuda::CUDAGuard guard(G.device());
  const at::Tensor X = G.contiguous();
  const SquaredDistances dist = squared_distances(X);
  at::Tensor order = at::empty({n, n}, dist.D2.options().dtype(at::kLong));
  rank_rows(dist.D2.data_ptr<double>(), dist.finite.data_ptr<uint8_t>(), n, n, false, order.data_ptr<int64_t>());
  return row_set_means(X, order, n, n - f, n);
}

at::Tensor medoid_cuda(const at::Tensor& G) {
  check_matrix(G, "medoid");
  const int64_t n = G.size(0);
  const at::cuda::CUDAGuard guard(G.device());
  const SquaredDistances dist = squared_distances(G.contiguous());
  at::Tensor keys = at::empty({n}, dist.D2.options());
  medoid_keys_kernel<<<static_cast<unsigned>(blocks_for(n)), kThreads, 0, current_stream()>>>(
      dist.D2.data_ptr<double>(), dist.finite.data_ptr<uint8_t>(), n, keys.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor order = at::empty({n}, keys.options().dtype(at::kLong));
  rank_rows(keys.data_ptr<double>(), dist.finite.data_ptr<uint8_t>(), 1, n, false, order.data_ptr<int64_t>());
  return G.index_select(0, order.narrow(0, 0, 1)).reshape({G.size(1)});
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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_squared_distances_cuda", [&] {
    launch_distance_tiles<scalar_t>(X, plan, partials.data_ptr<double>());
  });
  const unsigned blocks = static_cast<unsigned>(blocks_for(n * n));
  sum_superblocks_kernel<<<blocks, kThreads, 0, current_stream()>>>(
      partials.data_ptr<double>(), n, plan.superblocks, result.D2.data_ptr<double>(),
      result.finite.data_ptr<uint8_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  finish_distances_kernel<<<blocks, kThreads, 0, current_stream()>>>(result.D2.data_ptr<double>(),
                                                                     result.finite.data_ptr<uint8_t>(), n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return result;
}

}  // namespace cuda

TORCH_LIBRARY_IMPL(byzagg, CUDA, m) {
  m.impl("pairwise_distances", &cuda::pairwise_distances_cuda);
  m.impl("krum_scores", &cuda::krum_scores_cuda);
  m.impl("krum", &cuda::krum_cuda);
  m.impl("bulyan", &cuda::bulyan_cuda);
  m.impl("nnm", &cuda::nnm_cuda);
  m.impl("medoid", &cuda::medoid_cuda);
}

}  // namespace byzagg
