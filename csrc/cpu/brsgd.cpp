// CPU kernel of BrSGD (docs/api.md), in float64 like the reference, in up to three passes
// over G:
// 1. per block of coordinates (iterative_block.h, vector copies per ISA): per column the
//    mean of its finite values and the side of it holding the majority (>= mean is the
//    upper side, which wins ties), a point for each row on that side, the non-finite rows,
//    the least number of finite values of a column;
// 2. only when C1 is not simply the finite rows (a finite threshold, or a column at most
//    half finite, whose median may be NaN): the column medians (NaN last; the mean of the
//    two middle values for even n: for odd n the middle value, which the coordinate-wise
//    kernel selects exactly; for even n the two middle values by selection per column,
//    averaged in float64) and each finite row's l1 distance to them;
// 3. the mean of the rows in C1 (l1 <= 2 threshold) and C2 (the ceil(beta n) best scores,
//    ties to the lower index); the median when no row is in both.
// Per-row sums over coordinates are stored per block and added in block order
// (core/passes.h): the same bits for any number of threads and every ISA.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "../checks.h"
#include "../out.h"
#include "../core/partial_order.h"
#include "../core/passes.h"
#include "../core/window.h"
#include "coordinate.h"
#include "distances.h"
#include "iterative_passes.h"

namespace byzagg {
namespace cpu {
namespace {

// Columns transposed together for the even-n medians.
constexpr int64_t kColumnsPerGroup = 32;

template <typename scalar_t>
void even_medians(const scalar_t* X, int64_t n, int64_t d, double* median) {
  at::parallel_for(0, d, kColumnsPerGroup * 64, [&](int64_t begin, int64_t end) {
    std::vector<double> columns(static_cast<size_t>(n * kColumnsPerGroup));
    for (int64_t c0 = begin; c0 < end; c0 += kColumnsPerGroup) {
      const int64_t width = std::min(kColumnsPerGroup, end - c0);
      for (int64_t r = 0; r < n; ++r) {
        const scalar_t* row = X + r * d + c0;
        for (int64_t c = 0; c < width; ++c) columns[c * n + r] = static_cast<double>(row[c]);
      }
      for (int64_t c = 0; c < width; ++c) median[c0 + c] = core::median_of_unsorted(columns.data() + c * n, n);
    }
  });
}

// Writes the result into `result`, a contiguous (d,) tensor of Xt's dtype (the mean is
// summed straight into it when that is float64).
template <typename scalar_t>
void brsgd_kernel(const at::Tensor& Xt, double beta, double threshold, const at::Tensor& result) {
  const scalar_t* X = Xt.data_ptr<scalar_t>();
  const int64_t n = Xt.size(0), d = Xt.size(1);
  const core::PassBlocks blocks = core::make_pass_blocks(n, d);
  const PassKernels<scalar_t> kernels = pass_kernels<scalar_t>();

  // Pass 1: scores, non-finite rows and the least count of finite values of a column, per block.
  std::vector<int64_t> score_partials(static_cast<size_t>(blocks.count * n));
  std::vector<uint8_t> nonfinite_partials(static_cast<size_t>(blocks.count * n));
  std::vector<int64_t> least_finite(static_cast<size_t>(blocks.count), n);
  at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> scratch(static_cast<size_t>(6 * blocks.columns));
    for (int64_t b = begin; b < end; ++b)
      kernels.brsgd_scores(X, n, d, blocks.begin(b), blocks.end(b), scratch.data(), score_partials.data() + b * n,
                           nonfinite_partials.data() + b * n, least_finite.data() + b);
  });
  std::vector<int64_t> score(static_cast<size_t>(n), 0);
  std::vector<uint8_t> finite(static_cast<size_t>(n), 1);
  for (int64_t b = 0; b < blocks.count; ++b)
    for (int64_t i = 0; i < n; ++i) {
      score[i] += score_partials[b * n + i];
      if (nonfinite_partials[b * n + i]) finite[i] = 0;
    }
  // With an infinite threshold and more than half of every column finite, every column's
  // median is finite (the middle values are finite), so every finite row's l1 distance is
  // <= inf: C1 is the finite rows, and neither the median nor the distances are needed
  // (unless no row is chosen). Otherwise (a column's median may be NaN, making every l1
  // distance NaN, or a finite threshold) the median and pass 2.
  const int64_t least = d > 0 ? *std::min_element(least_finite.begin(), least_finite.end()) : n;
  const bool c1_is_finite_rows = std::isinf(threshold) && 2 * least > n;
  at::Tensor median;
  auto medians = [&] {
    if (n % 2 == 1) return coordinate_rule(Xt, {}, 0, core::CoordinateRule::kMedian).to(at::kDouble).contiguous();
    at::Tensor even = at::empty({d}, Xt.options().dtype(at::kDouble));
    even_medians(X, n, d, even.data_ptr<double>());
    return even;
  };
  std::vector<double> l1_partials;
  if (!c1_is_finite_rows) {
    median = medians();
    // Pass 2: l1 distances of the finite rows to the median.
    l1_partials.assign(static_cast<size_t>(blocks.count * n), 0.0);
    const double* med = median.data_ptr<double>();
    at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        kernels.row_l1(X, n, d, finite.data(), med, blocks.begin(b), blocks.end(b), l1_partials.data() + b * n);
    });
  }

  // C2: the ceil(beta n) highest scores, ties to the lower index; C1: l1 <= 2 threshold.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  const int64_t c2_size = std::min<int64_t>(n, static_cast<int64_t>(std::ceil(beta * static_cast<double>(n))));
  std::vector<uint8_t> in_c2(static_cast<size_t>(n), 0);
  for (int64_t k = 0; k < c2_size; ++k) in_c2[order[k]] = 1;
  std::vector<uint8_t> chosen(static_cast<size_t>(n), 0);
  int64_t chosen_count = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!finite[i] || !in_c2[i]) continue;
    if (c1_is_finite_rows || core::sum_in_block_order(l1_partials.data(), blocks.count, n, i) <= 2.0 * threshold) {
      chosen[i] = 1;
      ++chosen_count;
    }
  }
  if (chosen_count == 0) {
    result.copy_(median.defined() ? median : medians());
    return;
  }

  // Pass 3: the mean of the chosen rows, summed in row order.
  const at::Tensor mean =
      result.scalar_type() == at::kDouble ? result : at::empty({d}, Xt.options().dtype(at::kDouble));
  double* out = mean.data_ptr<double>();
  const std::vector<double> ones(static_cast<size_t>(n), 1.0);
  at::parallel_for(0, blocks.count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      kernels.combine(X, n, d, chosen.data(), ones.data(), static_cast<double>(chosen_count), blocks.begin(b),
                      blocks.end(b), out);
  });
  if (!mean.is_same(result)) result.copy_(mean);
}

