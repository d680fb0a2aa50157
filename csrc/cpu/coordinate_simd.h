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

template <class Simd, int P, core::NetworkOutputs Outputs, typename V, std::size_t... I>
BYZAGG_ALWAYS_INLINE void sort_lanes(V* x, std::index_sequence<I...>) {
  using Net = core::SortingNetwork<P, Outputs>;
  (exchange<Simd>(x[Net::kBuilt.comparators[I].lo], x[Net::kBuilt.comparators[I].hi]), ...);
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

template <class Simd, int P, core::NetworkOutputs Outputs, typename acc_t>
BYZAGG_ALWAYS_INLINE void network_block(const acc_t* const* rows, int64_t c0, int n, int64_t f,
                                        core::CoordinateRule rule, acc_t* out) {
  using V = Vec<Simd, acc_t>;
  using core::CoordinateRule;
  const V zero = V{};
  const V nan = zero + std::numeric_limits<acc_t>::quiet_NaN();
  const int low = Outputs == core::NetworkOutputs::kMiddle ? P / 2 - (n + 1) / 2 : 0;
  V x[P];
  const bool has_nan = any_lane<Simd, acc_t>(load_block<V>(x, rows, c0, low, n, std::make_index_sequence<P>{}));
  V nan_count = zero;
  if (has_nan) nan_count = take_out_nan<V, acc_t>(x, std::make_index_sequence<P>{});
  sort_lanes<Simd, P, Outputs>(x, std::make_index_sequence<core::SortingNetwork<P, Outputs>::kCount>{});
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
    auto range_sum = [&](int64_t begin, int64_t end) {
      V sum = zero;
      for (int64_t p = begin; p < end; ++p) sum = sum + v[p];
      return sum;
    };
    const int64_t middle = n - 2 * f;
    if (rule == CoordinateRule::kTrimmedMean) {
      result = range_sum(f, n - f) / acc_t(middle);
    } else {
      const V center = rule == CoordinateRule::kMeaMed ? (n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / acc_t(2))
                                                       : range_sum(f, n - f) / acc_t(middle);
      const int64_t k = n - f;
      V start = zero;
      for (int64_t s = 0; s < n - k; ++s) start = (v[s + k] - center) < (center - v[s]) ? start + acc_t(1) : start;
      const V stop = start + acc_t(k);
      V sum = zero;
      for (int p = 0; p < n; ++p) {
        const V position = zero + acc_t(p);
        sum = (position >= start) & (position < stop) ? sum + v[p] : sum;
      }
      result = sum / acc_t(k);
    }
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
// bitonic network of run-time size for P = bitonic_rows(n) rows, a power of two, in the
// form where every compare-exchange puts the lesser value at the lower row (each merge
// starts by comparing row i with its mirror in the block): rows n .. P - 1 would hold +inf
// padding, which such a comparator never moves, so the comparators that touch them are
// skipped and the padding is never stored. Each compare-exchange is one min and one max
// over the lanes. The columns come out one after another in NaN-last order for the caller
// to apply the window (core/window.h) to; min/max leave a zero's sign aside, as above.
template <class Simd, typename acc_t>
__attribute__((noinline)) void bitonic_sort(const acc_t* const* rows, int64_t n, int64_t c0, acc_t* stage,
                                            acc_t* sorted) {
  using V = Vec<Simd, acc_t>;
  constexpr int L = kLanes<Simd, acc_t>;
  const int64_t P = bitonic_rows(n);
  const V zero = V{};
  const V pos_inf = zero + std::numeric_limits<acc_t>::infinity();
  auto store = [](acc_t* p, V v) { std::memcpy(p, &v, sizeof(V)); };
  auto exchange_rows = [&](int64_t lo, int64_t hi) {
    acc_t* a = stage + lo * L;
    acc_t* b = stage + hi * L;
    const V x = load_lanes<V, acc_t>(a), y = load_lanes<V, acc_t>(b);
    store(a, Simd::min(x, y));
    store(b, Simd::max(x, y));
  };
  V count = zero;
  for (int64_t r = 0; r < n; ++r) {
    const V x = load_lanes<V, acc_t>(rows[r] + c0);
    count = x != x ? count + acc_t(1) : count;
    store(stage + r * L, x != x ? pos_inf : x);
  }
  for (int64_t k = 2; k <= P; k <<= 1) {
    // merge step 1: row i0 + t against its mirror i0 + k - 1 - t (< n)
    for (int64_t i0 = 0; i0 < n; i0 += k) {
      for (int64_t t = i0 + k > n ? i0 + k - n : 0; t < k / 2; ++t) exchange_rows(i0 + t, i0 + k - 1 - t);
    }
    // then half-cleaners: row i against row i + j (< n)
    for (int64_t j = k >> 2; j > 0; j >>= 1) {
      for (int64_t i0 = 0; i0 + j < n; i0 += 2 * j) {
        const int64_t stop = n - j - i0 < j ? n - j - i0 : j;
        for (int64_t t = 0; t < stop; ++t) exchange_rows(i0 + t, i0 + t + j);
      }
    }
  }
  acc_t counts[L];
  std::memcpy(counts, &count, sizeof(V));
  for (int l = 0; l < L; ++l) {
    acc_t* column = sorted + l * n;
    const int64_t first_nan = n - static_cast<int64_t>(counts[l]);
    for (int64_t p = 0; p < n; ++p)
      column[p] = p < first_nan ? stage[p * L + l] : std::numeric_limits<acc_t>::quiet_NaN();
  }
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
#define BYZAGG_COORDINATE_PATH_DEFINITIONS(Simd)                                                          \
  int64_t coordinate_columns(const float* const* rows, int64_t n, int64_t begin, int64_t end, int64_t f,  \
                             core::CoordinateRule rule, float* out) {                                     \
    return columns<Simd, float>(rows, n, begin, end, f, rule, out);                                       \
  }                                                                                                       \
  int64_t coordinate_columns(const double* const* rows, int64_t n, int64_t begin, int64_t end, int64_t f, \
                             core::CoordinateRule rule, double* out) {                                    \
    return columns<Simd, double>(rows, n, begin, end, f, rule, out);                                      \
  }                                                                                                       \
  void sort_columns(const float* const* rows, int64_t n, int64_t c0, float* stage, float* sorted) {       \
    bitonic_sort<Simd, float>(rows, n, c0, stage, sorted);                                                \
  }                                                                                                       \
  void sort_columns(const double* const* rows, int64_t n, int64_t c0, double* stage, double* sorted) {    \
    bitonic_sort<Simd, double>(rows, n, c0, stage, sorted);                                               \
  }
