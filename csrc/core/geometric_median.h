// The geometric median's scalar steps between the passes over G, torch-free, host and
// device (BYZAGG_HD): the CPU kernel (csrc/cpu/iterative.cpp) runs them on the host;
// the reference (byzagg/_reference_impl.py, geometric_median) has the same steps in PyTorch.
//
// Algorithm (smoothed Weiszfeld with exact distances; w_i > 0 on the m active rows: finite,
// positive weight; W = sum w_i):
//   start   z = the coordinate-wise median of the active rows (robust: with fewer than half
//           of the rows far away, it lies in the box of the others), s = 0, lam = 0.
//   pass 0  q_i = ||z - x_i||^2 from the rows; dist_i = sqrt(q_i). The CPU computes the
//           start and pass 0 in one pass per block, on the rows of positive weight, with
//           each row's finiteness: only if one of them is not finite does it take that
//           pass again on the active rows. CUDA finds the finite rows first (a pass).
//   iteration t = 1..max_iter, ONE pass over G per block of coordinates:
//           k = the active row of least dist_i (geometric_median_nearest_row, before the
//           pass: the row nearest the point the pass evaluates; the first of those within
//           a relative 1e-9 of the least);
//           z <- z + lam s;  y = sum_i beta_i x_i / sum_i beta_i with
//           beta_i = w_i / max(eps, dist_i) (geometric_median_weights, before the pass);
//           q0_i = ||z - x_i||^2 (partials per block);  s <- y - z;  e = ||s||^2;
//           b_i = <z - x_i, s> (a second sweep over the block, still in cache) and, in the
//           pass that is the last by max_iter, r_i = ||x_i - x_k||^2 in the same sweep.
//           Between passes, O(41 m): geometric_median_line_search picks lam among
//           2^(k/4), k = 0..40, where sum_i w_i sqrt(q0_i + 2 lam b_i + lam^2 e) is least
//           (first on ties; the change written as rise / (new + old), no difference of
//           huge numbers) and gives dist_i there and the objective's change; stop once
//           lam sqrt(e) <= tol * max(eps, sum_i w_i dist_i / W) (geometric_median_converged).
//   end     the result is z + lam s, unless the last pass's candidate row k wins the
//           data-point check: its exact objective sum_i w_i sqrt(r_i) is at most the
//           objective at z + lam s (the pass's exact sum_i w_i sqrt(q0_i) plus the line
//           search's change) times 1 + 1e-12 (ties go to the row; geometric_median_row_wins).
//           After max_iter iterations no further pass is needed; a stop by the test before
//           takes one pass for r_i.
// No O(n^2 d) work: the candidate is one row, its objective comes from one O(n d) pass.
// Every distance is a sum of squared differences of the rows and a vector of their scale:
// rows of any magnitude up to the float range cost no accuracy to the others (an
// iteration on coefficients, ||z - x_i||^2 = (Dc)_i - c^T D c / 2, would cancel
// catastrophically with a row at 1e38). The quadratic q0 + 2 lam b + lam^2 e only serves
// the line search, the next weights and the final objective's change, and is exact at
// lam = 0; the next pass recomputes q0 from the rows.
// The CUDA kernel (csrc/cuda/iterative.cu) runs the same steps, the scalar ones in
// one device thread.
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
  constexpr double steps[kGeometricMedianSteps] = {1.0,   1.189207115002721,  1.4142135623730951, 1.681792830507429,
                                                   2.0,   2.378414230005442,  2.8284271247461903, 3.363585661014858,
                                                   4.0,   4.756828460010884,  5.656854249492381,  6.727171322029716,
                                                   8.0,   9.513656920021768,  11.313708498984761, 13.454342644059432,
                                                   16.0,  19.027313840043536, 22.627416997969522, 26.908685288118864,
                                                   32.0,  38.05462768008707,  45.254833995939045, 53.81737057623773,
                                                   64.0,  76.10925536017415,  90.50966799187809,  107.63474115247546,
                                                   128.0, 152.2185107203483,  181.01933598375618, 215.2694823049509,
                                                   256.0, 304.4370214406966,  362.03867196751236, 430.5389646099018,
                                                   512.0, 608.8740428813932,  724.0773439350247,  861.0779292198037,
                                                   1024.0};
  return steps[k];
}

// max(a, b) as std::max and torch.clamp have it: a NaN a stays NaN (fmax would drop it).
BYZAGG_HD double max_keep_nan(double a, double b) { return a < b ? b : a; }

