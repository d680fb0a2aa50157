// CUDA kernels of the rules that select rows on the exact distance matrix
// (squared_distances, distances.cu): krum_scores, krum (and multi_krum), bulyan, nnm,
// medoid. Selections (Krum scores, rankings, Bulyan's repeated Krum) run on the n x n
// matrix on the device; a last kernel averages the selected rows.
#include "../checks.h"
#include "../out.h"
#include "../core/distances.h"
#include "common.cuh"

namespace byzagg {
namespace cuda {
namespace {

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

at::Tensor krum_scores_cuda(const at::Tensor& G, int64_t f) {
  check_matrix(G, "krum_scores");
  check_krum_f("krum_scores", G.size(0), f);
  const at::cuda::CUDAGuard guard(G.device());
  const SquaredDistances dist = squared_distances(G.contiguous());
  return krum_scores_of(dist, neighbour_lists(dist), f);  // float64: the values the selection ranks
}

// The rules that return a d-vector write it into `result`, a contiguous (d,) tensor of G's
// dtype: the functional op and the out= op are made from them (csrc/out.h).
void krum_into(const at::Tensor& G, int64_t f, int64_t m, const at::Tensor& result) {
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
  row_set_means(X, order, 1, m, n, result);
}

void bulyan_into(const at::Tensor& G, int64_t f, const at::Tensor& result) {
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
  coordinate_rule_into(X, selected, 2 * f, core::CoordinateRule::kMeaMed, result);
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

void medoid_into(const at::Tensor& G, const at::Tensor& result) {
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
  at::Tensor row = result.view({1, G.size(1)});
  at::index_select_out(row, G, 0, order.narrow(0, 0, 1));
}

constexpr c10::DeviceType kCuda = c10::DeviceType::CUDA;

at::Tensor krum_cuda(const at::Tensor& G, int64_t f, int64_t m) {
  return new_vector(G, "krum", kCuda, [&](const at::Tensor& result) { krum_into(G, f, m, result); });
}
void krum_out_cuda(const at::Tensor& G, int64_t f, int64_t m, at::Tensor& out) {
  write_out(G, out, "krum", kCuda, [&](const at::Tensor& result) { krum_into(G, f, m, result); });
}
at::Tensor bulyan_cuda(const at::Tensor& G, int64_t f) {
  return new_vector(G, "bulyan", kCuda, [&](const at::Tensor& result) { bulyan_into(G, f, result); });
}
void bulyan_out_cuda(const at::Tensor& G, int64_t f, at::Tensor& out) {
  write_out(G, out, "bulyan", kCuda, [&](const at::Tensor& result) { bulyan_into(G, f, result); });
}
at::Tensor medoid_cuda(const at::Tensor& G) {
  return new_vector(G, "medoid", kCuda, [&](const at::Tensor& result) { medoid_into(G, result); });
}
void medoid_out_cuda(const at::Tensor& G, at::Tensor& out) {
  write_out(G, out, "medoid", kCuda, [&](const at::Tensor& result) { medoid_into(G, result); });
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(byzagg, CUDA, m) {
  m.impl("krum_scores", &cuda::krum_scores_cuda);
  m.impl("krum", &cuda::krum_cuda);
  m.impl("bulyan", &cuda::bulyan_cuda);
  m.impl("nnm", &cuda::nnm_cuda);
  m.impl("medoid", &cuda::medoid_cuda);
  m.impl("krum.out", &cuda::krum_out_cuda);
  m.impl("bulyan.out", &cuda::bulyan_out_cuda);
  m.impl("medoid.out", &cuda::medoid_out_cuda);
}

}  // namespace byzagg
