// CUDA kernels of the iterative rules, in float64 like the reference:
// - centered_clipping: per iteration one pass for the rows' distances to the center
//   (passes.cuh) and one for the update v <- v + (sum_i scale_i (g_i - v)) / n, rows added
//   in index order, non-finite rows left out (scale 0);
// - geometric_median: csrc/core/geometric_median.h's algorithm (the CPU's): the start at
//   the coordinate-wise median of the active rows (the coordinate kernel with a row mask),
//   then per iteration one fused pass over G (gm_step_kernel) and O(n) scalar steps in one
//   device thread (weights, line search, stop test), a device flag once converged (the
//   remaining launches return at once), a last pass with the data-point check. No host
//   synchronisation; the candidate row comes from the exact distance matrix.
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

__global__ void clipping_scale_kernel(const double* __restrict__ norms, const uint8_t* __restrict__ finite, int64_t n,
                                      double tau, double* __restrict__ scale) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) scale[i] = core::clipping_scale(finite[i] != 0, norms[i], tau);
}

// ---------------------------------------------------------------------------------------
// Geometric median (csrc/core/geometric_median.h has the algorithm and the scalar steps).

struct GeometricMedianState {
  double W;           // sum of the active rows' weights
  double beta_sum;    // sum of the Weiszfeld weights
  double lam;         // the last line search's step (0 before the first)
  double e;           // ||s||^2
  int64_t candidate;  // the data-point check's row, -1 when no row is active
  int done;           // set once converged: the remaining iterations return at once
  int row_wins;       // the candidate row is the result
};

// One thread: W and the candidate row (from the exact squared distances).
__global__ void gm_setup_kernel(const double* __restrict__ D2, const uint8_t* __restrict__ active,
                                const double* __restrict__ w, int64_t n, GeometricMedianState* state) {
  double W = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (active[i]) W += w[i];
  state->W = W;
  state->beta_sum = 0.0;
  state->lam = 0.0;
  state->e = 0.0;
  state->done = 0;
  state->row_wins = 0;
  state->candidate = core::geometric_median_candidate_row(D2, n, active, w);
}

// One thread: the Weiszfeld weights at the current distances.
__global__ void gm_weights_kernel(const double* __restrict__ w, const double* __restrict__ dist,
                                  const uint8_t* __restrict__ active, int64_t n, double eps, double* __restrict__ beta,
                                  GeometricMedianState* state) {
  if (state->done) return;
  state->beta_sum = core::geometric_median_weights(w, dist, n, active, eps, beta);
}

// One pass block per CUDA block: z <- z + lam s; y = sum_i beta_i x_i (active rows, index
// order); s <- y / beta_sum - z; then per active row the block's sums of (x_i - z)^2 and
// (z - x_i) . s, and the block's ||s||^2.
template <typename scalar_t>
__global__ void gm_step_kernel(const scalar_t* __restrict__ X, int64_t n, int64_t d, core::PassBlocks blocks,
                               const uint8_t* __restrict__ active, const double* __restrict__ beta,
                               GeometricMedianState* state, double* __restrict__ z, double* __restrict__ s,
                               double* __restrict__ q_partials, double* __restrict__ b_partials,
                               double* __restrict__ e_partials) {
  if (state->done) return;
  __shared__ double shared[kThreads];
  const int64_t bl = blockIdx.x;
  const int64_t c0 = blocks.begin(bl), c1 = blocks.end(bl);
  const double lam = state->lam, beta_sum = state->beta_sum;
  double e = 0.0;
  for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
    const double zc = z[c] + lam * s[c];
    double y = 0.0;
    for (int64_t i = 0; i < n; ++i)
      if (active[i]) y += beta[i] * static_cast<double>(X[i * d + c]);
    const double sc = y / beta_sum - zc;
    z[c] = zc;
    s[c] = sc;
    e += sc * sc;
  }
  e = block_sum(e, shared);
  if (threadIdx.x == 0) e_partials[bl] = e;
  for (int64_t i = 0; i < n; ++i) {
    if (!active[i]) continue;
    double q = 0.0, b = 0.0;
    for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {  // this thread's own z[c], s[c]
      const double x = static_cast<double>(X[i * d + c]);
      const double diff = x - z[c];
      q += diff * diff;
      b += (z[c] - x) * s[c];
    }
    q = block_sum(q, shared);
    b = block_sum(b, shared);
    if (threadIdx.x == 0) {
      q_partials[bl * n + i] = q;
      b_partials[bl * n + i] = b;
    }
  }
}

