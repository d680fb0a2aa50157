// CPU kernels of the iterative rules, in float64 like the reference
// (byzagg/_reference_impl.py, whose steps these follow):
// - geometric_median: smoothed Weiszfeld on the coefficients of the iterate. The iterate is
//   an affine combination z = sum_j c_j x_j of the rows of positive weight, and
//   ||z - x_i||^2 = (D c)_i - c^T D c / 2 with D the exact squared distances
//   (cpu::squared_distances): after D, every iteration (the Weiszfeld step, a line search
//   along it, the stopping test) costs O(m^2) for m rows, a data-point check compares the
//   rows' own objectives with the iterate's, and one last pass over G forms z.
// - centered_clipping: v <- v + mean_i clip(g_i - v, tau). Pass 0 finds the non-finite rows
//   and the distances to the start; each iteration is one fused pass per block of
//   coordinates: the update from the previous distances, then, while the block is in
//   cache, the distances to the new center (the last iteration needs none).
// The block kernels (iterative_passes.inc) have AVX-512 / AVX2 copies of the same bits. Sums
// over coordinates are stored per block and added in block order (core/passes.h): the same
// bits for any number of threads.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <c10/util/Optional.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../core/geometric_median.h"
#include "../core/passes.h"
#include "coordinate_network.h"
#include "distances.h"
#include "iterative_passes.h"

namespace byzagg {
namespace cpu {

// The baseline copy of the block kernels, also for float16 and bfloat16.
namespace generic {
namespace {
typedef double V8d __attribute__((vector_size(64)));
typedef float V8f __attribute__((vector_size(32)));
#define BYZAGG_PASS_INLINE inline
#pragma GCC diagnostic ignored "-Wpsabi"
inline double to_double(double x) { return x; }
inline double to_double(float x) { return static_cast<double>(x); }
inline double to_double(c10::Half x) { return static_cast<double>(static_cast<float>(x)); }
inline double to_double(c10::BFloat16 x) { return static_cast<double>(static_cast<float>(x)); }
template <typename T>
inline V8d load8(const T* p) {
  V8d v;
  for (int l = 0; l < 8; ++l) v[l] = to_double(p[l]);
  return v;
}
#include "iterative_passes.inc"
#undef BYZAGG_PASS_INLINE

}  // namespace

template <typename T>
PassKernels<T> pass_kernels() {
  return {&row_sums<T>, &clip_update<T>, &combine<T>, &row_l1<T>, &brsgd_scores<T>};
}
}  // namespace generic

template <typename T>
PassKernels<T> pass_kernels() {
  return generic::pass_kernels<T>();
}
template <>
PassKernels<float> pass_kernels<float>() {
  switch (network_isa()) {
    case NetworkIsa::kAvx512: return avx512::float_pass_kernels();
    case NetworkIsa::kAvx2: return avx2::float_pass_kernels();
    default: return generic::pass_kernels<float>();
  }
}
template <>
PassKernels<double> pass_kernels<double>() {
  switch (network_isa()) {
    case NetworkIsa::kAvx512: return avx512::double_pass_kernels();
    case NetworkIsa::kAvx2: return avx2::double_pass_kernels();
    default: return generic::pass_kernels<double>();
  }
}
template PassKernels<c10::Half> pass_kernels<c10::Half>();
template PassKernels<c10::BFloat16> pass_kernels<c10::BFloat16>();

namespace {

std::vector<double> weights_or_ones(const c10::optional<at::Tensor>& weights, int64_t n, const char* rule) {
  std::vector<double> w(static_cast<size_t>(n), 1.0);
  if (weights.has_value()) {
    const at::Tensor t = weights->reshape({-1}).to(at::kDouble).contiguous();
    TORCH_CHECK(t.numel() == n, rule, ": weights must have ", n, " elements, got ", t.numel());
    std::copy(t.data_ptr<double>(), t.data_ptr<double>() + n, w.begin());
  }
  return w;
}

// ---------------------------------------------------------------------------------------
// Geometric median: the coefficients' iteration is csrc/core/geometric_median.h.

at::Tensor geometric_median_cpu(const at::Tensor& G, const c10::optional<at::Tensor>& weights, double eps,
                                int64_t max_iter, double tol) {
  check_matrix_argument(G, "geometric_median");
  TORCH_CHECK(eps > 0, "geometric_median: eps must be > 0, got eps=", eps);
  TORCH_CHECK(max_iter >= 0, "geometric_median: max_iter must be >= 0, got max_iter=", max_iter);
  TORCH_CHECK(tol >= 0, "geometric_median: tol must be >= 0, got tol=", tol);
  const at::Tensor X = G.contiguous();
  const int64_t n = X.size(0), d = X.size(1);
  std::vector<double> w = weights_or_ones(weights, n, "geometric_median");
  for (double v : w) TORCH_CHECK(std::isfinite(v) && v >= 0, "geometric_median: weights must be finite and >= 0");
  const SquaredDistances sq = squared_distances(X);
  std::vector<uint8_t> use(static_cast<size_t>(n), 0);
  bool any = false;
  for (int64_t i = 0; i < n; ++i) {
    use[i] = sq.finite[i] && w[i] > 0;
    any = any || use[i];
  }
  if (!any) return at::full({d}, std::numeric_limits<double>::quiet_NaN(), X.options());
  std::vector<double> coef(static_cast<size_t>(n), 0.0);
  std::vector<double> scratch(static_cast<size_t>(core::geometric_median_scratch(n)));
  const int64_t k = core::geometric_median_coefficients(sq.D2.data(), n, use.data(), w.data(), eps, max_iter, tol,
                                                        coef.data(), scratch.data());
  if (k >= 0) return X[k].clone();
  at::Tensor z = at::empty({d}, X.options().dtype(at::kDouble));
  double* out = z.data_ptr<double>();
  const core::PassBlocks blocks = core::make_pass_blocks(n, d);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_geometric_median", [&] {
    const PassKernels<scalar_t> kernels = pass_kernels<scalar_t>();
    const scalar_t* data = X.data_ptr<scalar_t>();
    at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bl = begin; bl < end; ++bl)
        kernels.combine(data, n, d, use.data(), coef.data(), 1.0, blocks.begin(bl), blocks.end(bl), out);
    });
  });
  return z.to(X.scalar_type());
}

