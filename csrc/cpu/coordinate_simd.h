// The SIMD sorting-network path of the coordinate-wise kernel, written once as templates on
// an ISA's vector traits `Simd` (types Vf / Vd of float / double lanes, static min / max on
// them) and compiled per ISA: coordinate_avx512.cpp and coordinate_avx2.cpp include this
// header after their `#pragma GCC target` and instantiate it with their traits (intrinsic
// types), coordinate_portable.cpp with no pragma and 16-byte vector extensions (the generic
// path: SSE2 on x86-64, NEON on aarch64). Only vector-extension operators are used besides
// Simd::min / max, so any GCC / Clang vector type serves.
// Everything here has internal linkage (an unnamed namespace): each translation unit keeps
// its own copy, compiled for its ISA.
//
// Lanes are coordinates: a block of kLanes consecutive coordinates of the n rows is loaded
// as n vectors and sorted by the network of P = n rounded up to a multiple of 8 rows (the
// padding rows are +inf above the data; for the median, whose network is pruned to the two
// middle outputs, -inf below and +inf above so that the data's middle lands on P's middle).
// The window is then chosen and averaged per lane with exactly the arithmetic of
// csrc/core/window.h, so the result equals the scalar path's. NaN: a block that holds one
// has its NaNs replaced by +inf and counted per lane, and the top positions of each lane
// get NaN back after the sort (NaN is ordered after +inf).
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "../core/sorting_network.h"
#include "../core/window.h"
#include "coordinate_network.h"

#define BYZAGG_ALWAYS_INLINE inline __attribute__((always_inline))

