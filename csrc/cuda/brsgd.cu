// CUDA kernel of BrSGD (docs/api.md), in float64 like the reference:
// 1. votes: one thread per coordinate finds the mean of its finite values and the side
//    holding the majority (>= mean is the upper side, which wins ties); each row on that
//    side gets a point (warp ballots, then integer atomics: exact, so deterministic);
// 2. the coordinate-wise median in float64 (the shared coordinate kernel);
// 3. each row's l1 distance to the median (passes.cuh: block partials added in order);
// 4. one block picks C2 (the ceil(beta n) best scores, ties to the lower index) and C1
//    (finite rows with l1 <= 2 threshold) and lists their intersection;
// 5. the mean of the listed rows, or the median when the list is empty.
#include "../out.h"
#include "passes.cuh"

namespace byzagg {
namespace cuda {
namespace {

template <typename scalar_t>
__global__ void votes_kernel(const scalar_t* __restrict__ X, int64_t n, int64_t d,
                             unsigned long long* __restrict__ score) {
  extern __shared__ unsigned int block_score[];  // n counters
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) block_score[i] = 0;
  __syncthreads();
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool valid = c < d;
  double sum = 0.0;
  int64_t count = 0;
  if (valid) {
    for (int64_t i = 0; i < n; ++i) {
      const double x = static_cast<double>(X[i * d + c]);
      if (isfinite(x)) {
        sum += x;
        ++count;
      }
    }
  }
  const double mean = sum / static_cast<double>(count);
  int64_t upper = 0, lower = 0;
  if (valid) {
    for (int64_t i = 0; i < n; ++i) {
      const double x = static_cast<double>(X[i * d + c]);
      if (!isfinite(x)) continue;
      if (x >= mean) ++upper;
      if (x < mean) ++lower;
    }
  }
  const bool upper_wins = upper >= lower;
  const int lane = threadIdx.x % 32;
  for (int64_t i = 0; i < n; ++i) {  // every thread of the warp takes part in the ballot
    bool vote = false;
    if (valid) {
      const double x = static_cast<double>(X[i * d + c]);
      vote = isfinite(x) && (upper_wins ? x >= mean : x < mean);
    }
    const unsigned ballot = __ballot_sync(0xffffffffu, vote);
    if (lane == 0 && ballot != 0) atomicAdd(&block_score[i], static_cast<unsigned>(__popc(ballot)));
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    if (block_score[i] != 0) atomicAdd(&score[i], static_cast<unsigned long long>(block_score[i]));
}

// One block: chosen[0, count) = the rows in C1 and C2 in index order; count in *chosen_count.
__global__ void choose_kernel(const unsigned long long* __restrict__ score, const int64_t* __restrict__ order,
                              const double* __restrict__ l1, const uint8_t* __restrict__ finite, int64_t n,
                              int64_t c2_size, double threshold, uint8_t* __restrict__ in_c2,
                              int64_t* __restrict__ chosen, int64_t* __restrict__ chosen_count) {
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) in_c2[i] = 0;
  __syncthreads();
  for (int64_t k = threadIdx.x; k < c2_size; k += blockDim.x) in_c2[order[k]] = 1;
  __syncthreads();
  if (threadIdx.x != 0) return;
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i)
    if (in_c2[i] && finite[i] && l1[i] <= 2.0 * threshold) chosen[count++] = i;
  *chosen_count = count;
}

template <typename scalar_t>
__global__ void brsgd_result_kernel(const scalar_t* __restrict__ X, int64_t d, const int64_t* __restrict__ chosen,
                                    const int64_t* __restrict__ chosen_count, const double* __restrict__ median,
                                    scalar_t* __restrict__ out) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  const int64_t count = *chosen_count;
  if (count == 0) {
    out[c] = static_cast<scalar_t>(median[c]);
    return;
  }
  double sum = 0.0;
  for (int64_t k = 0; k < count; ++k) sum += static_cast<double>(X[chosen[k] * d + c]);
  out[c] = static_cast<scalar_t>(sum / static_cast<double>(count));
}