void brsgd_into(const at::Tensor& G, double beta, double threshold, const at::Tensor& result) {
  check_matrix(G, "brsgd", c10::DeviceType::CPU);
  TORCH_CHECK(beta > 0 && beta <= 1, "brsgd requires 0 < beta <= 1, got beta=", beta);
  TORCH_CHECK(threshold >= 0, "brsgd: threshold must be >= 0, got threshold=", threshold);
  const at::Tensor X = G.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_brsgd",
                                  [&] { brsgd_kernel<scalar_t>(X, beta, threshold, result); });
}

// The functional op and its out= form (csrc/out.h).
at::Tensor brsgd_cpu(const at::Tensor& G, double beta, double threshold) {
  return new_vector(G, "brsgd", c10::DeviceType::CPU,
                    [&](const at::Tensor& result) { brsgd_into(G, beta, threshold, result); });
}
void brsgd_out_cpu(const at::Tensor& G, double beta, double threshold, at::Tensor& out) {
  write_out(G, out, "brsgd", c10::DeviceType::CPU,
            [&](const at::Tensor& result) { brsgd_into(G, beta, threshold, result); });
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(byzagg, CPU, m) {
  m.impl("brsgd", &cpu::brsgd_cpu);
  m.impl("brsgd.out", &cpu::brsgd_out_cpu);
}

}  // namespace byzagg
