// CPU kernels of the iterative rules, in float64 like the reference
// (byzagg/_reference_impl.py, whose steps these follow):
// - geometric_median: smoothed Weiszfeld with exact distances from the rows, from the
//   coordinate-wise median, a line search along each step and a data-point check on the
//   row nearest the last iterate (csrc/core/geometric_median.h). One fused pass over G per
//   iteration (gm_step): per block of coordinates, the iterate moves by the last step, the
//   Weiszfeld point is formed from the previous weights together with the rows' squared
//   distances to the iterate, and then, the block in cache, the rows' products with the new
//   step and their squared distances to the candidate row.
// - centered_clipping: v <- v + mean_i clip(g_i - v, tau). Pass 0 finds the non-finite rows
//   and the distances to the start; each iteration is one fused pass per block of
//   coordinates: the update from the previous distances, then, while the block is in
//   cache, the distances to the new center (the last iteration needs none).
// The block kernels (iterative_block.h) have AVX-512 / AVX2 copies of the same bits. Sums
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
#include <type_traits>
#include <vector>

#include "../checks.h"
#include "../out.h"
#include "../core/geometric_median.h"
#include "../core/passes.h"
#include "coordinate.h"
#include "coordinate_network.h"
#include "iterative_block.h"
#include "iterative_passes.h"

namespace byzagg {
namespace cpu {

// The baseline copy of the block kernels (iterative_block.h), also for float16 and bfloat16.
namespace generic {
template <typename T>
PassKernels<T> pass_kernels() {
  return block_kernels<T>();
}
}  // namespace generic

// The copy for the path cpu_isa() gives: the AVX-512 or AVX2 copy for float and double,
// the baseline copy otherwise and for float16 and bfloat16 (cpu_isa() is asked for every
// dtype, so that a wrong BYZAGG_CPU_ISA is an error for each).
template <typename T>
PassKernels<T> pass_kernels() {
  const Isa asked = cpu_isa();
  const Isa isa = std::is_same_v<T, float> || std::is_same_v<T, double> ? asked : Isa::kGeneric;
  record_isa(Family::kIterative, isa);
#if BYZAGG_X86_ISAS
  if constexpr (std::is_same_v<T, float>) {
    if (isa == Isa::kAvx512) return avx512::float_pass_kernels();
    if (isa == Isa::kAvx2) return avx2::float_pass_kernels();
  } else if constexpr (std::is_same_v<T, double>) {
    if (isa == Isa::kAvx512) return avx512::double_pass_kernels();
    if (isa == Isa::kAvx2) return avx2::double_pass_kernels();
  }
#endif
  return generic::pass_kernels<T>();
}
template PassKernels<float> pass_kernels<float>();
template PassKernels<double> pass_kernels<double>();
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
// Geometric median: the algorithm and the scalar steps between passes are in
// csrc/core/geometric_median.h. Host/device split, per call:
//   one pass per block of coordinates (median_start): z = coordinate-wise median of the rows
//   of positive weight (coordinate_rule_columns), then, the block in cache, row_sums with
//   the probe: q_i = ||z - x_i||^2 -> dist, the finite rows -> the active rows; if one of
//   those rows is not finite, the same pass again on the active rows;
//   per iteration: geometric_median_nearest_row and geometric_median_weights (host) ->
//   pass gm_step (z += lam s, y, q0, s, e, b; r in the iteration that is the last by
//   max_iter) -> block-order sums (host) -> geometric_median_line_search, _converged (host);
//   end: after an early stop, a row_sums pass for r; the objectives of the last candidate
//   row and of z + lam s -> geometric_median_row_wins; z += lam s unless the row wins. No
//   pairwise distances.

template <typename scalar_t>
class GeometricMedianPasses {
 public:
  GeometricMedianPasses(const scalar_t* X, int64_t n, int64_t d)
      : X_(X),
        n_(n),
        d_(d),
        kernels_(pass_kernels<scalar_t>()),
        blocks_(core::make_pass_blocks(n, d)),
        qp_(static_cast<size_t>(blocks_.count * n), 0.0),
        bp_(static_cast<size_t>(blocks_.count * n), 0.0),
        rp_(static_cast<size_t>(blocks_.count * n), 0.0),
        ep_(static_cast<size_t>(blocks_.count), 0.0) {}

