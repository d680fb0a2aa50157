// CPU kernels of the rules that select rows on the exact distance matrix: krum_scores,
// krum (and multi_krum through it), bulyan, nnm, medoid, mda. One pass over G
// computes the distances (distances.cpp); selections run on the n x n matrix
// (csrc/core/selection.h); a last pass averages the selected rows.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../core/mda.h"
#include "../checks.h"
#include "../out.h"
#include "../core/selection.h"
#include "../core/window.h"
#include "coordinate.h"
#include "distances.h"
#include "isa.h"

namespace byzagg {
namespace cpu {
namespace {

// Coordinates per block when averaging rows: the rows' blocks stay in L1/L2.
constexpr int64_t kMeanColumns = 1024;

// acc[c] = (((acc[c] + rows[0][c]) + rows[1][c]) + ...): the rows added in the order given,
// four at a time so that acc is loaded and stored once per four rows.
template <typename T>
__attribute__((always_inline))  // compiled inside each ISA's copy below, for its instructions
inline void add_rows_in_order(T* acc, const T* const* rows, int64_t count, int64_t width) {
  int64_t r = 0;
  for (; r + 4 <= count; r += 4) {
    const T *x0 = rows[r], *x1 = rows[r + 1], *x2 = rows[r + 2], *x3 = rows[r + 3];
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) acc[c] = acc[c] + x0[c] + x1[c] + x2[c] + x3[c];
  }
  for (; r < count; ++r) {
    const T* x = rows[r];
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) acc[c] = acc[c] + x[c];
  }
}

// One copy per ISA, chosen with cpu_isa() (the same sums in the same order in each: only
// the width of the vectors differs).
#if defined(__x86_64__) && defined(__GNUC__)
template <typename T>
__attribute__((target("avx512f"))) void add_rows_avx512(T* acc, const T* const* rows, int64_t count, int64_t width) {
  add_rows_in_order(acc, rows, count, width);
}
template <typename T>
__attribute__((target("avx2"))) void add_rows_avx2(T* acc, const T* const* rows, int64_t count, int64_t width) {
  add_rows_in_order(acc, rows, count, width);
}
#endif

template <typename T>
void add_rows(Isa isa, T* acc, const T* const* rows, int64_t count, int64_t width) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (isa == Isa::kAvx512) return add_rows_avx512(acc, rows, count, width);
  if (isa == Isa::kAvx2) return add_rows_avx2(acc, rows, count, width);
#endif
  add_rows_in_order(acc, rows, count, width);
}

// Half precision: each row converted to float, then added (the same order).
template <typename scalar_t>
void add_widened_rows(float* acc, const scalar_t* const* rows, int64_t count, int64_t width) {
  for (int64_t r = 0; r < count; ++r) {
    const scalar_t* x = rows[r];
    for (int64_t c = 0; c < width; ++c) acc[c] = acc[c] + static_cast<float>(x[c]);
  }
}

// For each output row o, the mean of the rows sets[o] of X (accumulated in the
// accumulation type, in the order given), written to out[o] (G's dtype).
template <typename scalar_t>
void mean_of_row_sets(const scalar_t* X, int64_t d, const std::vector<std::vector<int64_t>>& sets, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t outputs = static_cast<int64_t>(sets.size());
  const Isa isa = std::is_same_v<scalar_t, acc_t> ? cpu_isa() : Isa::kGeneric;
  record_isa(Family::kSelection, isa);
  at::parallel_for(0, d, kMeanColumns, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(static_cast<size_t>(kMeanColumns));
    std::vector<const scalar_t*> rows;
    for (int64_t c0 = begin; c0 < end; c0 += kMeanColumns) {
      const int64_t width = std::min(kMeanColumns, end - c0);
      for (int64_t o = 0; o < outputs; ++o) {
        const std::vector<int64_t>& set = sets[static_cast<size_t>(o)];
        rows.clear();
        for (int64_t r : set) rows.push_back(X + r * d + c0);
        std::fill(acc.begin(), acc.begin() + width, acc_t(0));
        if constexpr (std::is_same_v<scalar_t, acc_t>) {
          add_rows(isa, acc.data(), rows.data(), static_cast<int64_t>(rows.size()), width);
        } else {
          add_widened_rows(acc.data(), rows.data(), static_cast<int64_t>(rows.size()), width);
        }
        const acc_t count = static_cast<acc_t>(set.size());
        scalar_t* dst = out + o * d + c0;
        for (int64_t c = 0; c < width; ++c) dst[c] = static_cast<scalar_t>(acc[c] / count);
      }
    }
  });
}