namespace byzagg {
namespace cpu {
namespace {

// The vector of acc_t (float or double) of the ISA.
template <class Simd, typename acc_t>
using Vec = std::conditional_t<std::is_same_v<acc_t, float>, typename Simd::Vf, typename Simd::Vd>;

template <class Simd, typename acc_t>
constexpr int kLanes = static_cast<int>(sizeof(Vec<Simd, acc_t>) / sizeof(acc_t));

template <class Simd, typename V>
BYZAGG_ALWAYS_INLINE void exchange(V& a, V& b) {
  const V lo = Simd::min(a, b);
  b = Simd::max(a, b);
  a = lo;
}

// Runs the compile-time comparator list Net::kBuilt (a sorting network, or merge steps
// below) on x, each comparator a min and a max over the lanes; fully unrolled, so that x can
// live in registers.
template <class Simd, class Net, typename V, std::size_t... I>
BYZAGG_ALWAYS_INLINE void run_comparators(V* x, std::index_sequence<I...>) {
  (exchange<Simd>(x[Net::kBuilt.comparators[I].lo], x[Net::kBuilt.comparators[I].hi]), ...);
}

template <class Simd, class Net, typename V>
BYZAGG_ALWAYS_INLINE void run_comparators(V* x) {
  run_comparators<Simd, Net>(x, std::make_index_sequence<Net::kCount>{});
}

template <typename V, typename acc_t>
BYZAGG_ALWAYS_INLINE V load_lanes(const acc_t* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

// x[i] = row i - low of the block, or the padding; returns the OR of the rows' NaN masks.
template <typename V, typename acc_t, std::size_t... I>
BYZAGG_ALWAYS_INLINE V load_block(V* x, const acc_t* const* rows, int64_t c0, int low, int n,
                                  std::index_sequence<I...>) {
  const V zero = V{};
  const V pos_inf = zero + std::numeric_limits<acc_t>::infinity();
  const V neg_inf = zero - std::numeric_limits<acc_t>::infinity();
  using Mask = decltype(zero != zero);
  Mask nan_mask = Mask{};
  ((x[I] = static_cast<int>(I) < low ? neg_inf
                                     : (static_cast<int>(I) < low + n ? load_lanes<V>(rows[I - low] + c0) : pos_inf),
    nan_mask |= x[I] != x[I]),
   ...);
  V any;
  std::memcpy(&any, &nan_mask, sizeof(V));
  return any;
}

// Replaces NaN by +inf in x and returns, per lane, how many there were.
template <typename V, typename acc_t, std::size_t... I>
BYZAGG_ALWAYS_INLINE V take_out_nan(V* x, std::index_sequence<I...>) {
  const V zero = V{};
  const V pos_inf = zero + std::numeric_limits<acc_t>::infinity();
  V count = zero;
  ((count = x[I] != x[I] ? count + acc_t(1) : count, x[I] = x[I] != x[I] ? pos_inf : x[I]), ...);
  return count;
}

template <class Simd, typename acc_t, typename V>
BYZAGG_ALWAYS_INLINE bool any_lane(V v) {
  using Bits = std::conditional_t<sizeof(acc_t) == 4, uint32_t, uint64_t>;
  bool any = false;
  for (int l = 0; l < kLanes<Simd, acc_t>; ++l) {
    Bits bits;
    std::memcpy(&bits, reinterpret_cast<const char*>(&v) + l * sizeof(acc_t), sizeof(Bits));
    any |= bits != 0;
  }
  return any;
}

template <typename V, std::size_t... I>
BYZAGG_ALWAYS_INLINE void copy_lanes(V* to, const V* from, std::index_sequence<I...>) {
  ((to[I] = from[I]), ...);
}

// The window of a rule other than the median over the sorted values of a block's lanes,
// at(p) giving data position p (0 <= p < n, NaN already put back): exactly the arithmetic of
// core/window.h, lane by lane.
template <class Simd, typename acc_t, typename At>
BYZAGG_ALWAYS_INLINE Vec<Simd, acc_t> sorted_window(At at, int64_t n, int64_t f, core::CoordinateRule rule) {
  using V = Vec<Simd, acc_t>;
  const V zero = V{};
  auto range_sum = [&](int64_t begin, int64_t end) {
    V sum = zero;
    for (int64_t p = begin; p < end; ++p) sum = sum + at(p);
    return sum;
  };
  const int64_t middle = n - 2 * f;
  if (rule == core::CoordinateRule::kTrimmedMean) return range_sum(f, n - f) / acc_t(middle);
  const V center = rule == core::CoordinateRule::kMeaMed
                       ? (n % 2 == 1 ? at(n / 2) : (at(n / 2 - 1) + at(n / 2)) / acc_t(2))
                       : range_sum(f, n - f) / acc_t(middle);
  const int64_t k = n - f;
  V start = zero;
  for (int64_t s = 0; s < n - k; ++s) start = (at(s + k) - center) < (center - at(s)) ? start + acc_t(1) : start;
  const V stop = start + acc_t(k);
  // The window's sum in index order, start <= p < stop: start <= n - k and stop >= k, so
  // below min(n - k, k) only p >= start is asked, at or above max(n - k, k) only p < stop,
  // and between them both (k < n - k) or neither (k >= n - k).
  const int low = static_cast<int>(n - k < k ? n - k : k), high = static_cast<int>(n - k < k ? k : n - k);
  V sum = zero;
  for (int p = 0; p < low; ++p) sum = zero + acc_t(p) >= start ? sum + at(p) : sum;
  if (n - k < k) {
    for (int p = low; p < high; ++p) sum = sum + at(p);
  } else {
    for (int p = low; p < high; ++p) {
      const V position = zero + acc_t(p);
      sum = (position >= start) & (position < stop) ? sum + at(p) : sum;
    }
  }
  for (int p = high; p < static_cast<int>(n); ++p) sum = zero + acc_t(p) < stop ? sum + at(p) : sum;
  return sum / acc_t(k);
}

template <class Simd, int P, core::NetworkOutputs Outputs, typename acc_t>
BYZAGG_ALWAYS_INLINE void network_block(const acc_t* const* rows, int64_t c0, int n, int64_t f,
                                        core::CoordinateRule rule, acc_t* out) {
  using V = Vec<Simd, acc_t>;
  const V zero = V{};
  const V nan = zero + std::numeric_limits<acc_t>::quiet_NaN();
  const int low = Outputs == core::NetworkOutputs::kMiddle ? P / 2 - (n + 1) / 2 : 0;
  V x[P];
  const bool has_nan = any_lane<Simd, acc_t>(load_block<V>(x, rows, c0, low, n, std::make_index_sequence<P>{}));
  V nan_count = zero;
  if (has_nan) nan_count = take_out_nan<V, acc_t>(x, std::make_index_sequence<P>{});
  run_comparators<Simd, core::SortingNetwork<P, Outputs>>(x);
  // Data position p (padded position p + low) held NaN if p >= n - nan_count.
  auto with_nan = [&](V value, int p) { return nan_count >= acc_t(n - p) ? nan : value; };

  V result;
  if (Outputs == core::NetworkOutputs::kMiddle) {
    V a = x[P / 2 - 1], b = x[P / 2];
    if (has_nan) {
      a = with_nan(a, P / 2 - 1 - low);
      b = with_nan(b, P / 2 - low);
    }
    result = n % 2 == 1 ? a : (a + b) / acc_t(2);
  } else {
    V v[P];  // runtime-indexed copy; x stays in registers through the network
    copy_lanes(v, x, std::make_index_sequence<P>{});
    if (has_nan) {
      for (int p = 0; p < n; ++p) v[p] = with_nan(v[p], p);
    }
    result = sorted_window<Simd, acc_t>([&](int64_t p) { return v[p]; }, n, f, rule);
  }
  std::memcpy(out, &result, sizeof(V));
}

template <class Simd, int P, typename acc_t>
__attribute__((noinline)) void network_columns(const acc_t* const* rows, int n, int64_t begin, int64_t end, int64_t f,
                                               core::CoordinateRule rule, acc_t* out) {
  constexpr int L = kLanes<Simd, acc_t>;
  for (int64_t c0 = begin; c0 + L <= end; c0 += L) {
    if (rule == core::CoordinateRule::kMedian) {
      network_block<Simd, P, core::NetworkOutputs::kMiddle>(rows, c0, n, f, rule, out + c0);
    } else {
      network_block<Simd, P, core::NetworkOutputs::kAll>(rows, c0, n, f, rule, out + c0);
    }
  }
}

// Longer columns (kMaxNetworkRows < n <= kMaxBitonicRows): a block of kLanes columns is
// staged in memory (NaN replaced by +inf and counted per lane as above) and sorted by a
// bitonic merge sort for P = bitonic_rows(n) rows, a power of two:
// - every chunk of kLongChunkRows rows is sorted in registers by Batcher's network, as a
//   short column is (the last chunk padded with +inf);
// - the chunks are merged by bitonic merges of 2 x kLongChunkRows, 4 x, ... P rows, in the
//   form where every compare-exchange puts the lesser value at the lower row (each merge
//   starts by comparing row i with its mirror in the block): rows n .. P - 1 would hold
//   +inf padding, which such a comparator never moves, so the comparators that touch them
//   are skipped and the padding is never stored. Up to log2(W) steps of a merge are done in
//   one pass over the staged block, W rows at a time in registers (W = Simd::kMergeRows;
//   merge_pass below).
// The comparators do not depend on the ISA or on W, so neither does the order of equal
// values (min/max leave a zero's sign aside, as above). The window is then applied lane by
// lane from the staged block with the arithmetic of core/window.h.
constexpr int kLongChunkRows = 64;

// The steps of a bitonic merge over W rows (W a power of two) in the mirror form: with
// kMirror, row q against row W - 1 - q, then the strides W / 4, ..., 1; without, the strides
// W / 2, ..., 1 (the half-cleaners: row i against row i + stride where i & stride == 0).
template <int W, bool kMirror>
struct MergeSteps {
  static constexpr int count() {
    int steps = 0;
    for (int j = W / 2; j > 0; j >>= 1) ++steps;
    return steps * (W / 2);
  }
  static constexpr int kCount = count();
  struct Built {
    core::Comparator comparators[kCount];
  };
  static constexpr Built build() {
    Built built{};
    int c = 0;
    for (int j = W / 2; j > 0; j >>= 1) {
      for (int i = 0; i < W; ++i) {
        if (kMirror && j == W / 2) {
          if (i < W / 2) built.comparators[c++] = core::Comparator{i, W - 1 - i};
        } else if ((i & j) == 0) {
          built.comparators[c++] = core::Comparator{i, i + j};
        }
      }
    }
    return built;
  }
  static constexpr Built kBuilt = build();
};

// One pass over the staged block of n rows doing W / 2 ... steps of a merge at once, W rows
// at a time in registers (rows >= n are +inf padding: loaded as such, never stored).
// kMirror: the first log2(W) steps of the merge of k rows (the mirror step, then the strides
// k / 4, ..., k / W); the group of t < k / W in the block at i0 is the rows
// i0 + t + q k / W and their mirrors. Otherwise: the half-cleaners of strides j, j / 2, ...,
// j / (W / 2); the group at base i0 + t (t < j / (W / 2)) is the rows base + q j / (W / 2).
// Only the blocks that hold a row of [first, last] are done (the median's last merge).
template <class Simd, int W, bool kMirror, typename acc_t>
BYZAGG_ALWAYS_INLINE void merge_pass(acc_t* stage, int64_t n, int64_t span, int64_t first, int64_t last) {
  using V = Vec<Simd, acc_t>;
  constexpr int L = kLanes<Simd, acc_t>;
  const V pos_inf = V{} + std::numeric_limits<acc_t>::infinity();
  const int64_t step = kMirror ? span / W : span / (W / 2);  // the least stride of the group
  const int64_t block = kMirror ? span : 2 * span;
  int64_t row[W];
  V x[W];
  for (int64_t i0 = first / block * block; i0 < n && i0 <= last; i0 += block) {
    for (int64_t t = 0; t < step && i0 + t < n; ++t) {
#pragma GCC unroll 32
      for (int q = 0; q < W; ++q) {
        if (kMirror) {
          row[q] = q < W / 2 ? i0 + t + q * step : i0 + span / 2 + (step - 1 - t) + (q - W / 2) * step;
        } else {
          row[q] = i0 + t + q * step;
        }
      }
#pragma GCC unroll 32
      for (int q = 0; q < W; ++q) x[q] = row[q] < n ? load_lanes<V, acc_t>(stage + row[q] * L) : pos_inf;
      run_comparators<Simd, MergeSteps<W, kMirror>>(x);
#pragma GCC unroll 32
      for (int q = 0; q < W; ++q) {
        if (row[q] < n) std::memcpy(stage + row[q] * L, &x[q], sizeof(V));
      }
    }
  }
}

// The half-cleaners of strides j, j / 2, ..., 1, up to log2(W) of them a pass, in the blocks
// that hold a row of [first, last].
template <class Simd, int W, typename acc_t>
BYZAGG_ALWAYS_INLINE void half_clean(acc_t* stage, int64_t n, int64_t j, int64_t first, int64_t last) {
  while (j >= W / 2) {
    merge_pass<Simd, W, false>(stage, n, j, first, last);
    j /= W;
  }
  if constexpr (W > 2) {
    if (j >= 1) half_clean<Simd, W / 2>(stage, n, j, first, last);
  }
}

// Stores x[I] at to + I * kLanes for I < m.
template <typename V, typename acc_t, std::size_t... I>
BYZAGG_ALWAYS_INLINE void store_rows(acc_t* to, const V* x, int m, std::index_sequence<I...>) {
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(acc_t));
  ((static_cast<int>(I) < m ? (void)std::memcpy(to + I * L, &x[I], sizeof(V)) : (void)0), ...);
}

template <class Simd, typename acc_t>
__attribute__((noinline)) void long_block(const acc_t* const* rows, int64_t n, int64_t c0, int64_t f,
                                          core::CoordinateRule rule, acc_t* stage, acc_t* out) {
  using V = Vec<Simd, acc_t>;
  constexpr int L = kLanes<Simd, acc_t>;
  constexpr int C = kLongChunkRows;
  constexpr int W = Simd::kMergeRows;
  const int64_t P = bitonic_rows(n);
  const V zero = V{};
  const V nan = zero + std::numeric_limits<acc_t>::quiet_NaN();
  auto store = [](acc_t* p, V v) { std::memcpy(p, &v, sizeof(V)); };
  // The merge of k rows over the rows [b, b + m) (a multiple of k, or the last rows). After
  // the last merge's mirror step each row is in its final half, and so on down: the median's
  // last merge does only the blocks that hold its rows (n - 1) / 2 and n / 2.
  auto merge = [&](int64_t b, int64_t m, int64_t k) {
    merge_pass<Simd, W, true>(stage + b * L, m, k, 0, m);
    const bool median = k == P && rule == core::CoordinateRule::kMedian;
    half_clean<Simd, W>(stage + b * L, m, k / W / 2, median ? (n - 1) / 2 : 0, median ? n / 2 : m);
  };
  // Blocks of B rows (16 KiB, so that they stay in the L1 cache) are sorted one after
  // another: their chunks, sorted in registers, and the merges up to B rows; then the merges
  // of 2B rows, ..., P over all rows. (The merges within blocks are independent, so the
  // order does not change what any comparator sees.)
  constexpr int64_t kL1Rows = (16 << 10) / static_cast<int64_t>(sizeof(V));
  constexpr int64_t B = kL1Rows < 2 * C ? 2 * C : kL1Rows;
  V nan_count = zero;
  for (int64_t b = 0; b < n; b += B) {
    const int64_t m = n - b < B ? n - b : B;
    for (int64_t s = b; s < b + m; s += C) {
      const int rows_here = static_cast<int>(n - s < C ? n - s : C);
      V x[C];
      if (any_lane<Simd, acc_t>(load_block<V>(x, rows + s, c0, 0, rows_here, std::make_index_sequence<C>{})))
        nan_count = nan_count + take_out_nan<V, acc_t>(x, std::make_index_sequence<C>{});
      run_comparators<Simd, core::SortingNetwork<C, core::NetworkOutputs::kAll>>(x);
      store_rows<V>(stage + s * L, x, rows_here, std::make_index_sequence<C>{});
    }
    for (int64_t k = 2 * C; k <= B && k <= P; k <<= 1) merge(b, m, k);
  }
  for (int64_t k = 2 * B; k <= P; k <<= 1) merge(0, n, k);
  // The window, lane by lane; data position p held NaN if p >= n - nan_count.
  const bool has_nan = any_lane<Simd, acc_t>(nan_count);
  auto at = [&](int64_t p) {
    const V v = load_lanes<V, acc_t>(stage + p * L);
    return has_nan && nan_count >= acc_t(n - p) ? nan : v;
  };
  V result;
  if (rule == core::CoordinateRule::kMedian) {
    const V a = at((n - 1) / 2);
    result = n % 2 == 1 ? a : (a + at(n / 2)) / acc_t(2);
  } else {
    result = sorted_window<Simd, acc_t>(at, n, f, rule);
  }
  store(out, result);
}

template <class Simd, typename acc_t>
int64_t columns(const acc_t* const* rows, int64_t n, int64_t begin, int64_t end, int64_t f, core::CoordinateRule rule,
                acc_t* out) {
  constexpr int L = kLanes<Simd, acc_t>;
  const int64_t vector_end = begin + (end - begin) / L * L;
  const int rows_count = static_cast<int>(n);
  switch ((n + 7) / 8) {
    case 1: network_columns<Simd, 8>(rows, rows_count, begin, vector_end, f, rule, out); break;
    case 2: network_columns<Simd, 16>(rows, rows_count, begin, vector_end, f, rule, out); break;
    case 3: network_columns<Simd, 24>(rows, rows_count, begin, vector_end, f, rule, out); break;
    case 4: network_columns<Simd, 32>(rows, rows_count, begin, vector_end, f, rule, out); break;
    case 5: network_columns<Simd, 40>(rows, rows_count, begin, vector_end, f, rule, out); break;
    case 6: network_columns<Simd, 48>(rows, rows_count, begin, vector_end, f, rule, out); break;
    case 7: network_columns<Simd, 56>(rows, rows_count, begin, vector_end, f, rule, out); break;
    case 8: network_columns<Simd, 64>(rows, rows_count, begin, vector_end, f, rule, out); break;
    default: return begin;
  }
  return vector_end;
}

}  // namespace
}  // namespace cpu
}  // namespace byzagg