  // The start and pass 0 in one pass over G: per block of coordinates, z = the
  // coordinate-wise median of `rows` (those with use[i]), rounded to G's dtype as the
  // reference's, then, the block in cache, q_i = ||z - x_i||^2 and finite[i] for those rows.
  void median_start(const std::vector<int64_t>& rows, const uint8_t* use, double* z, double* q, uint8_t* finite) {
    using acc_t = at::opmath_type<scalar_t>;
    std::vector<const scalar_t*> row_ptrs;
    for (int64_t i : rows) row_ptrs.push_back(X_ + i * d_);
    const int64_t m = static_cast<int64_t>(rows.size());
    at::parallel_for(0, blocks_.count, 1, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> median(static_cast<size_t>(blocks_.columns));
      for (int64_t bl = begin; bl < end; ++bl) {
        const int64_t c0 = blocks_.begin(bl), c1 = blocks_.end(bl);
        coordinate_rule_columns<scalar_t>(row_ptrs.data(), m, c0, c1, 0, core::CoordinateRule::kMedian, median.data());
        for (int64_t c = c0; c < c1; ++c) z[c] = static_cast<double>(static_cast<scalar_t>(median[c - c0]));
        kernels_.row_sums(X_, n_, d_, use, z, c0, c1, qp_.data() + bl * n_, bp_.data() + bl * n_);
      }
    });
    reduce(qp_, use, q);
    for (int64_t i = 0; i < n_; ++i)
      finite[i] = use[i] && core::sum_in_block_order(bp_.data(), blocks_.count, n_, i) == 0.0;
  }

  // The iterations from z (the start on entry, the result on return unless the row wins),
  // q the exact squared distances to it. Returns the last candidate row; *row_wins says
  // whether it is the result.
  int64_t iterate(const uint8_t* use, const double* w, double W, double eps, int64_t max_iter, double tol,
                  const double* q, double* z, bool* row_wins) {
    const int64_t n = n_;
    std::vector<double> s(static_cast<size_t>(d_), 0.0);
    std::vector<double> q0(static_cast<size_t>(n), 0.0), b(static_cast<size_t>(n), 0.0), r(static_cast<size_t>(n), 0.0);
    std::vector<double> dist(static_cast<size_t>(n), 0.0), beta(static_cast<size_t>(n), 0.0);
    for (int64_t i = 0; i < n; ++i) dist[i] = use[i] ? std::sqrt(q[i]) : 0.0;
    double lam = 0.0, change = 0.0;
    int64_t k = 0;
    bool have_r = false;
    for (int64_t t = 0; t < max_iter; ++t) {
      k = core::geometric_median_nearest_row(dist.data(), n, use);
      // the candidate's squared distances in the pass that is the last by max_iter (an
      // earlier stop takes one pass for them below)
      const scalar_t* xk = t == max_iter - 1 ? X_ + k * d_ : nullptr;
      const double beta_sum = core::geometric_median_weights(w, dist.data(), n, use, eps, beta.data());
      at::parallel_for(0, blocks_.count, 1, [&](int64_t begin, int64_t end) {
        std::vector<double> y(static_cast<size_t>(blocks_.columns));
        for (int64_t bl = begin; bl < end; ++bl)
          kernels_.gm_step(X_, n, d_, use, beta.data(), beta_sum, lam, z, s.data(), blocks_.begin(bl), blocks_.end(bl),
                           y.data(), qp_.data() + bl * n, bp_.data() + bl * n, ep_.data() + bl, xk,
                           rp_.data() + bl * n);
      });
      reduce(qp_, use, q0.data());
      reduce(bp_, use, b.data());
      if (xk) reduce(rp_, use, r.data()), have_r = true;
      const double e = core::sum_in_block_order(ep_.data(), blocks_.count, 1, 0);
      lam = core::geometric_median_line_search(q0.data(), b.data(), e, w, n, use, dist.data(), &change);
      if (core::geometric_median_converged(lam, e, w, dist.data(), n, use, W, tol, eps)) break;
    }
    if (!have_r) {  // stopped early: the candidate's squared distances, from its row in double
      std::vector<double> row(static_cast<size_t>(d_));
      at::parallel_for(0, d_, 1 << 14, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) row[c] = static_cast<double>(X_[k * d_ + c]);
      });
      at::parallel_for(0, blocks_.count, 1, [&](int64_t begin, int64_t end) {
        for (int64_t bl = begin; bl < end; ++bl)
          kernels_.row_sums(X_, n, d_, use, row.data(), blocks_.begin(bl), blocks_.end(bl), rp_.data() + bl * n,
                            nullptr);
      });
      reduce(rp_, use, r.data());
    }
    double objective = 0.0, row_objective = 0.0;
    for (int64_t i = 0; i < n; ++i)
      if (use[i]) objective += w[i] * std::sqrt(q0[i]), row_objective += w[i] * std::sqrt(r[i]);
    *row_wins = core::geometric_median_row_wins(row_objective, objective + change);
    if (!*row_wins) {
      at::parallel_for(0, d_, 1 << 14, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) z[c] = z[c] + lam * s[c];
      });
    }
    return k;
  }

 private:
  void reduce(const std::vector<double>& parts, const uint8_t* use, double* out) const {
    for (int64_t i = 0; i < n_; ++i)
      out[i] = use[i] ? core::sum_in_block_order(parts.data(), blocks_.count, n_, i) : 0.0;
  }

  const scalar_t* X_;
  int64_t n_, d_;
  PassKernels<scalar_t> kernels_;
  core::PassBlocks blocks_;
  std::vector<double> qp_, bp_, rp_, ep_;
};

