// CUDA kernels of the iterative rules, in float64 like the reference:
// - centered_clipping: per iteration one pass for the rows' distances to the center
//   (passes.cuh) and one for the update v <- v + (sum_i scale_i (g_i - v)) / n, rows added
//   in index order, non-finite rows left out (scale 0);
// - geometric_median: csrc/core/geometric_median.h's algorithm (the CPU's): a pass for the
//   finite rows, the start at the coordinate-wise median of the active rows (the coordinate
//   kernel with a row mask), pass 0 for the distances to it, then
//   per iteration one fused pass over G (gm_step_kernel) and O(n) scalar steps in one
//   device thread (candidate row, weights, line search, stop test), a device flag once
//   converged (the remaining launches return at once), and the data-point check on the row
//   nearest the last iterate (its squared distances in the last pass, or one more pass
//   after an earlier stop). No host synchronisation, no pairwise distances.
#include <c10/util/Optional.h>

#include "../core/geometric_median.h"
#include "../core/passes.h"
#include "../out.h"
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
  double W;              // sum of the active rows' weights
  double beta_sum;       // sum of the Weiszfeld weights
  double lam;            // the last line search's step (0 before the first)
  double e;              // ||s||^2
  double change;         // the objective's change along the last step (the line search's)
  int64_t candidate;     // the data-point check's row, -1 when no row is active
  int done;              // set once converged: the remaining iterations return at once
  int row_wins;          // the candidate row is the result
  int have_r;            // the candidate's squared distances were summed in the last pass
  int median_of_active;  // the start is the median of the active rows (the first one is not finite)
};

// One thread: W and whether any row is active.
__global__ void gm_setup_kernel(const uint8_t* __restrict__ active, const double* __restrict__ w, int64_t n,
                                GeometricMedianState* state) {
  double W = 0.0;
  int64_t active_rows = 0;
  for (int64_t i = 0; i < n; ++i)
    if (active[i]) W += w[i], ++active_rows;
  state->W = W;
  state->beta_sum = 0.0;
  state->lam = 0.0;
  state->e = 0.0;
  state->change = 0.0;
  state->done = 0;
  state->row_wins = 0;
  state->have_r = 0;
  state->candidate = active_rows > 0 ? 0 : -1;
}

// One thread: the candidate row (the active row nearest the point the next pass evaluates)
// and the Weiszfeld weights at the current distances.
__global__ void gm_weights_kernel(const double* __restrict__ w, const double* __restrict__ dist,
                                  const uint8_t* __restrict__ active, int64_t n, double eps, double* __restrict__ beta,
                                  GeometricMedianState* state) {
  if (state->done || state->candidate < 0) return;
  state->candidate = core::geometric_median_nearest_row(dist, n, active);
  state->beta_sum = core::geometric_median_weights(w, dist, n, active, eps, beta);
}

// One pass block per CUDA block: z <- z + lam s; y = sum_i beta_i x_i (active rows, index
// order); s <- y / beta_sum - z; then per active row the block's sums of (x_i - z)^2 and
// (z - x_i) . s (and of (x_i - x_k)^2, k the candidate, when `candidate_pass`), and the
// block's ||s||^2.
template <typename scalar_t>
__global__ void gm_step_kernel(const scalar_t* __restrict__ X, int64_t n, int64_t d, core::PassBlocks blocks,
                               const uint8_t* __restrict__ active, const double* __restrict__ beta,
                               GeometricMedianState* state, bool candidate_pass, double* __restrict__ z,
                               double* __restrict__ s, double* __restrict__ q_partials, double* __restrict__ b_partials,
                               double* __restrict__ r_partials, double* __restrict__ e_partials) {
  if (state->done || state->candidate < 0) return;
  __shared__ double shared[kThreads];
  const int64_t bl = blockIdx.x;
  const int64_t c0 = blocks.begin(bl), c1 = blocks.end(bl);
  const double lam = state->lam, beta_sum = state->beta_sum;
  const scalar_t* xk = X + state->candidate * d;
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
    double q = 0.0, b = 0.0, r = 0.0;
    for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {  // this thread's own z[c], s[c]
      const double x = static_cast<double>(X[i * d + c]);
      const double diff = x - z[c];
      q += diff * diff;
      b += (z[c] - x) * s[c];
      if (candidate_pass) {
        const double to_row = x - static_cast<double>(xk[c]);
        r += to_row * to_row;
      }
    }
    q = block_sum(q, shared);
    b = block_sum(b, shared);
    if (candidate_pass) r = block_sum(r, shared);
    if (threadIdx.x == 0) {
      q_partials[bl * n + i] = q;
      b_partials[bl * n + i] = b;
      if (candidate_pass) r_partials[bl * n + i] = r;
    }
  }
}