#undef BYZAGG_ALWAYS_INLINE

// The four entry points of a vector path (coordinate_network.h), defined in the including
// translation unit's namespace from its traits `Simd`.
#define BYZAGG_COORDINATE_PATH_DEFINITIONS(Simd)                                                            \
  int64_t coordinate_columns(const float* const* rows, int64_t n, int64_t begin, int64_t end, int64_t f,    \
                             core::CoordinateRule rule, float* out) {                                       \
    return columns<Simd, float>(rows, n, begin, end, f, rule, out);                                         \
  }                                                                                                         \
  int64_t coordinate_columns(const double* const* rows, int64_t n, int64_t begin, int64_t end, int64_t f,   \
                             core::CoordinateRule rule, double* out) {                                      \
    return columns<Simd, double>(rows, n, begin, end, f, rule, out);                                        \
  }                                                                                                         \
  void long_columns(const float* const* rows, int64_t n, int64_t c0, int64_t f, core::CoordinateRule rule,  \
                    float* stage, float* out) {                                                             \
    long_block<Simd, float>(rows, n, c0, f, rule, stage, out);                                              \
  }                                                                                                         \
  void long_columns(const double* const* rows, int64_t n, int64_t c0, int64_t f, core::CoordinateRule rule, \
                    double* stage, double* out) {                                                           \
    long_block<Simd, double>(rows, n, c0, f, rule, stage, out);                                             \
  }
