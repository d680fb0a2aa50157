// CPU kernels of the iterative rules, in float64 like the reference:
// - geometric_median: smoothed Weiszfeld. Each iteration is one fused pass over G: per
//   block of coordinates, the new center from the previous pass's weights, then the
//   rows' squared distances to it (the next weights), the step and the center's norm.
// - centered_clipping: v <- v + mean_i clip(g_i - v, tau). Pass 0 finds the non-finite
//   rows and the distances to the start; each iteration is one fused pass (the update from
//   the previous distances, then the distances to the new center).
// Sums over coordinates are stored per block and added in block order (core/passes.h):
// the same bits for any number of threads.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <c10/util/Optional.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../core/passes.h"
#include "distances.h"

namespace byzagg {
namespace cpu {
namespace {

// Per-row state shared by the passes.
struct Rows {
  std::vector<uint8_t> active;   // rows that take part (positive weight and finite)
  std::vector<double> coef;      // their coefficient in the next center
};

// Per block of coordinates: per-row sums of squared distances to the center, and the
// block's sums of squared steps and squared center values.
struct Partials {
  int64_t n = 0;
  std::vector<double> row_sums;  // blocks x n
  std::vector<double> finite_probe;  // blocks x n: sum of x * 0, NaN for a non-finite value
  std::vector<double> step, norm;    // blocks

  Partials(int64_t rows, int64_t blocks)
      : n(rows),
        row_sums(static_cast<size_t>(rows * blocks), 0.0),
        finite_probe(static_cast<size_t>(rows * blocks), 0.0),
        step(static_cast<size_t>(blocks), 0.0),
        norm(static_cast<size_t>(blocks), 0.0) {}
};

// Squared distance of row x to the center z on [c0, c1), and x * 0 summed (finiteness).
template <typename scalar_t>
void row_to_center(const scalar_t* x, const double* z, int64_t c0, int64_t c1, double* sum, double* probe) {
  double s = 0.0, p = 0.0;
#pragma omp simd reduction(+ : s, p)
  for (int64_t c = c0; c < c1; ++c) {
    const double v = static_cast<double>(x[c]);
    const double diff = v - z[c];
    s += diff * diff;
    p += v * 0.0;
  }
  *sum = s;
  *probe = p;
}

// One Weiszfeld pass over the block [c0, c1): z <- sum_i coef_i x_i / coef_sum (when
// `update`), the step and norm of the new z, then each active row's squared distance to it
// (when `distances`).
template <typename scalar_t>
void weiszfeld_block(const scalar_t* X, int64_t n, int64_t d, const Rows& rows, double coef_sum, bool update,
                     bool distances, int64_t b, int64_t c0, int64_t c1, double* z, std::vector<double>& acc,
                     Partials& out) {
  if (update) {
    const int64_t width = c1 - c0;
    std::fill(acc.begin(), acc.begin() + width, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      if (!rows.active[i]) continue;
      const scalar_t* x = X + i * d + c0;
      const double a = rows.coef[i];
#pragma omp simd
      for (int64_t c = 0; c < width; ++c) acc[c] += a * static_cast<double>(x[c]);
    }
    double step = 0.0, norm = 0.0;
    for (int64_t c = 0; c < width; ++c) {
      const double next = acc[c] / coef_sum;
      const double moved = next - z[c0 + c];
      step += moved * moved;
      norm += next * next;
      z[c0 + c] = next;
    }
    out.step[b] = step;
    out.norm[b] = norm;
  }
  if (distances) {
    for (int64_t i = 0; i < n; ++i) {
      if (!rows.active[i]) continue;
      row_to_center(X + i * d, z, c0, c1, &out.row_sums[b * n + i], &out.finite_probe[b * n + i]);
    }
  }
}

template <typename scalar_t>
void run_pass(const scalar_t* X, int64_t n, int64_t d, const core::PassBlocks& blocks, const Rows& rows,
              double coef_sum, bool update, bool distances, double* z, Partials& out) {
  at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(static_cast<size_t>(blocks.columns));
    for (int64_t b = begin; b < end; ++b)
      weiszfeld_block(X, n, d, rows, coef_sum, update, distances, b, blocks.begin(b), blocks.end(b), z, acc, out);
  });
}

std::vector<double> weights_or_ones(const c10::optional<at::Tensor>& weights, int64_t n, const char* rule) {
  std::vector<double> w(static_cast<size_t>(n), 1.0);
  if (weights.has_value()) {
    const at::Tensor t = weights->reshape({-1}).to(at::kDouble).contiguous();
    TORCH_CHECK(t.numel() == n, rule, ": weights must have ", n, " elements, got ", t.numel());
    std::copy(t.data_ptr<double>(), t.data_ptr<double>() + n, w.begin());
  }
  return w;
}

template <typename scalar_t>
void geometric_median_kernel(const scalar_t* X, int64_t n, int64_t d, std::vector<double> w, double eps,
                             int64_t max_iter, double tol, double* z) {
  const core::PassBlocks blocks = core::make_pass_blocks(n, d);
  Partials partials(n, blocks.count);
  Rows rows;
  rows.active.assign(static_cast<size_t>(n), 0);
  // Start: the weighted mean of the rows of positive weight, assumed finite; a row found
  // non-finite on the way loses its weight and the pass is run again.
  for (;;) {
    double weight_sum = 0.0;
    bool any = false;
    rows.coef = w;
    for (int64_t i = 0; i < n; ++i) {
      rows.active[i] = w[i] > 0;
      if (rows.active[i]) {
        weight_sum += w[i];
        any = true;
      }
    }
    if (!any) {
      std::fill(z, z + d, std::numeric_limits<double>::quiet_NaN());
      return;
    }
    std::fill(z, z + d, 0.0);
    run_pass(X, n, d, blocks, rows, weight_sum, true, true, z, partials);
    bool restart = false;
    for (int64_t i = 0; i < n; ++i) {
      if (!rows.active[i]) continue;
      const double probe = core::sum_in_block_order(partials.finite_probe.data(), blocks.count, n, i);
      if (probe != 0.0) {
        w[i] = 0.0;
        restart = true;
      }
    }
    if (!restart) break;
  }
  for (int64_t t = 1; t <= max_iter; ++t) {
    double coef_sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      if (!rows.active[i]) continue;
      const double dist = std::sqrt(core::sum_in_block_order(partials.row_sums.data(), blocks.count, n, i));
      rows.coef[i] = core::weiszfeld_weight(w[i], dist, eps);
      coef_sum += rows.coef[i];
    }
    run_pass(X, n, d, blocks, rows, coef_sum, true, t < max_iter, z, partials);
    const double step = std::sqrt(core::sum_in_block_order(partials.step.data(), blocks.count, 1, 0));
    const double norm = std::sqrt(core::sum_in_block_order(partials.norm.data(), blocks.count, 1, 0));
    if (step <= tol * std::max(norm, eps)) break;
  }
}

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
  at::Tensor z = at::empty({d}, X.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_geometric_median", [&] {
    geometric_median_kernel<scalar_t>(X.data_ptr<scalar_t>(), n, d, w, eps, max_iter, tol, z.data_ptr<double>());
  });
  return z.to(X.scalar_type());
}