// Row o of out, a contiguous (outputs * d) tensor of X's dtype, is the mean of the rows
// sets[o] of the contiguous X.
void row_set_means(const at::Tensor& X, const std::vector<std::vector<int64_t>>& sets, const at::Tensor& out) {
  const int64_t d = X.size(1);
  TORCH_CHECK(out.is_contiguous() && out.numel() == static_cast<int64_t>(sets.size()) * d &&
                  out.scalar_type() == X.scalar_type(),
              "row_set_means: out must be a contiguous tensor of X's dtype with one row per set");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_row_means", [&] {
    mean_of_row_sets<scalar_t>(X.data_ptr<scalar_t>(), d, sets, out.data_ptr<scalar_t>());
  });
}

at::Tensor krum_scores_cpu(const at::Tensor& G, int64_t f) {
  check_matrix(G, "krum_scores", c10::DeviceType::CPU);
  check_krum_f("krum_scores", G.size(0), f);
  check_square_temporaries("krum_scores", G.size(0), 16.0);  // distances and neighbour lists
  const SquaredDistances dist = squared_distances(G);
  const std::vector<double> scores = core::krum_scores(dist.D2.data(), dist.n, f);
  at::Tensor out = at::empty({dist.n}, G.options().dtype(at::kDouble));
  std::copy(scores.begin(), scores.end(), out.data_ptr<double>());
  return out;  // float64 for every input dtype: the values the selection ranks
}

// The rules that return a d-vector write it into `result`, a contiguous (d,) tensor of G's
// dtype: the functional op and the out= op are made from them (csrc/out.h).
void krum_into(const at::Tensor& G, int64_t f, int64_t m, const at::Tensor& result) {
  check_matrix(G, "krum", c10::DeviceType::CPU);
  const int64_t n = G.size(0);
  check_krum_f("krum", n, f);
  check_krum_m(n, f, m);
  check_square_temporaries("krum", n, 16.0);
  const at::Tensor X = G.contiguous();
  const SquaredDistances dist = squared_distances(X);
  const std::vector<int64_t> chosen = core::krum_select(dist.D2.data(), n, dist.finite.data(), f, m);
  row_set_means(X, {chosen}, result);
}

at::Tensor nnm_cpu(const at::Tensor& G, int64_t f) {
  check_matrix(G, "nnm", c10::DeviceType::CPU);
  const int64_t n = G.size(0);
  check_n_above_2f("nnm", n, f);
  check_square_temporaries("nnm", n, 16.0);  // distances and neighbourhoods
  const at::Tensor X = G.contiguous();
  const SquaredDistances dist = squared_distances(X);
  std::vector<std::vector<int64_t>> neighbourhoods(static_cast<size_t>(n));
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    core::neighbourhood_order(dist.D2.data(), n, dist.finite.data(), i, order.data());
    neighbourhoods[static_cast<size_t>(i)].assign(order.begin(), order.begin() + (n - f));
  }
  at::Tensor out = at::empty({n, X.size(1)}, X.options());
  row_set_means(X, neighbourhoods, out);
  return out;
}

void medoid_into(const at::Tensor& G, const at::Tensor& result) {
  check_matrix(G, "medoid", c10::DeviceType::CPU);
  check_square_temporaries("medoid", G.size(0), 8.0);
  const SquaredDistances dist = squared_distances(G);
  result.copy_(G.select(0, core::medoid_row(dist.D2.data(), dist.n, dist.finite.data())));
}

// MDA enumerates no subsets (csrc/core/mda.h), but keeps the documented limit of the
// public API (byzagg.MDA_MAX_SUBSETS) so that the op and the reference accept the same.
constexpr int64_t kMdaMaxSubsets = 1000000;

// C(n, f), or kMdaMaxSubsets + 1 once it is larger.
int64_t capped_binomial(int64_t n, int64_t f) {
  f = std::min(f, n - f);
  double value = 1.0;
  for (int64_t i = 1; i <= f; ++i) {
    value = value * static_cast<double>(n - f + i) / static_cast<double>(i);
    if (value > static_cast<double>(kMdaMaxSubsets) + 0.5) return kMdaMaxSubsets + 1;
  }
  return static_cast<int64_t>(std::llround(value));
}

