// CPU kernel of the coordinate-wise family: per coordinate, order the column (NaN last),
// then average the rule's window (csrc/core/window.h).
//
// Fast path (2 <= n <= 64, every ISA, chosen at run time): SIMD lanes are coordinates,
// each block of columns sorted at once by a compile-time sorting network
// (coordinate_simd.h), compiled for AVX-512 (16 float lanes), AVX2 (8) and, for the generic
// ISA, with the compiler's vector extensions on the baseline ISA (4 float lanes: SSE2 on
// x86-64, NEON on aarch64; coordinate_portable.cpp). It uses the arithmetic of window.h in
// the same order, so it gives the scalar path's values (a zero's sign aside: min/max do not
// order -0 and +0; the vector paths agree with one another on it too).
// 64 < n <= 4096 (every ISA): a merge sort over a block of columns staged in memory
// (coordinate_simd.h: chunks of 64 rows sorted by a network, then bitonic merges a few steps
// a pass), the columns read a tile at a time into a buffer that stays in the cache. Half precision is widened
// to float a block of columns at a time for both, and the last columns of a range (fewer
// than a vector) are staged into a padded block, so that every column takes the vector
// path. n = 1 and n > 4096 take the scalar path: per column an insertion sort (n <= 32),
// or for longer columns a partial order (core/partial_order.h: selection, then a sort of
// the part the rule reads).
// Columns are independent, so the result does not depend on the number of threads.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "../checks.h"
#include "../out.h"
#include "../core/partial_order.h"
#include "../core/window.h"
#include "coordinate.h"
#include "coordinate_network.h"