// ---------------------------------------------------------------------------------------
// Centered clipping.

template <typename scalar_t>
void centered_clipping_kernel(const scalar_t* X, int64_t n, int64_t d, double tau, int64_t iters, double* v) {
  if (iters <= 0) return;
  const PassKernels<scalar_t> kernels = pass_kernels<scalar_t>();
  const core::PassBlocks blocks = core::make_pass_blocks(n, d);
  std::vector<double> sums(static_cast<size_t>(blocks.count * n), 0.0);
  std::vector<double> probe(static_cast<size_t>(blocks.count * n), 0.0);
  std::vector<uint8_t> all(static_cast<size_t>(n), 1), finite(static_cast<size_t>(n), 1);
  std::vector<double> scale(static_cast<size_t>(n), 0.0);
  // Pass 0: finiteness and distances to the start.
  at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      kernels.row_sums(X, n, d, all.data(), v, blocks.begin(b), blocks.end(b), sums.data() + b * n,
                       probe.data() + b * n);
  });
  for (int64_t i = 0; i < n; ++i)
    finite[i] = core::sum_in_block_order(probe.data(), blocks.count, n, i) == 0.0;
  const double count = static_cast<double>(n);
  for (int64_t t = 1; t <= iters; ++t) {
    for (int64_t i = 0; i < n; ++i) {
      const double norm =
          finite[i] ? std::sqrt(core::sum_in_block_order(sums.data(), blocks.count, n, i)) : 0.0;
      scale[i] = core::clipping_scale(finite[i], norm, tau);
    }
    const bool distances = t < iters;
    at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> acc(static_cast<size_t>(blocks.columns));
      for (int64_t b = begin; b < end; ++b) {
        kernels.clip_update(X, n, d, finite.data(), scale.data(), count, v, blocks.begin(b), blocks.end(b),
                            acc.data());
        if (distances)
          kernels.row_sums(X, n, d, finite.data(), v, blocks.begin(b), blocks.end(b), sums.data() + b * n, nullptr);
      }
    });
  }
}

at::Tensor centered_clipping_cpu(const at::Tensor& G, double tau, int64_t iters, const c10::optional<at::Tensor>& center) {
  check_matrix_argument(G, "centered_clipping");
  TORCH_CHECK(tau > 0, "centered_clipping: tau must be > 0, got tau=", tau);
  TORCH_CHECK(iters >= 0, "centered_clipping: iters must be >= 0, got iters=", iters);
  const at::Tensor X = G.contiguous();
  const int64_t n = X.size(0), d = X.size(1);
  at::Tensor v;
  if (center.has_value()) {
    TORCH_CHECK(center->numel() == d, "centered_clipping: center must have ", d, " elements, got ", center->numel());
    v = center->reshape({-1}).to(at::kDouble).contiguous().clone();
  } else {
    v = at::zeros({d}, X.options().dtype(at::kDouble));
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_centered_clipping", [&] {
    centered_clipping_kernel<scalar_t>(X.data_ptr<scalar_t>(), n, d, tau, iters, v.data_ptr<double>());
  });
  return v.to(X.scalar_type());
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(byzagg, CPU, m) {
  m.impl("geometric_median", &cpu::geometric_median_cpu);
  m.impl("centered_clipping", &cpu::centered_clipping_cpu);
}

}  // namespace byzagg
