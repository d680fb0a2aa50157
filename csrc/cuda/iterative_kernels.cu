// CUDA kernels of the iterative rules, in float64 like the reference:
// - centered_clipping: per iteration one pass for the rows' distances to the center
//   (passes.cuh) and one for the update v <- v + (sum_i scale_i (g_i - v)) / n, rows added
//   in index order, non-finite rows left out (scale 0);
// - geometric_median: smoothed Weiszfeld from the weighted mean; per iteration one pass for
//   the distances, a one-block kernel for the weights, one pass for the new center with its
//   step and norm per block, and a one-thread kernel that sets a device flag once the step
//   is small enough: the remaining launches return at once, and the host never waits.
#include <c10/util/Optional.h>

#include "../core/passes.h"
#include "passes.cuh"

namespace byzagg {
namespace cuda {
namespace {

// v[c] += sum over finite rows of scale_i (x_ic - v[c]), divided by n.
template <typename scalar_t>
__global__ void clipping_update_kernel(const scalar_t* __restrict__ X, int64_t n, int64_t d,
                                       const double* __restrict__ scale, const uint8_t* __restrict__ finite,
                                       double* __restrict__ v) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  const double center = v[c];
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (!finite[i]) continue;
    sum += scale[i] * (static_cast<double>(X[i * d + c]) - center);
  }
  v[c] = center + sum / static_cast<double>(n);
}

__global__ void clipping_scale_kernel(const double* __restrict__ norms, const uint8_t* __restrict__ finite,
                                      int64_t n, double tau, double* __restrict__ scale) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) scale[i] = core::clipping_scale(finite[i] != 0, norms[i], tau);
}

// One block: coef[i] = the row's weight (0 for a non-finite row), or its Weiszfeld weight
// w_i / max(distance_i, eps) when `distances` is given; coef_sum[0] = their sum in order.
__global__ void weiszfeld_coef_kernel(const double* __restrict__ weights, const uint8_t* __restrict__ finite,
                                      const double* __restrict__ distances, int64_t n, double eps,
                                      const int* __restrict__ done, double* __restrict__ coef,
                                      double* __restrict__ coef_sum) {
  if (done != nullptr && *done) return;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double w = finite[i] ? weights[i] : 0.0;
    coef[i] = (distances == nullptr || w == 0.0) ? w : core::weiszfeld_weight(w, distances[i], eps);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += coef[i];
    coef_sum[0] = sum;
  }
}

// Per pass block: z_next[c] = sum_i coef_i x_ic / coef_sum over the rows with a nonzero
// coefficient (in index order); when `z` is given, the block's sums of (z_next - z)^2 and
// z_next^2 go to step[b] and norm[b].
template <typename scalar_t>
__global__ void weiszfeld_center_kernel(const scalar_t* __restrict__ X, int64_t n, int64_t d, core::PassBlocks blocks,
                                        const double* __restrict__ coef, const double* __restrict__ coef_sum,
                                        const double* __restrict__ z, const int* __restrict__ done,
                                        double* __restrict__ z_next, double* __restrict__ step,
                                        double* __restrict__ norm) {
  if (done != nullptr && *done) return;
  __shared__ double shared[kThreads];
  const int64_t b = blockIdx.x;
  const double total = coef_sum[0];
  double step_sum = 0.0, norm_sum = 0.0;
  for (int64_t c = blocks.begin(b) + threadIdx.x; c < blocks.end(b); c += blockDim.x) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double a = coef[i];
      if (a != 0.0) sum += a * static_cast<double>(X[i * d + c]);
    }
    const double value = sum / total;
    z_next[c] = value;
    if (z != nullptr) {
      const double diff = value - z[c];
      step_sum += diff * diff;
      norm_sum += value * value;
    }
  }
  if (z == nullptr) return;
  step_sum = block_sum(step_sum, shared);
  norm_sum = block_sum(norm_sum, shared);
  if (threadIdx.x == 0) {
    step[b] = step_sum;
    norm[b] = norm_sum;
  }
}

__global__ void copy_unless_done_kernel(const double* __restrict__ from, int64_t count, const int* __restrict__ done,
                                        double* __restrict__ to) {
  if (*done) return;
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c < count) to[c] = from[c];
}

// Stops the iteration once the step is at most tol * max(||z||, eps) (the reference's test).
__global__ void weiszfeld_converged_kernel(const double* __restrict__ step, const double* __restrict__ norm,
                                           int64_t blocks, double tol, double eps, int* __restrict__ done) {
  if (*done) return;
  const double step_norm = sqrt(core::sum_in_block_order(step, blocks, 1, 0));
  const double z_norm = sqrt(core::sum_in_block_order(norm, blocks, 1, 0));
  if (step_norm <= tol * (z_norm > eps ? z_norm : eps)) *done = 1;
}

void check_vector(const at::Tensor& t, const at::Tensor& G, int64_t size, const char* rule, const char* what) {
  TORCH_CHECK(t.numel() == size, rule, ": ", what, " must have ", size, " elements, got ", t.numel());
  TORCH_CHECK(t.device() == G.device(), rule, ": ", what, " must be on ", G.device(), ", got ", t.device());
}