// The last pass: z <- z + lam s; per active row the block's sums of (x_i - z)^2 and of
// (x_i - x_k)^2, k the candidate row.
template <typename scalar_t>
__global__ void gm_last_pass_kernel(const scalar_t* __restrict__ X, int64_t n, int64_t d, core::PassBlocks blocks,
                                    const uint8_t* __restrict__ active, const GeometricMedianState* state,
                                    double* __restrict__ z, const double* __restrict__ s,
                                    double* __restrict__ q_partials, double* __restrict__ r_partials) {
  const int64_t k = state->candidate;
  if (k < 0) return;
  __shared__ double shared[kThreads];
  const int64_t bl = blockIdx.x;
  const int64_t c0 = blocks.begin(bl), c1 = blocks.end(bl);
  const double lam = state->lam;
  for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) z[c] = z[c] + lam * s[c];
  for (int64_t i = 0; i < n; ++i) {
    if (!active[i]) continue;
    double q = 0.0, r = 0.0;
    for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
      const double x = static_cast<double>(X[i * d + c]);
      const double to_z = x - z[c];
      const double to_row = x - static_cast<double>(X[k * d + c]);
      q += to_z * to_z;
      r += to_row * to_row;
    }
    q = block_sum(q, shared);
    r = block_sum(r, shared);
    if (threadIdx.x == 0) {
      q_partials[bl * n + i] = q;
      r_partials[bl * n + i] = r;
    }
  }
}

// One block: per active row the partials added in block order (q, b; the block's ||s||^2
// too when `e_partials` is given).
__global__ void gm_reduce_kernel(const double* __restrict__ q_partials, const double* __restrict__ b_partials,
                                 const double* __restrict__ e_partials, const uint8_t* __restrict__ active, int64_t n,
                                 int64_t blocks, GeometricMedianState* state, bool skip_when_done,
                                 double* __restrict__ q, double* __restrict__ b) {
  if (skip_when_done && state->done) return;
  if (state->candidate < 0) return;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    q[i] = active[i] ? core::sum_in_block_order(q_partials, blocks, n, i) : 0.0;
    b[i] = active[i] ? core::sum_in_block_order(b_partials, blocks, n, i) : 0.0;
  }
  if (e_partials != nullptr && threadIdx.x == 0) state->e = core::sum_in_block_order(e_partials, blocks, 1, 0);
}

// One thread: the line search, the distances at the new point and the stop test.
__global__ void gm_line_search_kernel(const double* __restrict__ q, const double* __restrict__ b,
                                      const double* __restrict__ w, const uint8_t* __restrict__ active, int64_t n,
                                      double tol, double eps, double* __restrict__ dist, GeometricMedianState* state) {
  if (state->done) return;
  const double e = state->e;
  const double lam = core::geometric_median_line_search(q, b, e, w, n, active, dist);
  state->lam = lam;
  if (core::geometric_median_converged(lam, e, w, dist, n, active, state->W, tol, eps)) state->done = 1;
}

// One thread: the data-point check on the exact objectives.
__global__ void gm_choose_kernel(const double* __restrict__ q, const double* __restrict__ r,
                                 const double* __restrict__ w, const uint8_t* __restrict__ active, int64_t n,
                                 GeometricMedianState* state) {
  if (state->candidate < 0) return;
  double objective = 0.0, row_objective = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (active[i]) objective += w[i] * sqrt(q[i]), row_objective += w[i] * sqrt(r[i]);
  state->row_wins = core::geometric_median_row_wins(row_objective, objective) ? 1 : 0;
}