// The iterative rules write their result into `result`, a contiguous (d,) tensor of G's
// dtype (the iterate itself when that is float64): the functional op and the out= op are
// made from them (csrc/out.h).
void geometric_median_into(const at::Tensor& G, const c10::optional<at::Tensor>& weights, double eps, int64_t max_iter,
                           double tol, const at::Tensor& result) {
  check_matrix(G, "geometric_median", c10::DeviceType::CPU);
  TORCH_CHECK(eps > 0, "geometric_median: eps must be > 0, got eps=", eps);
  TORCH_CHECK(max_iter >= 0, "geometric_median: max_iter must be >= 0, got max_iter=", max_iter);
  TORCH_CHECK(tol >= 0, "geometric_median: tol must be >= 0, got tol=", tol);
  const at::Tensor X = G.contiguous();
  const int64_t n = X.size(0), d = X.size(1);
  std::vector<double> w = weights_or_ones(weights, n, "geometric_median");
  for (double v : w) TORCH_CHECK(std::isfinite(v) && v >= 0, "geometric_median: weights must be finite and >= 0");
  std::vector<uint8_t> positive(static_cast<size_t>(n), 0), use(static_cast<size_t>(n), 0);
  std::vector<int64_t> positive_rows, rows;
  for (int64_t i = 0; i < n; ++i)
    if ((positive[i] = w[i] > 0)) positive_rows.push_back(i);
  if (positive_rows.empty()) {
    result.fill_(std::numeric_limits<double>::quiet_NaN());
    return;
  }
  // The start: the coordinate-wise median of the active rows (finite, positive weight), in
  // G's dtype (as the reference), computed with pass 0: on the rows of positive weight,
  // again on the active rows if some of them are not finite.
  at::Tensor z = result.scalar_type() == at::kDouble ? result : at::empty({d}, X.options().dtype(at::kDouble));
  int64_t k = -1;
  bool row_wins = false;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_geometric_median", [&] {
    GeometricMedianPasses<scalar_t> passes(X.data_ptr<scalar_t>(), n, d);
    std::vector<double> q(static_cast<size_t>(n), 0.0);
    passes.median_start(positive_rows, positive.data(), z.data_ptr<double>(), q.data(), use.data());
    double W = 0.0;
    for (int64_t i = 0; i < n; ++i)
      if (use[i]) rows.push_back(i), W += w[i];
    if (rows.empty()) return;
    if (rows.size() < positive_rows.size()) {
      std::vector<uint8_t> finite(static_cast<size_t>(n), 0);
      passes.median_start(rows, use.data(), z.data_ptr<double>(), q.data(), finite.data());
    }
    if (max_iter <= 0) return;
    k = passes.iterate(use.data(), w.data(), W, eps, max_iter, tol, q.data(), z.data_ptr<double>(), &row_wins);
  });
  if (rows.empty()) {
    result.fill_(std::numeric_limits<double>::quiet_NaN());
  } else if (row_wins) {
    result.copy_(X[k]);
  } else if (!z.is_same(result)) {
    result.copy_(z);
  }
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
  for (int64_t i = 0; i < n; ++i) finite[i] = core::sum_in_block_order(probe.data(), blocks.count, n, i) == 0.0;
  const double count = static_cast<double>(n);
  for (int64_t t = 1; t <= iters; ++t) {
    for (int64_t i = 0; i < n; ++i) {
      const double norm = finite[i] ? std::sqrt(core::sum_in_block_order(sums.data(), blocks.count, n, i)) : 0.0;
      scale[i] = core::clipping_scale(finite[i], norm, tau);
    }
    const bool distances = t < iters;
    at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> acc(static_cast<size_t>(blocks.columns));
      for (int64_t b = begin; b < end; ++b) {
        kernels.clip_update(X, n, d, finite.data(), scale.data(), count, v, blocks.begin(b), blocks.end(b), acc.data());
        if (distances)
          kernels.row_sums(X, n, d, finite.data(), v, blocks.begin(b), blocks.end(b), sums.data() + b * n, nullptr);
      }
    });
  }
}