namespace byzagg {
namespace {

using core::CoordinateRule;
constexpr int64_t kScalarColumnsPerBlock = 32;
constexpr int64_t kInsertionSortMax = 32;

// ---------------------------------------------------------------------------------------
// Scalar path: gather a few columns, order each, apply the rule.

template <typename scalar_t>
void scalar_columns(const scalar_t* const* rows, int64_t n, int64_t begin, int64_t end, int64_t f, CoordinateRule rule,
                    at::opmath_type<scalar_t>* out) {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> columns(static_cast<size_t>(n * kScalarColumnsPerBlock));
  for (int64_t c0 = begin; c0 < end; c0 += kScalarColumnsPerBlock) {
    const int64_t width = std::min(kScalarColumnsPerBlock, end - c0);
    for (int64_t r = 0; r < n; ++r) {
      const scalar_t* row = rows[r] + c0;
      for (int64_t c = 0; c < width; ++c) columns[c * n + r] = static_cast<acc_t>(row[c]);
    }
    for (int64_t c = 0; c < width; ++c) {
      acc_t* column = columns.data() + c * n;
      if (n <= kInsertionSortMax) {
        core::insertion_sort(column, n);
        out[c0 + c] = core::coordinate_rule_of_sorted(column, n, f, rule);
      } else {
        out[c0 + c] = core::coordinate_rule_of_unsorted(column, n, f, rule);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------

template <typename acc_t>
int64_t network_columns(cpu::Isa isa, const acc_t* const* rows, int64_t n, int64_t begin, int64_t end, int64_t f,
                        CoordinateRule rule, acc_t* out) {
  switch (isa) {
#if BYZAGG_X86_ISAS
    case cpu::Isa::kAvx512: return cpu::avx512::coordinate_columns(rows, n, begin, end, f, rule, out);
    case cpu::Isa::kAvx2: return cpu::avx2::coordinate_columns(rows, n, begin, end, f, rule, out);
#endif
    default: return cpu::portable::coordinate_columns(rows, n, begin, end, f, rule, out);
  }
}

// 64 < n <= kMaxBitonicRows: the columns of each full vector of the range, sorted by the
// ISA's merge sort with the window of window.h applied lane by lane (long_columns); returns
// where the scalar path takes over.
template <typename acc_t>
int64_t bitonic_columns(cpu::Isa isa, const acc_t* const* rows, int64_t n, int64_t begin, int64_t end, int64_t f,
                        CoordinateRule rule, acc_t* out) {
  const int64_t bytes = isa == cpu::Isa::kAvx512 ? 64 : (isa == cpu::Isa::kAvx2 ? 32 : 16);
  const int64_t lanes = bytes / static_cast<int64_t>(sizeof(acc_t));
  std::vector<acc_t> stage(static_cast<size_t>(n * lanes));  // rows >= n are never touched
  // The columns are read a tile at a time into a buffer of at most 256 KiB that stays in
  // the cache: 256 to 1024 bytes of each row at once rather than one vector of each of n
  // rows far apart, which the hardware prefetcher does not follow.
  const int64_t tile_bytes = std::clamp<int64_t>((int64_t(256) << 10) / n / 64 * 64, 256, 1024);
  const int64_t tile_columns = tile_bytes / static_cast<int64_t>(sizeof(acc_t));
  std::vector<acc_t> tile(static_cast<size_t>(n * tile_columns));
  std::vector<const acc_t*> tile_rows(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) tile_rows[r] = tile.data() + r * tile_columns;
  int64_t c0 = begin;
  while (c0 + lanes <= end) {
    const int64_t width = std::min(tile_columns, (end - c0) / lanes * lanes);
    for (int64_t r = 0; r < n; ++r) std::copy(rows[r] + c0, rows[r] + c0 + width, tile.data() + r * tile_columns);
    for (int64_t c = 0; c < width; c += lanes) {
      switch (isa) {
#if BYZAGG_X86_ISAS
        case cpu::Isa::kAvx512:
          cpu::avx512::long_columns(tile_rows.data(), n, c, f, rule, stage.data(), out + c0 + c);
          break;
        case cpu::Isa::kAvx2:
          cpu::avx2::long_columns(tile_rows.data(), n, c, f, rule, stage.data(), out + c0 + c);
          break;
#endif
        default: cpu::portable::long_columns(tile_rows.data(), n, c, f, rule, stage.data(), out + c0 + c);
      }
    }
    c0 += width;
  }
  return c0;
}

template <typename scalar_t>
void coordinate_rule_cpu_kernel(const scalar_t* const* rows, int64_t n, int64_t d, int64_t f, CoordinateRule rule,
                                at::opmath_type<scalar_t>* out) {
  using acc_t = at::opmath_type<scalar_t>;
  // 2 <= n <= 64: the compile-time networks; 64 < n <= 4096: the merge sort; on the
  // ISA cpu_isa() gives (kGeneric: the vector extensions of the baseline).
  // (cpu_isa() is asked for every n, so that a wrong BYZAGG_CPU_ISA is an error for every n.)
  const cpu::Isa isa = cpu::cpu_isa();
  const bool vector_path = n >= 2 && n <= cpu::kMaxBitonicRows;
  cpu::record_isa(cpu::Family::kCoordinate, vector_path ? isa : cpu::Isa::kGeneric);
  auto vector_columns = [&](const acc_t* const* from, int64_t begin, int64_t end, acc_t* to) {
    return n <= cpu::kMaxNetworkRows ? network_columns(isa, from, n, begin, end, f, rule, to)
                                     : bitonic_columns(isa, from, n, begin, end, f, rule, to);
  };
  // About 64k values per task; a multiple of 16 columns, the widest vector.
  const int64_t grain = std::max<int64_t>(16, (int64_t(1) << 16) / n / 16 * 16);
  at::parallel_for(0, d, grain, [&](int64_t begin, int64_t end) {
    if (!vector_path) {
      scalar_columns(rows, n, begin, end, f, rule, out);
      return;
    }
    int64_t done = begin;
    if constexpr (std::is_same_v<scalar_t, acc_t>) done = vector_columns(rows, begin, end, out);
    if (done == end) return;
    // The rest (half precision: every column, widened; float and double: the last columns,
    // fewer than a vector) is copied a block at a time into a buffer padded to a multiple
    // of 16 columns, the widest vector: every column takes the vector path, whatever the
    // ISA's width and wherever the threads' ranges end, so that the ISAs and thread counts
    // agree even on a zero's sign (the scalar path orders -0 and +0 otherwise).
    const int64_t staged = std::is_same_v<scalar_t, acc_t> ? 16 : 256;
    std::vector<acc_t> staging(static_cast<size_t>(n * staged));  // padding: zeros, or an earlier block's values
    std::vector<const acc_t*> staged_rows(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) staged_rows[r] = staging.data() + r * staged;
    std::vector<acc_t> staged_out(static_cast<size_t>(staged));
    while (done < end) {
      const int64_t width = std::min(staged, end - done);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < width; ++c) staging[r * staged + c] = static_cast<acc_t>(rows[r][done + c]);
      vector_columns(staged_rows.data(), 0, (width + 15) / 16 * 16, staged_out.data());
      std::copy(staged_out.begin(), staged_out.begin() + width, out + done);
      done += width;
    }
  });
}

void check_coordinate_rule(const at::Tensor& G, int64_t f, CoordinateRule rule) {
  const char* name = core::coordinate_rule_name(rule);
  check_matrix(G, name, c10::DeviceType::CPU);
  check_f_nonnegative(name, G.size(0), f);
  TORCH_CHECK(core::coordinate_rule_accepts(G.size(0), f, rule), name, " requires n > 2f, got n=", G.size(0),
              ", f=", f);
}

// The functional op and its out= form (csrc/out.h).
at::Tensor coordinate_rule_cpu(const at::Tensor& G, int64_t f, CoordinateRule rule) {
  check_coordinate_rule(G, f, rule);
  return new_vector(G, core::coordinate_rule_name(rule), c10::DeviceType::CPU,
                    [&](const at::Tensor& result) { cpu::coordinate_rule(G, {}, f, rule, result); });
}
void coordinate_rule_out_cpu(const at::Tensor& G, int64_t f, CoordinateRule rule, at::Tensor& out) {
  check_coordinate_rule(G, f, rule);
  write_out(G, out, core::coordinate_rule_name(rule), c10::DeviceType::CPU,
            [&](const at::Tensor& result) { cpu::coordinate_rule(G, {}, f, rule, result); });
}

at::Tensor median_cpu(const at::Tensor& G) { return coordinate_rule_cpu(G, 0, CoordinateRule::kMedian); }
at::Tensor trimmed_mean_cpu(const at::Tensor& G, int64_t f) {
  return coordinate_rule_cpu(G, f, CoordinateRule::kTrimmedMean);
}
at::Tensor meamed_cpu(const at::Tensor& G, int64_t f) { return coordinate_rule_cpu(G, f, CoordinateRule::kMeaMed); }
at::Tensor phocas_cpu(const at::Tensor& G, int64_t f) { return coordinate_rule_cpu(G, f, CoordinateRule::kPhocas); }
void median_out_cpu(const at::Tensor& G, at::Tensor& out) {
  coordinate_rule_out_cpu(G, 0, CoordinateRule::kMedian, out);
}
void trimmed_mean_out_cpu(const at::Tensor& G, int64_t f, at::Tensor& out) {
  coordinate_rule_out_cpu(G, f, CoordinateRule::kTrimmedMean, out);
}
void meamed_out_cpu(const at::Tensor& G, int64_t f, at::Tensor& out) {
  coordinate_rule_out_cpu(G, f, CoordinateRule::kMeaMed, out);
}
void phocas_out_cpu(const at::Tensor& G, int64_t f, at::Tensor& out) {
  coordinate_rule_out_cpu(G, f, CoordinateRule::kPhocas, out);
}

}  // namespace

void cpu::coordinate_rule(const at::Tensor& G, const std::vector<int64_t>& rows, int64_t f, CoordinateRule rule,
                          const at::Tensor& out) {
  check_matrix(G, core::coordinate_rule_name(rule), c10::DeviceType::CPU);
  const at::Tensor X = G.contiguous();
  const int64_t d = X.size(1);
  const int64_t n = rows.empty() ? X.size(0) : static_cast<int64_t>(rows.size());
  const bool window_fits =
      rule == CoordinateRule::kMedian || (rule == CoordinateRule::kMeaMed ? f <= n - 1 : core::n_above_2f(n, f));
  TORCH_CHECK(f >= 0 && window_fits, core::coordinate_rule_name(rule), ": no window of values left, n=", n, ", f=", f);
  TORCH_CHECK(out.dim() == 1 && out.size(0) == d && out.scalar_type() == X.scalar_type() && out.is_contiguous(),
              "coordinate_rule: out must be a contiguous (d,) tensor of G's dtype");
  const auto acc_dtype = X.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  // float and double: the kernel writes into out; half precision: into a float buffer.
  const at::Tensor acc = out.scalar_type() == acc_dtype ? out : at::empty({d}, X.options().dtype(acc_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_coordinate_rule_cpu", [&] {
    const scalar_t* base = X.data_ptr<scalar_t>();
    std::vector<const scalar_t*> row_ptrs(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) {
      const int64_t row = rows.empty() ? r : rows[static_cast<size_t>(r)];
      TORCH_CHECK(row >= 0 && row < X.size(0), "coordinate_rule: row ", row, " out of range");
      row_ptrs[static_cast<size_t>(r)] = base + row * d;
    }
    coordinate_rule_cpu_kernel<scalar_t>(row_ptrs.data(), n, d, f, rule, acc.data_ptr<at::opmath_type<scalar_t>>());
  });
  if (!acc.is_same(out)) out.copy_(acc);
}

at::Tensor cpu::coordinate_rule(const at::Tensor& G, const std::vector<int64_t>& rows, int64_t f, CoordinateRule rule) {
  check_matrix(G, core::coordinate_rule_name(rule), c10::DeviceType::CPU);
  at::Tensor out = at::empty({G.size(1)}, G.options());
  coordinate_rule(G, rows, f, rule, out);
  return out;
}

template <typename scalar_t>
void cpu::coordinate_rule_columns(const scalar_t* const* rows, int64_t n, int64_t c0, int64_t c1, int64_t f,
                                  CoordinateRule rule, at::opmath_type<scalar_t>* out) {
  std::vector<const scalar_t*> shifted(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) shifted[static_cast<size_t>(r)] = rows[r] + c0;
  coordinate_rule_cpu_kernel<scalar_t>(shifted.data(), n, c1 - c0, f, rule, out);
}
template void cpu::coordinate_rule_columns<float>(const float* const*, int64_t, int64_t, int64_t, int64_t,
                                                  CoordinateRule, float*);
template void cpu::coordinate_rule_columns<double>(const double* const*, int64_t, int64_t, int64_t, int64_t,
                                                   CoordinateRule, double*);
template void cpu::coordinate_rule_columns<c10::Half>(const c10::Half* const*, int64_t, int64_t, int64_t, int64_t,
                                                      CoordinateRule, float*);
template void cpu::coordinate_rule_columns<c10::BFloat16>(const c10::BFloat16* const*, int64_t, int64_t, int64_t,
                                                          int64_t, CoordinateRule, float*);

TORCH_LIBRARY_IMPL(byzagg, CPU, m) {
  m.impl("median", &median_cpu);
  m.impl("trimmed_mean", &trimmed_mean_cpu);
  m.impl("meamed", &meamed_cpu);
  m.impl("phocas", &phocas_cpu);
  m.impl("median.out", &median_out_cpu);
  m.impl("trimmed_mean.out", &trimmed_mean_out_cpu);
  m.impl("meamed.out", &meamed_out_cpu);
  m.impl("phocas.out", &phocas_out_cpu);
}

}  // namespace byzagg