void mda_into(const at::Tensor& G, int64_t f, const at::Tensor& result) {
  check_matrix(G, "mda", c10::DeviceType::CPU);
  const int64_t n = G.size(0);
  check_n_above_2f("mda", n, f);
  TORCH_CHECK(capped_binomial(n, f) <= kMdaMaxSubsets, "mda requires C(n, f) <= ", kMdaMaxSubsets,
              " subsets, got n=", n, ", f=", f);
  check_square_temporaries("mda", n, 16.0);  // distances and the search's edges
  const at::Tensor X = G.contiguous();
  std::vector<int64_t> kept;
  if (f == 0) {
    kept.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) kept[static_cast<size_t>(i)] = i;
  } else {
    SquaredDistances dist = squared_distances(X);
    for (double& v : dist.D2) v = std::sqrt(v);  // diameters compared as the reference does
    kept = core::mda_select(dist.D2.data(), n, f);
  }
  row_set_means(X, {kept}, result);
}

// Bulyan: the repeated Krum selection on the n x n matrix only (csrc/core/selection.h),
// then per coordinate the MeaMed window of the selected rows (the shared coordinate-wise
// kernel).
void bulyan_into(const at::Tensor& G, int64_t f, const at::Tensor& result) {
  check_matrix(G, "bulyan", c10::DeviceType::CPU);
  const int64_t n = G.size(0);
  check_bulyan_f(n, f);
  check_square_temporaries("bulyan", n, 16.0);
  const at::Tensor X = G.contiguous();
  const SquaredDistances dist = squared_distances(X);
  const std::vector<int64_t> selected = core::bulyan_select(dist.D2.data(), n, dist.finite.data(), f);
  // MeaMed over the theta = n - 2f selected rows with f' = 2f keeps the beta = theta - 2f
  // values nearest their median: Bulyan's last step.
  coordinate_rule(X, selected, 2 * f, core::CoordinateRule::kMeaMed, result);
}

constexpr c10::DeviceType kCpu = c10::DeviceType::CPU;

at::Tensor krum_cpu(const at::Tensor& G, int64_t f, int64_t m) {
  return new_vector(G, "krum", kCpu, [&](const at::Tensor& result) { krum_into(G, f, m, result); });
}
void krum_out_cpu(const at::Tensor& G, int64_t f, int64_t m, at::Tensor& out) {
  write_out(G, out, "krum", kCpu, [&](const at::Tensor& result) { krum_into(G, f, m, result); });
}
at::Tensor bulyan_cpu(const at::Tensor& G, int64_t f) {
  return new_vector(G, "bulyan", kCpu, [&](const at::Tensor& result) { bulyan_into(G, f, result); });
}
void bulyan_out_cpu(const at::Tensor& G, int64_t f, at::Tensor& out) {
  write_out(G, out, "bulyan", kCpu, [&](const at::Tensor& result) { bulyan_into(G, f, result); });
}
at::Tensor medoid_cpu(const at::Tensor& G) {
  return new_vector(G, "medoid", kCpu, [&](const at::Tensor& result) { medoid_into(G, result); });
}
void medoid_out_cpu(const at::Tensor& G, at::Tensor& out) {
  write_out(G, out, "medoid", kCpu, [&](const at::Tensor& result) { medoid_into(G, result); });
}
at::Tensor mda_cpu(const at::Tensor& G, int64_t f) {
  return new_vector(G, "mda", kCpu, [&](const at::Tensor& result) { mda_into(G, f, result); });
}
void mda_out_cpu(const at::Tensor& G, int64_t f, at::Tensor& out) {
  write_out(G, out, "mda", kCpu, [&](const at::Tensor& result) { mda_into(G, f, result); });
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(byzagg, CPU, m) {
  m.impl("krum_scores", &cpu::krum_scores_cpu);
  m.impl("krum", &cpu::krum_cpu);
  m.impl("bulyan", &cpu::bulyan_cpu);
  m.impl("nnm", &cpu::nnm_cpu);
  m.impl("medoid", &cpu::medoid_cpu);
  m.impl("mda", &cpu::mda_cpu);
  m.impl("krum.out", &cpu::krum_out_cpu);
  m.impl("bulyan.out", &cpu::bulyan_out_cpu);
  m.impl("medoid.out", &cpu::medoid_out_cpu);
  m.impl("mda.out", &cpu::mda_out_cpu);
}

}  // namespace byzagg
