// The geometric median's iteration on coefficients (the reference's
// geometric_median_coefficients in byzagg/_reference_impl.py), torch-free, host and device:
// the CPU kernel runs it on the host, the CUDA kernel in one device thread, on the same
// exact squared distances. Every iterate is z = sum_j c_j x_j over the active rows (finite,
// positive weight), sum_j c_j = 1, and ||z - x_i||^2 = (D c)_i - c^T D c / 2.
//
// Each of at most max_iter iterations: the smoothed Weiszfeld step delta = beta / sum(beta)
// - c with beta_i = w_i / max(eps, dist_i), then c <- c + lam delta with lam the point of
// kGeometricMedianSteps where the objective along the step is least (the first on ties);
// stop once the step's length is at most tol * max(eps, the weighted mean distance).
// Finally the active rows' own objectives are compared with the iterate's: the best row
// (lowest index on ties) wins when it is at least as good.
#pragma once

#include <cmath>
#include <cstdint>

#include "macros.h"
#include "passes.h"

namespace byzagg {
namespace core {

// 2^(k/4) for k = 0..40 (1 to 1024), as Python's 2.0 ** (k / 4) rounds them: the same
// constants on every backend.
constexpr int kGeometricMedianSteps = 41;
BYZAGG_HD double geometric_median_step(int k) {
  constexpr double steps[kGeometricMedianSteps] = {
      1.0, 1.189207115002721, 1.4142135623730951, 1.681792830507429, 2.0, 2.378414230005442,
      2.8284271247461903, 3.363585661014858, 4.0, 4.756828460010884, 5.656854249492381, 6.727171322029716,
      8.0, 9.513656920021768, 11.313708498984761, 13.454342644059432, 16.0, 19.027313840043536,
      22.627416997969522, 26.908685288118864, 32.0, 38.05462768008707, 45.254833995939045, 53.81737057623773,
      64.0, 76.10925536017415, 90.50966799187809, 107.63474115247546, 128.0, 152.2185107203483,
      181.01933598375618, 215.2694823049509, 256.0, 304.4370214406966, 362.03867196751236, 430.5389646099018,
      512.0, 608.8740428813932, 724.0773439350247, 861.0779292198037, 1024.0};
  return steps[k];
}

// max(a, b) as std::max and torch.clamp have it: a NaN a stays NaN (fmax would drop it).
BYZAGG_HD double max_keep_nan(double a, double b) { return a < b ? b : a; }

// Scratch doubles geometric_median_coefficients needs for n rows.
BYZAGG_HD int64_t geometric_median_scratch(int64_t n) { return 6 * n; }

// Mv[i] = sum over active j of D[i][j] v[j] for active i (j ascending).
template <typename Flag>
BYZAGG_HD void active_matvec(const double* D, int64_t n, const Flag* active, const double* v, double* Mv) {
  for (int64_t i = 0; i < n; ++i) {
    if (!active[i]) continue;
    double s = 0.0;
    for (int64_t j = 0; j < n; ++j)
      if (active[j]) s += D[i * n + j] * v[j];
    Mv[i] = s;
  }
}

template <typename Flag>
BYZAGG_HD double active_dot(const double* a, const double* b, int64_t n, const Flag* active) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (active[i]) s += a[i] * b[i];
  return s;
}

// dist[i] = ||z - x_i|| for the active rows i, z = sum_j c_j x_j (Dc: scratch of n).
template <typename Flag>
BYZAGG_HD void coefficient_distances(const double* D, int64_t n, const Flag* active, const double* c, double* Dc,
                                     double* dist) {
  active_matvec(D, n, active, c, Dc);
  const double cDc = active_dot(c, Dc, n, active);
  for (int64_t i = 0; i < n; ++i)
    if (active[i]) dist[i] = sqrt(max_keep_nan(Dc[i] - 0.5 * cDc, 0.0));
}

// D: row-major n x n exact squared distances (entries between active rows are used);
// active: the rows that take part (at least one); w: weights (positive on active rows).
// Writes c (n values, 0 on inactive rows) and returns the row that wins the data-point
// check, or -1. scratch: geometric_median_scratch(n) doubles.
template <typename Flag>
BYZAGG_HD int64_t geometric_median_coefficients(const double* D, int64_t n, const Flag* active, const double* w,
                                                double eps, int64_t max_iter, double tol, double* c,
                                                double* scratch) {
  double* Dc = scratch;
  double* dist = scratch + n;
  double* beta = scratch + 2 * n;
  double* delta = scratch + 3 * n;
  double* Dd = scratch + 4 * n;
  double* b = scratch + 5 * n;
  double W = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (active[i]) W += w[i];
  for (int64_t i = 0; i < n; ++i) c[i] = active[i] ? w[i] / W : 0.0;
  if (max_iter <= 0) return -1;
  coefficient_distances(D, n, active, c, Dc, dist);
  for (int64_t t = 0; t < max_iter; ++t) {
    double beta_sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      if (!active[i]) continue;
      beta[i] = weiszfeld_weight(w[i], dist[i], eps);
      beta_sum += beta[i];
    }
    for (int64_t i = 0; i < n; ++i) delta[i] = active[i] ? beta[i] / beta_sum - c[i] : 0.0;
    active_matvec(D, n, active, delta, Dd);
    const double cDd = active_dot(c, Dd, n, active);
    const double dDd = active_dot(delta, Dd, n, active);
    for (int64_t i = 0; i < n; ++i)
      if (active[i]) b[i] = 0.5 * (Dd[i] - cDd);
    const double e = max_keep_nan(-0.5 * dDd, 0.0);
    double lam = 1.0;
    if (e > 0) {
      double best = 0.0;
      for (int k = 0; k < kGeometricMedianSteps; ++k) {
        const double l = geometric_median_step(k);
        double change = 0.0;
        for (int64_t i = 0; i < n; ++i) {
          if (!active[i]) continue;
          const double rise = 2.0 * l * b[i] + l * l * e;
          const double s = sqrt(max_keep_nan(dist[i] * dist[i] + rise, 0.0));
          const double denom = s + dist[i];
          change += w[i] * (denom > 0 ? rise / denom : 0.0);
        }
        if (k == 0 || change < best) {
          best = change;
          lam = l;
        }
      }
    }
    for (int64_t i = 0; i < n; ++i)
      if (active[i]) c[i] = c[i] + lam * delta[i];
    coefficient_distances(D, n, active, c, Dc, dist);
    const double mean = active_dot(w, dist, n, active) / W;
    if (lam * sqrt(e) <= tol * max_keep_nan(mean, eps)) break;
  }
  const double objective = active_dot(w, dist, n, active);
  int64_t best_row = -1;
  double best_value = 0.0;
  for (int64_t k = 0; k < n; ++k) {
    if (!active[k]) continue;
    double value = 0.0;
    for (int64_t i = 0; i < n; ++i)
      if (active[i]) value += w[i] * sqrt(D[k * n + i]);
    if (best_row < 0 || value < best_value) {
      best_row = k;
      best_value = value;
    }
  }
  return best_value <= objective ? best_row : -1;
}

}  // namespace core
}  // namespace byzagg
