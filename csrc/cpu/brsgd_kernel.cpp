// CPU kernel of BrSGD (API.md), in float64 like the reference, in three passes over G:
// 1. per coordinate: the mean of its finite values, the side of it holding the majority
//    (>= mean is the upper side, which wins ties), a point for each row on that side, and
//    the median of the column (NaN last; the mean of the two middle values for even n);
// 2. each finite row's l1 distance to the median;
// 3. the mean of the rows in C1 (l1 <= 2 threshold) and C2 (the ceil(beta n) best scores,
//    ties to the lower index); the median when no row is in both.
// Per-row sums over coordinates are stored per block and added in block order
// (core/passes.h): the same bits for any number of threads.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "../core/passes.h"
#include "../core/window.h"
#include "distances.h"

namespace byzagg {
namespace cpu {
namespace {

// Columns transposed together in pass 1.
constexpr int64_t kColumnsPerGroup = 32;

// Median of v[0, n) in the NaN-last order (v is reordered).
inline double median_nan_last(double* v, int64_t n) {
  const int64_t mid = n / 2;
  std::nth_element(v, v + mid, v + n, core::nan_last_less<double>);
  const double upper = v[mid];
  if (n % 2 == 1) return upper;
  const double lower = *std::max_element(v, v + mid, core::nan_last_less<double>);
  return (lower + upper) / 2.0;
}

template <typename scalar_t>
void score_pass(const scalar_t* X, int64_t n, int64_t d, const core::PassBlocks& blocks, int64_t* score_partials,
                uint8_t* nonfinite_partials, double* median) {
  at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> columns(static_cast<size_t>(n * kColumnsPerGroup));
    std::vector<double> scratch(static_cast<size_t>(n));
    for (int64_t b = begin; b < end; ++b) {
      int64_t* score = score_partials + b * n;
      uint8_t* nonfinite = nonfinite_partials + b * n;
      std::fill(score, score + n, int64_t(0));
      std::fill(nonfinite, nonfinite + n, uint8_t(0));
      for (int64_t c0 = blocks.begin(b); c0 < blocks.end(b); c0 += kColumnsPerGroup) {
        const int64_t width = std::min(kColumnsPerGroup, blocks.end(b) - c0);
        for (int64_t r = 0; r < n; ++r) {
          const scalar_t* row = X + r * d + c0;
          for (int64_t c = 0; c < width; ++c) columns[c * n + r] = static_cast<double>(row[c]);
        }
        for (int64_t c = 0; c < width; ++c) {
          const double* column = columns.data() + c * n;
          double sum = 0.0;
          int64_t count = 0;
          for (int64_t r = 0; r < n; ++r) {
            if (std::isfinite(column[r])) {
              sum += column[r];
              ++count;
            } else {
              nonfinite[r] = 1;
            }
          }
          const double mean = sum / static_cast<double>(count);  // NaN when no value is finite
          int64_t upper = 0, lower = 0;
          for (int64_t r = 0; r < n; ++r) {
            if (!std::isfinite(column[r])) continue;
            if (column[r] >= mean) ++upper;
            if (column[r] < mean) ++lower;
          }
          const bool upper_wins = upper >= lower;
          for (int64_t r = 0; r < n; ++r) {
            const double x = column[r];
            if (std::isfinite(x) && (upper_wins ? x >= mean : x < mean)) ++score[r];
          }
          std::copy(column, column + n, scratch.begin());
          median[c0 + c] = median_nan_last(scratch.data(), n);
        }
      }
    }
  });
}

template <typename scalar_t>
at::Tensor brsgd_kernel(const at::Tensor& Xt, double beta, double threshold) {
  const scalar_t* X = Xt.data_ptr<scalar_t>();
  const int64_t n = Xt.size(0), d = Xt.size(1);
  const core::PassBlocks blocks = core::make_pass_blocks(n, d);
  at::Tensor median = at::empty({d}, Xt.options().dtype(at::kDouble));
  double* med = median.data_ptr<double>();

  std::vector<int64_t> score_partials(static_cast<size_t>(blocks.count * n));
  std::vector<uint8_t> nonfinite_partials(static_cast<size_t>(blocks.count * n));
  score_pass(X, n, d, blocks, score_partials.data(), nonfinite_partials.data(), med);
  std::vector<int64_t> score(static_cast<size_t>(n), 0);
  std::vector<uint8_t> finite(static_cast<size_t>(n), 1);
  for (int64_t b = 0; b < blocks.count; ++b)
    for (int64_t i = 0; i < n; ++i) {
      score[i] += score_partials[b * n + i];
      if (nonfinite_partials[b * n + i]) finite[i] = 0;
    }

  // Pass 2: l1 distances of the finite rows to the median.
  std::vector<double> l1_partials(static_cast<size_t>(blocks.count * n), 0.0);
  at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      for (int64_t i = 0; i < n; ++i) {
        if (!finite[i]) continue;
        const scalar_t* x = X + i * d;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int64_t c = blocks.begin(b); c < blocks.end(b); ++c) sum += std::abs(static_cast<double>(x[c]) - med[c]);
        l1_partials[b * n + i] = sum;
      }
  });

  // C2: the ceil(beta n) highest scores, ties to the lower index; C1: l1 <= 2 threshold.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  const int64_t c2_size = std::min<int64_t>(n, static_cast<int64_t>(std::ceil(beta * static_cast<double>(n))));
  std::vector<uint8_t> in_c2(static_cast<size_t>(n), 0);
  for (int64_t k = 0; k < c2_size; ++k) in_c2[order[k]] = 1;
  std::vector<int64_t> chosen;
  for (int64_t i = 0; i < n; ++i) {
    if (!finite[i] || !in_c2[i]) continue;
    const double l1 = core::sum_in_block_order(l1_partials.data(), blocks.count, n, i);
    if (l1 <= 2.0 * threshold) chosen.push_back(i);
  }
  if (chosen.empty()) return median.to(Xt.scalar_type());

  // Pass 3: the mean of the chosen rows, summed in row order.
  at::Tensor mean = at::empty({d}, Xt.options().dtype(at::kDouble));
  double* out = mean.data_ptr<double>();
  const double count = static_cast<double>(chosen.size());
  at::parallel_for(0, d, core::kPassBlockColumns, [&](int64_t begin, int64_t end) {
    std::fill(out + begin, out + end, 0.0);
    for (int64_t i : chosen) {
      const scalar_t* x = X + i * d;
#pragma omp simd
      for (int64_t c = begin; c < end; ++c) out[c] += static_cast<double>(x[c]);
    }
    for (int64_t c = begin; c < end; ++c) out[c] /= count;
  });
  return mean.to(Xt.scalar_type());
}

at::Tensor brsgd_cpu(const at::Tensor& G, double beta, double threshold) {
  check_matrix_argument(G, "brsgd");
  TORCH_CHECK(beta > 0 && beta <= 1, "brsgd requires 0 < beta <= 1, got beta=", beta);
  TORCH_CHECK(threshold >= 0, "brsgd: threshold must be >= 0, got threshold=", threshold);
  const at::Tensor X = G.contiguous();
  at::Tensor result;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_brsgd",
                                  [&] { result = brsgd_kernel<scalar_t>(X, beta, threshold); });
  return result;
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(byzagg, CPU, m) { m.impl("brsgd", &cpu::brsgd_cpu); }

}  // namespace byzagg
