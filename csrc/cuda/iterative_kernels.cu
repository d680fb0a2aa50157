// CUDA kernels of the iterative rules, in float64 like the reference:
// - centered_clipping: per iteration one pass for the rows' distances to the center
//   (passes.cuh) and one for the update v <- v + (sum_i scale_i (g_i - v)) / n, rows added
//   in index order, non-finite rows left out (scale 0);
// - geometric_median: the exact distance matrix (distance_kernels.cu), the iteration on
//   the coefficients of the iterate (csrc/core/geometric_median.h, the CPU's code) in one
//   device thread (O(iterations x n^2) sequential work: fine for tens to hundreds of rows,
//   slow for thousands), then one pass over G for the result. No host synchronisation.
#include <c10/util/Optional.h>

#include "../core/geometric_median.h"
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

// One thread: the coefficients' iteration of csrc/core/geometric_median.h on the exact
// squared distances; *choice = the row that wins the data-point check, -1 for the iterate,
// -2 when no row is active (the result is all NaN).
__global__ void geometric_median_coefficients_kernel(const double* __restrict__ D2, const uint8_t* __restrict__ active,
                                                     const double* __restrict__ w, int64_t n, double eps,
                                                     int64_t max_iter, double tol, double* __restrict__ coef,
                                                     double* __restrict__ scratch, int64_t* __restrict__ choice) {
  bool any = false;
  for (int64_t i = 0; i < n; ++i) any = any || active[i];
  if (!any) {
    *choice = -2;
    return;
  }
  *choice = core::geometric_median_coefficients(D2, n, active, w, eps, max_iter, tol, coef, scratch);
}

// z[c] = X[choice][c] (a data point wins), sum over active j of coef_j x_jc (j ascending,
// in double), or NaN (no active row).
template <typename scalar_t>
__global__ void geometric_median_result_kernel(const scalar_t* __restrict__ X, int64_t n, int64_t d,
                                               const uint8_t* __restrict__ active, const double* __restrict__ coef,
                                               const int64_t* __restrict__ choice, scalar_t* __restrict__ out) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  const int64_t k = *choice;
  if (k >= 0) {
    out[c] = X[k * d + c];
    return;
  }
  if (k == -2) {
    out[c] = static_cast<scalar_t>(quiet_nan<double>());
    return;
  }
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j)
    if (active[j]) sum += coef[j] * static_cast<double>(X[j * d + c]);
  out[c] = static_cast<scalar_t>(sum);
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
  const SquaredDistances dist = squared_distances(X);
  const at::Tensor active = at::logical_and(dist.finite.to(at::kBool), w > 0).to(at::kByte);
  at::Tensor coef = at::empty({n}, doubles);
  at::Tensor scratch = at::empty({core::geometric_median_scratch(n)}, doubles);
  at::Tensor choice = at::empty({1}, X.options().dtype(at::kLong));
  geometric_median_coefficients_kernel<<<1, 1, 0, current_stream()>>>(
      dist.D2.data_ptr<double>(), active.data_ptr<uint8_t>(), w.data_ptr<double>(), n, eps, max_iter, tol,
      coef.data_ptr<double>(), scratch.data_ptr<double>(), choice.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor out = at::empty({d}, X.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_geometric_median_cuda", [&] {
    geometric_median_result_kernel<scalar_t><<<static_cast<unsigned>(blocks_for(d)), kThreads, 0, current_stream()>>>(
        X.data_ptr<scalar_t>(), n, d, active.data_ptr<uint8_t>(), coef.data_ptr<double>(), choice.data_ptr<int64_t>(),
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(byzagg, CUDA, m) {
  m.impl("centered_clipping", &cuda::centered_clipping_cuda);
  m.impl("geometric_median", &cuda::geometric_median_cuda);
}

}  // namespace byzagg