template <typename Flag>
BYZAGG_HD double active_dot(const double* a, const double* b, int64_t n, const Flag* active) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (active[i]) s += a[i] * b[i];
  return s;
}

// beta_i = w_i / max(eps, dist_i) for the active rows (0 elsewhere); returns sum_i beta_i.
template <typename Flag>
BYZAGG_HD double geometric_median_weights(const double* w, const double* dist, int64_t n, const Flag* active,
                                          double eps, double* beta) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    beta[i] = active[i] ? weiszfeld_weight(w[i], dist[i], eps) : 0.0;
    if (active[i]) sum += beta[i];
  }
  return sum;
}

// The line search along the step s from z: q0_i = ||z - x_i||^2, b_i = <z - x_i, s>,
// e = ||s||^2. Returns lam (1 when e is 0), writes dist_i = ||z + lam s - x_i|| for the
// active rows from the quadratic and *change = the objective's change from z to z + lam s
// (0 when e is 0).
template <typename Flag>
BYZAGG_HD double geometric_median_line_search(const double* q0, const double* b, double e, const double* w, int64_t n,
                                              const Flag* active, double* dist, double* change_out) {
  double lam = 1.0;
  *change_out = 0.0;
  if (e > 0) {
    double best = 0.0;
    for (int k = 0; k < kGeometricMedianSteps; ++k) {
      const double l = geometric_median_step(k);
      double change = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        if (!active[i]) continue;
        const double rise = 2.0 * l * b[i] + l * l * e;
        const double s = sqrt(max_keep_nan(q0[i] + rise, 0.0));
        const double denom = s + sqrt(q0[i]);
        change += w[i] * (denom > 0 ? rise / denom : 0.0);
      }
      if (k == 0 || change < best) {
        best = change;
        lam = l;
      }
    }
    *change_out = best;
  }
  for (int64_t i = 0; i < n; ++i)
    if (active[i]) dist[i] = sqrt(max_keep_nan(q0[i] + (2.0 * lam * b[i] + lam * lam * e), 0.0));
  return lam;
}

// The stop test after a step of length lam sqrt(e): at most tol * max(eps, the weighted
// mean distance at the new point).
template <typename Flag>
BYZAGG_HD bool geometric_median_converged(double lam, double e, const double* w, const double* dist, int64_t n,
                                          const Flag* active, double W, double tol, double eps) {
  return lam * sqrt(e) <= tol * max_keep_nan(active_dot(w, dist, n, active) / W, eps);
}

// Ties between the candidate row and the iterate go to the row up to this relative
// difference: where a whole segment minimises (n = 2, collinear rows), the two objectives
// differ by rounding only, and the backends, rounding differently, would otherwise choose
// differently.
constexpr double kGeometricMedianRowSlack = 1e-12;

// The nearest row wins over rows at most this relative distance farther only if it comes
// first: where two rows are (nearly) equally near the iterate, as when a whole segment
// minimises and the iterate sits at its middle, rounding must not choose between them.
constexpr double kGeometricMedianNearestSlack = 1e-9;

// The data-point check's candidate for the next pass: the first active row whose dist_i (the
// distances to the point the pass evaluates) is at most the least times
// 1 + kGeometricMedianNearestSlack; -1 when no row is active. (dist_i is NaN only where z
// is: then the first active row.)
template <typename Flag>
BYZAGG_HD int64_t geometric_median_nearest_row(const double* dist, int64_t n, const Flag* active) {
  int64_t best = -1;
  for (int64_t i = 0; i < n; ++i)
    if (active[i] && (best < 0 || dist[i] < dist[best])) best = i;
  if (best < 0) return best;
  const double bound = dist[best] * (1.0 + kGeometricMedianNearestSlack);
  for (int64_t i = 0; i < best; ++i)
    if (active[i] && dist[i] <= bound) return i;
  return best;
}

// The check compares objectives rather than testing the first-order optimality condition
// ||sum_{i != k} w_i (x_k - x_i) / ||x_k - x_i|| || <= w_k: that needs the distances to
// x_k before a second pass for the vector sum, decides segment ties (equality) by rounding,
// and would reject a row that beats an iterate not yet converged
// (benchmarks/results/cpu-issue21-gm.md).
// Whether the candidate row wins: its exact objective (from the squared distances of the
// rows to it, summed in double) is at most the objective at the final iterate times
// 1 + kGeometricMedianRowSlack.
BYZAGG_HD bool geometric_median_row_wins(double row_objective, double objective) {
  return row_objective <= objective * (1.0 + kGeometricMedianRowSlack);
}

}  // namespace core
}  // namespace byzagg