// After a stop before max_iter: per active row the block's sums of (x_i - x_k)^2, k the
// candidate (the last pass summed them otherwise).
template <typename scalar_t>
__global__ void gm_candidate_pass_kernel(const scalar_t* __restrict__ X, int64_t n, int64_t d, core::PassBlocks blocks,
                                         const uint8_t* __restrict__ active, const GeometricMedianState* state,
                                         double* __restrict__ r_partials) {
  const int64_t k = state->candidate;
  if (k < 0 || state->have_r) return;
  __shared__ double shared[kThreads];
  const int64_t bl = blockIdx.x;
  const int64_t c0 = blocks.begin(bl), c1 = blocks.end(bl);
  for (int64_t i = 0; i < n; ++i) {
    if (!active[i]) continue;
    double r = 0.0;
    for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) {
      const double to_row = static_cast<double>(X[i * d + c]) - static_cast<double>(X[k * d + c]);
      r += to_row * to_row;
    }
    r = block_sum(r, shared);
    if (threadIdx.x == 0) r_partials[bl * n + i] = r;
  }
}

// One block: per active row the partials added in block order: q and b with ||s||^2 after
// an iteration's pass (nothing once converged), and r too after the candidate pass
// (`with_r`; have_r is set); with `only_r` (after the loop), r alone unless the last pass
// summed it.
__global__ void gm_reduce_kernel(const double* __restrict__ q_partials, const double* __restrict__ b_partials,
                                 const double* __restrict__ r_partials, const double* __restrict__ e_partials,
                                 const uint8_t* __restrict__ active, int64_t n, int64_t blocks,
                                 GeometricMedianState* state, bool with_r, bool only_r, double* __restrict__ q,
                                 double* __restrict__ b, double* __restrict__ r) {
  if (state->candidate < 0) return;
  if (only_r ? state->have_r != 0 : state->done != 0) return;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    if (!only_r) {
      q[i] = active[i] ? core::sum_in_block_order(q_partials, blocks, n, i) : 0.0;
      b[i] = active[i] ? core::sum_in_block_order(b_partials, blocks, n, i) : 0.0;
    }
    if (with_r || only_r) r[i] = active[i] ? core::sum_in_block_order(r_partials, blocks, n, i) : 0.0;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    if (!only_r) state->e = core::sum_in_block_order(e_partials, blocks, 1, 0);
    if (with_r || only_r) state->have_r = 1;
  }
}

// One thread: the line search, the distances at the new point and the stop test.
__global__ void gm_line_search_kernel(const double* __restrict__ q, const double* __restrict__ b,
                                      const double* __restrict__ w, const uint8_t* __restrict__ active, int64_t n,
                                      double tol, double eps, double* __restrict__ dist, GeometricMedianState* state) {
  if (state->done || state->candidate < 0) return;
  const double e = state->e;
  double change = 0.0;
  const double lam = core::geometric_median_line_search(q, b, e, w, n, active, dist, &change);
  state->lam = lam;
  state->change = change;
  if (core::geometric_median_converged(lam, e, w, dist, n, active, state->W, tol, eps)) state->done = 1;
}

// One thread: the data-point check: the candidate's exact objective against the objective
// at z + lam s (the last pass's exact objective at z plus the line search's change).
__global__ void gm_choose_kernel(const double* __restrict__ q, const double* __restrict__ r,
                                 const double* __restrict__ w, const uint8_t* __restrict__ active, int64_t n,
                                 GeometricMedianState* state) {
  if (state->candidate < 0) return;
  double objective = 0.0, row_objective = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (active[i]) objective += w[i] * sqrt(q[i]), row_objective += w[i] * sqrt(r[i]);
  state->row_wins = core::geometric_median_row_wins(row_objective, objective + state->change) ? 1 : 0;
}