__global__ void negate_scores_kernel(const unsigned long long* __restrict__ score, int64_t n,
                                     double* __restrict__ keys) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) keys[i] = -static_cast<double>(score[i]);
}

// Writes the result into `result`, a contiguous (d,) tensor of G's dtype.
void brsgd_into(const at::Tensor& G, double beta, double threshold, const at::Tensor& result) {
  check_matrix(G, "brsgd");
  TORCH_CHECK(beta > 0 && beta <= 1, "brsgd requires 0 < beta <= 1, got beta=", beta);
  TORCH_CHECK(threshold >= 0, "brsgd: threshold must be >= 0, got threshold=", threshold);
  const at::cuda::CUDAGuard guard(G.device());
  const at::Tensor X = G.contiguous();
  const int64_t n = X.size(0), d = X.size(1);
  TORCH_CHECK(n <= 8192, "brsgd: the CUDA kernel takes at most 8192 rows, got n=", n);
  at::Tensor score = at::zeros({n}, X.options().dtype(at::kLong));
  auto* score_ptr = reinterpret_cast<unsigned long long*>(score.data_ptr<int64_t>());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_brsgd_votes_cuda", [&] {
    votes_kernel<scalar_t>
        <<<static_cast<unsigned>(blocks_for(d)), kThreads, n * sizeof(unsigned int), current_stream()>>>(
            X.data_ptr<scalar_t>(), n, d, score_ptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const at::Tensor median = coordinate_rule(X, at::Tensor(), 0, core::CoordinateRule::kMedian, at::kDouble);
  RowTotals rows(X);
  rows.run(X, median.data_ptr<double>(), RowSum::kAbsolute, /*root=*/false);
  const auto doubles = X.options().dtype(at::kDouble);
  at::Tensor keys = at::empty({n}, doubles);
  negate_scores_kernel<<<static_cast<unsigned>(blocks_for(n)), kThreads, 0, current_stream()>>>(
      score_ptr, n, keys.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor order = at::empty({n}, X.options().dtype(at::kLong));
  rank_rows(keys.data_ptr<double>(), nullptr, 1, n, false, order.data_ptr<int64_t>());
  const int64_t c2_size = std::min<int64_t>(n, static_cast<int64_t>(std::ceil(beta * static_cast<double>(n))));
  at::Tensor in_c2 = at::empty({n}, X.options().dtype(at::kByte));
  at::Tensor chosen = at::empty({n}, X.options().dtype(at::kLong));
  at::Tensor chosen_count = at::empty({1}, X.options().dtype(at::kLong));
  choose_kernel<<<1, kThreads, 0, current_stream()>>>(
      score_ptr, order.data_ptr<int64_t>(), rows.total.data_ptr<double>(), rows.finite.data_ptr<uint8_t>(), n, c2_size,
      threshold, in_c2.data_ptr<uint8_t>(), chosen.data_ptr<int64_t>(), chosen_count.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_brsgd_result_cuda", [&] {
    brsgd_result_kernel<scalar_t><<<static_cast<unsigned>(blocks_for(d)), kThreads, 0, current_stream()>>>(
        X.data_ptr<scalar_t>(), d, chosen.data_ptr<int64_t>(), chosen_count.data_ptr<int64_t>(),
        median.data_ptr<double>(), result.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// The functional op and its out= form (csrc/out.h).
at::Tensor brsgd_cuda(const at::Tensor& G, double beta, double threshold) {
  return new_vector(G, "brsgd", c10::DeviceType::CUDA,
                    [&](const at::Tensor& result) { brsgd_into(G, beta, threshold, result); });
}
void brsgd_out_cuda(const at::Tensor& G, double beta, double threshold, at::Tensor& out) {
  write_out(G, out, "brsgd", c10::DeviceType::CUDA,
            [&](const at::Tensor& result) { brsgd_into(G, beta, threshold, result); });
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(byzagg, CUDA, m) {
  m.impl("brsgd", &cuda::brsgd_cuda);
  m.impl("brsgd.out", &cuda::brsgd_out_cuda);
}

}  // namespace byzagg