// ---------------------------------------------------------------------------------------
// Centered clipping.

// Per block: (when `update`) v <- v + sum_i scale_i (x_i - v) / n over the finite rows,
// then (when `distances`) each row's squared distance to v and its finiteness probe.
template <typename scalar_t>
void clipping_block(const scalar_t* X, int64_t n, int64_t d, const std::vector<uint8_t>& finite,
                    const std::vector<double>& scale, bool update, bool distances, int64_t b, int64_t c0, int64_t c1,
                    double* v, std::vector<double>& acc, Partials& out) {
  const int64_t width = c1 - c0;
  if (update) {
    std::fill(acc.begin(), acc.begin() + width, 0.0);
    const double* center = v + c0;
    for (int64_t i = 0; i < n; ++i) {
      if (!finite[i]) continue;
      const scalar_t* x = X + i * d + c0;
      const double s = scale[i];
#pragma omp simd
      for (int64_t c = 0; c < width; ++c) acc[c] += s * (static_cast<double>(x[c]) - center[c]);
    }
    const double count = static_cast<double>(n);
    for (int64_t c = 0; c < width; ++c) v[c0 + c] = v[c0 + c] + acc[c] / count;
  }
  if (distances) {
    for (int64_t i = 0; i < n; ++i) {
      if (!finite[i]) continue;
      row_to_center(X + i * d, v, c0, c1, &out.row_sums[b * n + i], &out.finite_probe[b * n + i]);
    }
  }
}

template <typename scalar_t>
void centered_clipping_kernel(const scalar_t* X, int64_t n, int64_t d, double tau, int64_t iters, double* v) {
  const core::PassBlocks blocks = core::make_pass_blocks(n, d);
  Partials partials(n, blocks.count);
  std::vector<uint8_t> finite(static_cast<size_t>(n), 1);
  std::vector<double> scale(static_cast<size_t>(n), 0.0);
  auto pass = [&](bool update, bool distances) {
    at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> acc(static_cast<size_t>(blocks.columns));
      for (int64_t b = begin; b < end; ++b)
        clipping_block(X, n, d, finite, scale, update, distances, b, blocks.begin(b), blocks.end(b), v, acc, partials);
    });
  };
  if (iters <= 0) return;
  pass(false, true);  // finiteness and distances to the start
  for (int64_t i = 0; i < n; ++i)
    finite[i] = core::sum_in_block_order(partials.finite_probe.data(), blocks.count, n, i) == 0.0;
  for (int64_t t = 1; t <= iters; ++t) {
    for (int64_t i = 0; i < n; ++i) {
      const double norm = finite[i] ? std::sqrt(core::sum_in_block_order(partials.row_sums.data(), blocks.count, n, i))
                                    : 0.0;
      scale[i] = core::clipping_scale(finite[i], norm, tau);
    }
    pass(true, t < iters);
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