// The result: the candidate row when it wins, else z; all NaN when no row is active.
template <typename scalar_t>
__global__ void gm_result_kernel(const scalar_t* __restrict__ X, int64_t d, const double* __restrict__ z,
                                 const GeometricMedianState* state, scalar_t* __restrict__ out) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  const int64_t k = state->candidate;
  if (k < 0) {
    out[c] = static_cast<scalar_t>(quiet_nan<double>());
  } else if (state->row_wins) {
    out[c] = X[k * d + c];
  } else {
    out[c] = static_cast<scalar_t>(z[c]);
  }
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
    rows.run(X, v.data_ptr<double>(), RowSum::kSquared, /*root=*/true);
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
  const SquaredDistances dist2 = squared_distances(X);
  const at::Tensor active = at::logical_and(dist2.finite.to(at::kBool), w > 0).to(at::kByte).contiguous();
  // The start: the coordinate-wise median of the active rows, in G's dtype (as the
  // reference); all NaN when no row is active.
  const at::ScalarType acc = X.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor z = coordinate_rule(X, at::Tensor(), 0, core::CoordinateRule::kMedian, acc, active)
                     .to(X.scalar_type())
                     .to(at::kDouble)
                     .contiguous();
  if (max_iter <= 0) return z.to(X.scalar_type());
  at::Tensor state_bytes =
      at::empty({static_cast<int64_t>(sizeof(GeometricMedianState))}, X.options().dtype(at::kByte));
  auto* state = reinterpret_cast<GeometricMedianState*>(state_bytes.data_ptr<uint8_t>());
  gm_setup_kernel<<<1, 1, 0, current_stream()>>>(dist2.D2.data_ptr<double>(), active.data_ptr<uint8_t>(),
                                                 w.data_ptr<double>(), n, state);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const core::PassBlocks blocks = core::make_pass_blocks(n, d);
  at::Tensor s = at::zeros({d}, doubles);
  at::Tensor q_partials = at::zeros({blocks.count, n}, doubles);
  at::Tensor b_partials = at::zeros({blocks.count, n}, doubles);
  at::Tensor e_partials = at::empty({blocks.count}, doubles);
  at::Tensor q = at::empty({n}, doubles), b = at::empty({n}, doubles);
  at::Tensor beta = at::empty({n}, doubles);
  // Pass 0: the exact distances to the start.
  RowTotals start(X);
  start.run(X, z.data_ptr<double>(), RowSum::kSquared, /*root=*/true);
  at::Tensor dist = start.total;
  const unsigned pass_blocks = static_cast<unsigned>(blocks.count);
  at::Tensor out = at::empty({d}, X.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_geometric_median_cuda", [&] {
    const scalar_t* x = X.data_ptr<scalar_t>();
    for (int64_t t = 0; t < max_iter; ++t) {
      gm_weights_kernel<<<1, 1, 0, current_stream()>>>(w.data_ptr<double>(), dist.data_ptr<double>(),
                                                       active.data_ptr<uint8_t>(), n, eps, beta.data_ptr<double>(),
                                                       state);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gm_step_kernel<scalar_t><<<pass_blocks, kThreads, 0, current_stream()>>>(
          x, n, d, blocks, active.data_ptr<uint8_t>(), beta.data_ptr<double>(), state, z.data_ptr<double>(),
          s.data_ptr<double>(), q_partials.data_ptr<double>(), b_partials.data_ptr<double>(),
          e_partials.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gm_reduce_kernel<<<1, kThreads, 0, current_stream()>>>(
          q_partials.data_ptr<double>(), b_partials.data_ptr<double>(), e_partials.data_ptr<double>(),
          active.data_ptr<uint8_t>(), n, blocks.count, state, /*skip_when_done=*/true, q.data_ptr<double>(),
          b.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gm_line_search_kernel<<<1, 1, 0, current_stream()>>>(q.data_ptr<double>(), b.data_ptr<double>(),
                                                           w.data_ptr<double>(), active.data_ptr<uint8_t>(), n, tol,
                                                           eps, dist.data_ptr<double>(), state);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    // The last pass (z <- z + lam s) with the exact objectives of z and of the candidate row.
    gm_last_pass_kernel<scalar_t><<<pass_blocks, kThreads, 0, current_stream()>>>(
        x, n, d, blocks, active.data_ptr<uint8_t>(), state, z.data_ptr<double>(), s.data_ptr<double>(),
        q_partials.data_ptr<double>(), b_partials.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gm_reduce_kernel<<<1, kThreads, 0, current_stream()>>>(
        q_partials.data_ptr<double>(), b_partials.data_ptr<double>(), nullptr, active.data_ptr<uint8_t>(), n,
        blocks.count, state, /*skip_when_done=*/false, q.data_ptr<double>(), b.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gm_choose_kernel<<<1, 1, 0, current_stream()>>>(q.data_ptr<double>(), b.data_ptr<double>(), w.data_ptr<double>(),
                                                    active.data_ptr<uint8_t>(), n, state);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gm_result_kernel<scalar_t><<<static_cast<unsigned>(blocks_for(d)), kThreads, 0, current_stream()>>>(
        x, d, z.data_ptr<double>(), state, out.data_ptr<scalar_t>());
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