// The result: the candidate row when it wins, else z + lam s; all NaN when no row is active.
template <typename scalar_t>
__global__ void gm_result_kernel(const scalar_t* __restrict__ X, int64_t d, const double* __restrict__ z,
                                 const double* __restrict__ s, const GeometricMedianState* state,
                                 scalar_t* __restrict__ out) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  const int64_t k = state->candidate;
  if (k < 0) {
    out[c] = static_cast<scalar_t>(quiet_nan<double>());
  } else if (state->row_wins) {
    out[c] = X[k * d + c];
  } else {
    out[c] = static_cast<scalar_t>(z[c] + state->lam * s[c]);
  }
}

void check_vector(const at::Tensor& t, const at::Tensor& G, int64_t size, const char* rule, const char* what) {
  TORCH_CHECK(t.numel() == size, rule, ": ", what, " must have ", size, " elements, got ", t.numel());
  TORCH_CHECK(t.device() == G.device(), rule, ": ", what, " must be on ", G.device(), ", got ", t.device());
}

// The iterative rules write their result into `result`, a contiguous (d,) tensor of G's
// dtype (centered clipping's iterate itself when that is float64): the functional op and
// the out= op are made from them (csrc/out.h).
void centered_clipping_into(const at::Tensor& G, double tau, int64_t iters, const c10::optional<at::Tensor>& center,
                            const at::Tensor& result) {
  check_matrix(G, "centered_clipping");
  TORCH_CHECK(tau > 0, "centered_clipping: tau must be > 0, got tau=", tau);
  TORCH_CHECK(iters >= 0, "centered_clipping: iters must be >= 0, got iters=", iters);
  const at::cuda::CUDAGuard guard(G.device());
  const at::Tensor X = G.contiguous();
  const int64_t n = X.size(0), d = X.size(1);
  const at::Tensor v = result.scalar_type() == at::kDouble ? result : at::empty({d}, X.options().dtype(at::kDouble));
  if (center.has_value()) {
    check_vector(*center, G, d, "centered_clipping", "center");
    v.copy_(center->reshape({d}));
  } else {
    v.zero_();
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
  if (!v.is_same(result)) result.copy_(v);
}

void geometric_median_into(const at::Tensor& G, const c10::optional<at::Tensor>& weights, double eps, int64_t max_iter,
                           double tol, const at::Tensor& result) {
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
  // The finite rows (a pass), the active rows; the start: the coordinate-wise median of the
  // active rows (the coordinate kernel with a row mask), in G's dtype (as the reference);
  // pass 0: the distances to it.
  RowTotals start(X);
  start.run(X, nullptr, RowSum::kSquared, /*root=*/false);
  const at::Tensor active = at::logical_and(start.finite.to(at::kBool), w > 0).to(at::kByte).contiguous();
  const at::ScalarType acc = X.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor z = coordinate_rule(X, at::Tensor(), 0, core::CoordinateRule::kMedian, acc, active)
                     .to(X.scalar_type())
                     .to(at::kDouble)
                     .contiguous();
  start.run(X, z.data_ptr<double>(), RowSum::kSquared, /*root=*/true);
  at::Tensor dist = start.total;
  at::Tensor state_bytes =
      at::empty({static_cast<int64_t>(sizeof(GeometricMedianState))}, X.options().dtype(at::kByte));
  auto* state = reinterpret_cast<GeometricMedianState*>(state_bytes.data_ptr<uint8_t>());
  gm_setup_kernel<<<1, 1, 0, current_stream()>>>(active.data_ptr<uint8_t>(), w.data_ptr<double>(), n, state);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (max_iter <= 0) {  // the start (all NaN when no row is active)
    result.copy_(at::where(active.any(), z, at::full({}, std::numeric_limits<double>::quiet_NaN(), doubles)));
    return;
  }
  const core::PassBlocks blocks = core::make_pass_blocks(n, d);
  at::Tensor s = at::zeros({d}, doubles);
  at::Tensor q_partials = at::zeros({blocks.count, n}, doubles);
  at::Tensor b_partials = at::zeros({blocks.count, n}, doubles);
  at::Tensor r_partials = at::zeros({blocks.count, n}, doubles);
  at::Tensor e_partials = at::empty({blocks.count}, doubles);
  at::Tensor q = at::zeros({n}, doubles), b = at::zeros({n}, doubles), r = at::zeros({n}, doubles);
  at::Tensor beta = at::empty({n}, doubles);
  const unsigned pass_blocks = static_cast<unsigned>(blocks.count);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_geometric_median_cuda", [&] {
    const scalar_t* x = X.data_ptr<scalar_t>();
    for (int64_t t = 0; t < max_iter; ++t) {
      // the candidate's squared distances in the pass that is the last by max_iter
      const bool candidate_pass = t == max_iter - 1;
      gm_weights_kernel<<<1, 1, 0, current_stream()>>>(w.data_ptr<double>(), dist.data_ptr<double>(),
                                                       active.data_ptr<uint8_t>(), n, eps, beta.data_ptr<double>(),
                                                       state);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gm_step_kernel<scalar_t><<<pass_blocks, kThreads, 0, current_stream()>>>(
          x, n, d, blocks, active.data_ptr<uint8_t>(), beta.data_ptr<double>(), state, candidate_pass,
          z.data_ptr<double>(), s.data_ptr<double>(), q_partials.data_ptr<double>(), b_partials.data_ptr<double>(),
          r_partials.data_ptr<double>(), e_partials.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gm_reduce_kernel<<<1, kThreads, 0, current_stream()>>>(
          q_partials.data_ptr<double>(), b_partials.data_ptr<double>(), r_partials.data_ptr<double>(),
          e_partials.data_ptr<double>(), active.data_ptr<uint8_t>(), n, blocks.count, state, candidate_pass,
          /*only_r=*/false, q.data_ptr<double>(), b.data_ptr<double>(), r.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gm_line_search_kernel<<<1, 1, 0, current_stream()>>>(q.data_ptr<double>(), b.data_ptr<double>(),
                                                           w.data_ptr<double>(), active.data_ptr<uint8_t>(), n, tol,
                                                           eps, dist.data_ptr<double>(), state);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    // After an earlier stop: the candidate's squared distances (returns at once otherwise).
    gm_candidate_pass_kernel<scalar_t><<<pass_blocks, kThreads, 0, current_stream()>>>(
        x, n, d, blocks, active.data_ptr<uint8_t>(), state, r_partials.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gm_reduce_kernel<<<1, kThreads, 0, current_stream()>>>(
        q_partials.data_ptr<double>(), b_partials.data_ptr<double>(), r_partials.data_ptr<double>(),
        e_partials.data_ptr<double>(), active.data_ptr<uint8_t>(), n, blocks.count, state, /*with_r=*/false,
        /*only_r=*/true, q.data_ptr<double>(), b.data_ptr<double>(), r.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gm_choose_kernel<<<1, 1, 0, current_stream()>>>(q.data_ptr<double>(), r.data_ptr<double>(), w.data_ptr<double>(),
                                                    active.data_ptr<uint8_t>(), n, state);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gm_result_kernel<scalar_t><<<static_cast<unsigned>(blocks_for(d)), kThreads, 0, current_stream()>>>(
        x, d, z.data_ptr<double>(), s.data_ptr<double>(), state, result.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

constexpr c10::DeviceType kCuda = c10::DeviceType::CUDA;

at::Tensor geometric_median_cuda(const at::Tensor& G, const c10::optional<at::Tensor>& weights, double eps,
                                 int64_t max_iter, double tol) {
  return new_vector(G, "geometric_median", kCuda,
                    [&](const at::Tensor& result) { geometric_median_into(G, weights, eps, max_iter, tol, result); });
}
void geometric_median_out_cuda(const at::Tensor& G, const c10::optional<at::Tensor>& weights, double eps,
                               int64_t max_iter, double tol, at::Tensor& out) {
  write_out(G, out, "geometric_median", kCuda,
            [&](const at::Tensor& result) { geometric_median_into(G, weights, eps, max_iter, tol, result); });
}
at::Tensor centered_clipping_cuda(const at::Tensor& G, double tau, int64_t iters,
                                  const c10::optional<at::Tensor>& center) {
  return new_vector(G, "centered_clipping", kCuda,
                    [&](const at::Tensor& result) { centered_clipping_into(G, tau, iters, center, result); });
}
void centered_clipping_out_cuda(const at::Tensor& G, double tau, int64_t iters, const c10::optional<at::Tensor>& center,
                                at::Tensor& out) {
  write_out(G, out, "centered_clipping", kCuda,
            [&](const at::Tensor& result) { centered_clipping_into(G, tau, iters, center, result); });
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(byzagg, CUDA, m) {
  m.impl("centered_clipping", &cuda::centered_clipping_cuda);
  m.impl("geometric_median", &cuda::geometric_median_cuda);
  m.impl("centered_clipping.out", &cuda::centered_clipping_out_cuda);
  m.impl("geometric_median.out", &cuda::geometric_median_out_cuda);
}

}  // namespace byzagg