at::Tensor centered_clipping_cuda(const at::Tensor& G, double tau, int64_t iters,
                                  const c10::optional<at::Tensor>& center) {
  check_matrix(G, "centered_clipping");
  TORCH_CHECK(tau > 0, "centered_clipping: tau must be > 0, got tau=", tau);
  TORCH_CHECK(iters >= 0, "centered_clipping: iters must be >= 0, got iters=", iters);
  const at::cuda::CUDAGuard guard(G.device());
  const at::Tensor X = G.contiguous();
  const int64_t n = X.size(0), d = X.size(1);
  at::Tensor v;
  if (center.has_value()) {
    check_vector(*center, G, d, "centered_clipping", "center");
    v = center->reshape({d}).to(at::kDouble, /*non_blocking=*/false, /*copy=*/true).contiguous();
  } else {
    v = at::zeros({d}, X.options().dtype(at::kDouble));
  }
  RowTotals rows(X);
  at::Tensor scale = at::empty({n}, v.options());
  for (int64_t it = 0; it < iters; ++it) {
    rows.run(X, v.data_ptr<double>(), RowSum::kSquared, /*root=*/true, nullptr);
    clipping_scale_kernel<<<static_cast<unsigned>(blocks_for(n)), kThreads, 0, current_stream()>>>(
        rows.total.data_ptr<double>(), rows.finite.data_ptr<uint8_t>(), n, tau, scale.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_clipping_cuda", [&] {
      clipping_update_kernel<scalar_t><<<static_cast<unsigned>(blocks_for(d)), kThreads, 0, current_stream()>>>(
          X.data_ptr<scalar_t>(), n, d, scale.data_ptr<double>(), rows.finite.data_ptr<uint8_t>(),
          v.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return v.to(G.scalar_type());
}

at::Tensor geometric_median_cuda(const at::Tensor& G, const c10::optional<at::Tensor>& weights, double eps,
                                 int64_t max_iter, double tol) {
  check_matrix(G, "geometric_median");
  TORCH_CHECK(eps > 0, "geometric_median: eps must be > 0, got eps=", eps);
  TORCH_CHECK(max_iter >= 0, "geometric_median: max_iter must be >= 0, got max_iter=", max_iter);
  TORCH_CHECK(tol >= 0, "geometric_median: tol must be >= 0, got tol=", tol);
  const at::cuda::CUDAGuard guard(G.device());
  const at::Tensor X = G.contiguous();
  const int64_t n = X.size(0), d = X.size(1);
  const auto doubles = X.options().dtype(at::kDouble);
  at::Tensor w;
  if (weights.has_value()) {
    check_vector(*weights, G, n, "geometric_median", "weights");
    w = weights->reshape({n}).to(at::kDouble).contiguous();
  } else {
    w = at::ones({n}, doubles);
  }
  RowTotals rows(X);
  rows.run(X, nullptr, RowSum::kSquared, /*root=*/false, nullptr);  // which rows are finite
  at::Tensor coef = at::empty({n}, doubles);
  at::Tensor coef_sum = at::empty({1}, doubles);
  at::Tensor z = at::empty({d}, doubles);
  at::Tensor z_next = at::empty({d}, doubles);
  at::Tensor step = at::empty({rows.blocks.count}, doubles);
  at::Tensor norm = at::empty({rows.blocks.count}, doubles);
  at::Tensor done = at::zeros({1}, X.options().dtype(at::kInt));
  const unsigned pass_blocks = static_cast<unsigned>(rows.blocks.count);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_weiszfeld_cuda", [&] {
    const scalar_t* x = X.data_ptr<scalar_t>();
    // Start: the weighted mean of the finite rows (all NaN when no weight is positive).
    weiszfeld_coef_kernel<<<1, kThreads, 0, current_stream()>>>(w.data_ptr<double>(), rows.finite.data_ptr<uint8_t>(),
                                                                nullptr, n, eps, nullptr, coef.data_ptr<double>(),
                                                                coef_sum.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    weiszfeld_center_kernel<scalar_t><<<pass_blocks, kThreads, 0, current_stream()>>>(
        x, n, d, rows.blocks, coef.data_ptr<double>(), coef_sum.data_ptr<double>(), nullptr, nullptr,
        z.data_ptr<double>(), nullptr, nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int* flag = done.data_ptr<int>();
    RowTotals distances(X);
    for (int64_t it = 0; it < max_iter; ++it) {
      distances.run(X, z.data_ptr<double>(), RowSum::kSquared, /*root=*/true, flag);
      weiszfeld_coef_kernel<<<1, kThreads, 0, current_stream()>>>(
          w.data_ptr<double>(), rows.finite.data_ptr<uint8_t>(), distances.total.data_ptr<double>(), n, eps, flag,
          coef.data_ptr<double>(), coef_sum.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      weiszfeld_center_kernel<scalar_t><<<pass_blocks, kThreads, 0, current_stream()>>>(
          x, n, d, rows.blocks, coef.data_ptr<double>(), coef_sum.data_ptr<double>(), z.data_ptr<double>(), flag,
          z_next.data_ptr<double>(), step.data_ptr<double>(), norm.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      copy_unless_done_kernel<<<static_cast<unsigned>(blocks_for(d)), kThreads, 0, current_stream()>>>(
          z_next.data_ptr<double>(), d, flag, z.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      weiszfeld_converged_kernel<<<1, 1, 0, current_stream()>>>(step.data_ptr<double>(), norm.data_ptr<double>(),
                                                               rows.blocks.count, tol, eps, done.data_ptr<int>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return z.to(G.scalar_type());
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(byzagg, CUDA, m) {
  m.impl("centered_clipping", &cuda::centered_clipping_cuda);
  m.impl("geometric_median", &cuda::geometric_median_cuda);
}

}  // namespace byzagg