void centered_clipping_into(const at::Tensor& G, double tau, int64_t iters, const c10::optional<at::Tensor>& center,
                            const at::Tensor& result) {
  check_matrix(G, "centered_clipping", c10::DeviceType::CPU);
  TORCH_CHECK(tau > 0, "centered_clipping: tau must be > 0, got tau=", tau);
  TORCH_CHECK(iters >= 0, "centered_clipping: iters must be >= 0, got iters=", iters);
  const at::Tensor X = G.contiguous();
  const int64_t n = X.size(0), d = X.size(1);
  // v, the iterate: result itself when G is float64.
  const at::Tensor v = result.scalar_type() == at::kDouble ? result : at::empty({d}, X.options().dtype(at::kDouble));
  if (center.has_value()) {
    TORCH_CHECK(center->numel() == d, "centered_clipping: center must have ", d, " elements, got ", center->numel());
    v.copy_(center->reshape({-1}));
  } else {
    v.zero_();
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_centered_clipping", [&] {
    centered_clipping_kernel<scalar_t>(X.data_ptr<scalar_t>(), n, d, tau, iters, v.data_ptr<double>());
  });
  if (!v.is_same(result)) result.copy_(v);
}

constexpr c10::DeviceType kCpu = c10::DeviceType::CPU;

at::Tensor geometric_median_cpu(const at::Tensor& G, const c10::optional<at::Tensor>& weights, double eps,
                                int64_t max_iter, double tol) {
  return new_vector(G, "geometric_median", kCpu,
                    [&](const at::Tensor& result) { geometric_median_into(G, weights, eps, max_iter, tol, result); });
}
void geometric_median_out_cpu(const at::Tensor& G, const c10::optional<at::Tensor>& weights, double eps,
                              int64_t max_iter, double tol, at::Tensor& out) {
  write_out(G, out, "geometric_median", kCpu,
            [&](const at::Tensor& result) { geometric_median_into(G, weights, eps, max_iter, tol, result); });
}
at::Tensor centered_clipping_cpu(const at::Tensor& G, double tau, int64_t iters,
                                 const c10::optional<at::Tensor>& center) {
  return new_vector(G, "centered_clipping", kCpu,
                    [&](const at::Tensor& result) { centered_clipping_into(G, tau, iters, center, result); });
}
void centered_clipping_out_cpu(const at::Tensor& G, double tau, int64_t iters, const c10::optional<at::Tensor>& center,
                               at::Tensor& out) {
  write_out(G, out, "centered_clipping", kCpu,
            [&](const at::Tensor& result) { centered_clipping_into(G, tau, iters, center, result); });
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(byzagg, CPU, m) {
  m.impl("geometric_median", &cpu::geometric_median_cpu);
  m.impl("centered_clipping", &cpu::centered_clipping_cpu);
  m.impl("geometric_median.out", &cpu::geometric_median_out_cpu);
  m.impl("centered_clipping.out", &cpu::centered_clipping_out_cpu);
}

}  // namespace byzagg
