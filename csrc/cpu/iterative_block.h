// Block kernels of the iterative rules (centered clipping, geometric median, BrSGD's mean),
// written once and compiled per ISA: iterative_avx512.cpp and iterative_avx2.cpp include
// this header after their `#pragma GCC target`, iterative.cpp for the baseline ISA
// (which also serves float16 and bfloat16). Everything here has internal linkage (an
// unnamed namespace), so each translation unit keeps its own copy, compiled for its ISA, and
// no copy can stand in for another at link time. Torch-free.
//
// Arithmetic in float64 on 8 lanes (a GCC vector of 8 doubles: one zmm, two ymm or four xmm
// registers): lane l of a row sum takes the coordinates c0 + 8k + l, the tail coordinates go
// to a scalar sum, and the lanes are added in a fixed order. No contraction into FMA
// (fp-contract=off), so every ISA gives the same bits.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "iterative_passes.h"

// V8d returned by value: GCC notes that its ABI differs with and without AVX-512; every
// function here has internal linkage, so no call crosses that boundary (for the rest of
// the translation unit too: the instantiations are emitted at its end).
#pragma GCC diagnostic ignored "-Wpsabi"

namespace byzagg {
namespace cpu {
namespace {

typedef double V8d __attribute__((vector_size(64)));
typedef float V8f __attribute__((vector_size(32)));
typedef int64_t V8m __attribute__((vector_size(64)));  // lane masks of V8d comparisons
#define BYZAGG_PASS_INLINE inline __attribute__((always_inline))

// a's lanes where mask is set, +0.0 elsewhere: a bitwise select (GCC turns a vector ?: of
// V8d into per-lane branches).
#define BYZAGG_PASS_SELECT(mask, a) ((V8d)((V8m)(a) & (mask)))

inline double to_double(double x) { return x; }
// float, float16 and bfloat16 (both convert to float exactly)
template <typename T>
inline double to_double(T x) {
  return static_cast<double>(static_cast<float>(x));
}

// float16 and bfloat16: lane by lane (float and double have vector loads below)
template <typename T>
BYZAGG_PASS_INLINE V8d load8(const T* p) {
  V8d v;
  for (int l = 0; l < 8; ++l) v[l] = to_double(p[l]);
  return v;
}

BYZAGG_PASS_INLINE V8d load8(const double* p) {
  V8d v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

BYZAGG_PASS_INLINE V8d load8(const float* p) {
  V8f v;
  std::memcpy(&v, p, sizeof(v));
  return __builtin_convertvector(v, V8d);
}

BYZAGG_PASS_INLINE void store8(double* p, V8d v) { std::memcpy(p, &v, sizeof(v)); }

BYZAGG_PASS_INLINE double lane_sum(V8d v) { return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7])); }

// The geometric median's iteration pass works on 4 lanes (a GCC vector of 4 doubles: one
// ymm or two xmm registers) and keeps every accumulator in a register: GCC keeps an 8-lane
// accumulator on the stack where the ISA has no 64-byte registers (AVX2), and a loop that
// stores and reloads halves of it runs several times slower. Lane l of a row sum takes
// the coordinates c0 + 4k + l; the lanes are added as (l0 + l2) + (l1 + l3), then the
// tail coordinates (a scalar sum); every ISA runs the same operations.
typedef double V4d __attribute__((vector_size(32)));
typedef float V4f __attribute__((vector_size(16)));

template <typename T>
BYZAGG_PASS_INLINE V4d load4(const T* p) {
  V4d v;
  for (int l = 0; l < 4; ++l) v[l] = to_double(p[l]);
  return v;
}

BYZAGG_PASS_INLINE V4d load4(const double* p) {
  V4d v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

BYZAGG_PASS_INLINE V4d load4(const float* p) {
  V4f v;
  std::memcpy(&v, p, sizeof(v));
  return __builtin_convertvector(v, V4d);
}

BYZAGG_PASS_INLINE void store4(double* p, V4d v) { std::memcpy(p, &v, sizeof(v)); }

BYZAGG_PASS_INLINE double lane_sum4(V4d v) { return (v[0] + v[2]) + (v[1] + v[3]); }

// Software prefetch distance, in elements: the rows are read in chunks of a block's width,
// a row after the other, which the hardware prefetchers follow poorly.
constexpr int64_t kPrefetchAhead = 1024;

template <typename T>
BYZAGG_PASS_INLINE void prefetch(const T* p) {
  __builtin_prefetch(p + kPrefetchAhead);
}

// sum over [c0, c1) of (x - v)^2 (and of x * 0 when Probe): four 8-lane accumulators over
// 32 columns at a time, then one over 8, then a scalar tail, added in a fixed order. Each
// 8-lane accumulator is kept as two 4-lane halves (V4d, below: registers on every ISA);
// lane_sum of the 8 lanes is lane_sum4 of the halves' sum, the same operations.
template <bool Probe, typename T>
BYZAGG_PASS_INLINE void row_sum(const T* x, const double* v, int64_t c0, int64_t c1, double* sum, double* probe) {
  const V4d zero = V4d{};
  V4d a0 = zero, a1 = zero, a2 = zero, a3 = zero, a4 = zero, a5 = zero, a6 = zero, a7 = zero;
  V4d p0 = zero, p1 = zero;
  int64_t c = c0;
  for (; c + 32 <= c1; c += 32) {
    prefetch(x + c);
    prefetch(x + c + 16);
    const V4d x0 = load4(x + c), x1 = load4(x + c + 4), x2 = load4(x + c + 8), x3 = load4(x + c + 12);
    const V4d x4 = load4(x + c + 16), x5 = load4(x + c + 20), x6 = load4(x + c + 24), x7 = load4(x + c + 28);
    const V4d d0 = x0 - load4(v + c), d1 = x1 - load4(v + c + 4), d2 = x2 - load4(v + c + 8),
              d3 = x3 - load4(v + c + 12);
    const V4d d4 = x4 - load4(v + c + 16), d5 = x5 - load4(v + c + 20), d6 = x6 - load4(v + c + 24),
              d7 = x7 - load4(v + c + 28);
    a0 = a0 + d0 * d0;  // lanes 0-3 of the 8-lane accumulator of columns c..c+7
    a1 = a1 + d1 * d1;  // lanes 4-7
    a2 = a2 + d2 * d2;
    a3 = a3 + d3 * d3;
    a4 = a4 + d4 * d4;
    a5 = a5 + d5 * d5;
    a6 = a6 + d6 * d6;
    a7 = a7 + d7 * d7;
    if (Probe) {
      p0 = p0 + ((x0 * zero + x2 * zero) + (x4 * zero + x6 * zero));
      p1 = p1 + ((x1 * zero + x3 * zero) + (x5 * zero + x7 * zero));
    }
  }
  for (; c + 8 <= c1; c += 8) {
    const V4d x0 = load4(x + c), x1 = load4(x + c + 4);
    const V4d d0 = x0 - load4(v + c), d1 = x1 - load4(v + c + 4);
    a0 = a0 + d0 * d0;
    a1 = a1 + d1 * d1;
    if (Probe) {
      p0 = p0 + x0 * zero;
      p1 = p1 + x1 * zero;
    }
  }
  double tail = 0.0, tail_probe = 0.0;
  for (; c < c1; ++c) {
    const double xv = to_double(x[c]);
    const double diff = xv - v[c];
    tail = tail + diff * diff;
    if (Probe) tail_probe = tail_probe + xv * 0.0;
  }
  *sum = lane_sum4(((a0 + a2) + (a4 + a6)) + ((a1 + a3) + (a5 + a7))) + tail;
  if (Probe) *probe = lane_sum4(p0 + p1) + tail_probe;
}

// sums[i] = sum over [c0, c1) of (x_i - v)^2 for the rows with use[i]; when probe is set,
// probe[i] = sum of x_i * 0 (0 for a finite row, NaN otherwise).
template <typename T>
BYZAGG_PASS_INLINE void row_sums_impl(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* v, int64_t c0,
                                      int64_t c1, double* sums, double* probe) {
  for (int64_t i = 0; i < n; ++i) {
    if (!use[i]) continue;
    if (probe) {
      row_sum<true>(X + i * d, v, c0, c1, sums + i, probe + i);
    } else {
      row_sum<false>(X + i * d, v, c0, c1, sums + i, nullptr);
    }
  }
}

// The rows with use[i], in order, four at a time (fewer at the end).
BYZAGG_PASS_INLINE int64_t next_rows(const uint8_t* use, int64_t n, int64_t from, int64_t* rows, int* count) {
  *count = 0;
  int64_t i = from;
  for (; i < n && *count < 4; ++i)
    if (use[i]) rows[(*count)++] = i;
  return i;
}

// Centered clipping's update on [c0, c1): v <- v + (sum_i scale_i (x_i - v)) / count over
// the rows with use[i], added in row order (four rows per sweep, the running sum kept in
// registers: the same order as one row at a time); acc is scratch for c1 - c0 values.
template <typename T>
BYZAGG_PASS_INLINE void clip_update_impl(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* scale,
                                         double count, double* v, int64_t c0, int64_t c1, double* acc) {
  const int64_t width = c1 - c0, vec_width = width / 8 * 8;
  const double* center = v + c0;
  for (int64_t c = 0; c < width; ++c) acc[c] = 0.0;
  int64_t rows[4];
  int k = 0;
  for (int64_t from = next_rows(use, n, 0, rows, &k); k > 0; from = next_rows(use, n, from, rows, &k)) {
    const T* x[4];
    double s[4];
    V8d sv[4];
    for (int r = 0; r < 4; ++r) {
      x[r] = X + rows[r < k ? r : 0] * d + c0;
      s[r] = scale[rows[r < k ? r : 0]];
      sv[r] = V8d{} + s[r];
    }
    if (k == 4) {
      for (int64_t c = 0; c < vec_width; c += 8) {
        if ((c & 15) == 0) {
          prefetch(x[0] + c), prefetch(x[1] + c), prefetch(x[2] + c), prefetch(x[3] + c);
        }
        const V8d vc = load8(center + c);
        V8d a = load8(acc + c);
        a = a + sv[0] * (load8(x[0] + c) - vc);
        a = a + sv[1] * (load8(x[1] + c) - vc);
        a = a + sv[2] * (load8(x[2] + c) - vc);
        a = a + sv[3] * (load8(x[3] + c) - vc);
        store8(acc + c, a);
      }
    } else {
      for (int64_t c = 0; c < vec_width; c += 8) {
        const V8d vc = load8(center + c);
        V8d a = load8(acc + c);
        for (int r = 0; r < k; ++r) a = a + sv[r] * (load8(x[r] + c) - vc);
        store8(acc + c, a);
      }
    }
    for (int64_t c = vec_width; c < width; ++c) {
      double a = acc[c];
      for (int r = 0; r < k; ++r) a = a + s[r] * (to_double(x[r][c]) - center[c]);
      acc[c] = a;
    }
  }
  for (int64_t c = 0; c < width; ++c) v[c0 + c] = v[c0 + c] + acc[c] / count;
}

// out[c] = (sum_i coef_i x_i[c]) / divisor on [c0, c1) over the rows with use[i], added
// in row order.
template <typename T>
BYZAGG_PASS_INLINE void combine_impl(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* coef,
                                     double divisor, int64_t c0, int64_t c1, double* out) {
  const int64_t vec_end = c0 + (c1 - c0) / 8 * 8;
  for (int64_t c = c0; c < c1; ++c) out[c] = 0.0;
  int64_t rows[4];
  int k = 0;
  for (int64_t from = next_rows(use, n, 0, rows, &k); k > 0; from = next_rows(use, n, from, rows, &k)) {
    for (int r = 0; r < k; ++r) {
      const T* x = X + rows[r] * d;
      const double a = coef[rows[r]];
      const V8d av = V8d{} + a;
      for (int64_t c = c0; c < vec_end; c += 8) {
        if ((c & 15) == 0) prefetch(x + c);
        store8(out + c, load8(out + c) + av * load8(x + c));
      }
      for (int64_t c = vec_end; c < c1; ++c) out[c] = out[c] + a * to_double(x[c]);
    }
  }
  for (int64_t c = c0; c < c1; ++c) out[c] = out[c] / divisor;
}

// sums[i] = sum over [c0, c1) of |x_i - v| for the rows with use[i] (BrSGD's l1 distances).
template <typename T>
BYZAGG_PASS_INLINE void row_l1_impl(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* v, int64_t c0,
                                    int64_t c1, double* sums) {
  const V8d zero = V8d{};
  for (int64_t i = 0; i < n; ++i) {
    if (!use[i]) continue;
    const T* x = X + i * d;
    V8d a0 = zero, a1 = zero;
    int64_t c = c0;
    for (; c + 16 <= c1; c += 16) {
      prefetch(x + c);
      const V8d d0 = load8(x + c) - load8(v + c), d1 = load8(x + c + 8) - load8(v + c + 8);
      a0 = a0 + (d0 < zero ? -d0 : d0);
      a1 = a1 + (d1 < zero ? -d1 : d1);
    }
    double tail = 0.0;
    for (; c < c1; ++c) tail = tail + std::fabs(to_double(x[c]) - v[c]);
    sums[i] = lane_sum(a0 + a1) + tail;
  }
}

// BrSGD's comparisons run in the element type's own precision where that is exact: a float
// (or float16 / bfloat16, converted exactly) x satisfies x >= m, for a float64 m, exactly
// when x >= the least float >= m (ceil_to), and x < m exactly when x < that float. Its
// sweeps use 32-byte vectors (8 floats or 4 doubles, with lane masks of the same width),
// which every ISA here has natively (AVX2 has no 64-byte vectors: GCC splits their
// comparisons into scalar code).
template <typename T>
struct ScoreLanes {
  typedef float C;
  typedef int32_t I;
  typedef float V __attribute__((vector_size(32)));
  typedef int32_t M __attribute__((vector_size(32)));
  static constexpr int L = 8;
};
template <>
struct ScoreLanes<double> {
  typedef double C;
  typedef int64_t I;
  typedef double V __attribute__((vector_size(32)));
  typedef int64_t M __attribute__((vector_size(32)));
  static constexpr int L = 4;
};

template <typename T>
BYZAGG_PASS_INLINE typename ScoreLanes<T>::V load_cmp(const T* p) {
  typename ScoreLanes<T>::V v;
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    std::memcpy(&v, p, sizeof(v));
  } else {
    for (int l = 0; l < 8; ++l) v[l] = static_cast<float>(p[l]);
  }
  return v;
}

template <typename Vec, typename P>
BYZAGG_PASS_INLINE Vec load_as(const P* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename Vec, typename P>
BYZAGG_PASS_INLINE void store_as(P* p, Vec v) {
  std::memcpy(p, &v, sizeof(v));
}

// sum[0, L) += the lanes of v in float64, on 32-byte vectors (a 64-byte vector of doubles
// would go through the stack on AVX2).
BYZAGG_PASS_INLINE void add_widened(double* sum, ScoreLanes<float>::V v) {
  const V4f low = __builtin_shufflevector(v, v, 0, 1, 2, 3), high = __builtin_shufflevector(v, v, 4, 5, 6, 7);
  store4(sum, load4(sum) + __builtin_convertvector(low, V4d));
  store4(sum + 4, load4(sum + 4) + __builtin_convertvector(high, V4d));
}
BYZAGG_PASS_INLINE void add_widened(double* sum, ScoreLanes<double>::V v) { store4(sum, load4(sum) + v); }

// The least C >= m (m itself for double). For float: m is a mean of floats, so |m| <=
// FLT_MAX and the rounded value is finite (or NaN); one step up where it rounded down.
template <typename C>
inline C ceil_to(double m) {
  if constexpr (std::is_same_v<C, double>) {
    return m;
  } else {
    float f = static_cast<float>(m);
    if (static_cast<double>(f) < m) {  // f < m: f is not -0.0, and one ulp towards +inf
      uint32_t bits;
      std::memcpy(&bits, &f, sizeof(bits));
      bits = f >= 0.0f ? bits + 1 : bits - 1;
      std::memcpy(&f, &bits, sizeof(f));
    }
    return f;
  }
}

template <typename M>
BYZAGG_PASS_INLINE int64_t mask_lane_sum(M v, int lanes) {
  int64_t sum = 0;
  for (int l = 0; l < lanes; ++l) sum += v[l];
  return sum;
}

// BrSGD's scores on [c0, c1) (docs/api.md): per column the mean of its finite values (added in
// row order, in float64, a non-finite value adding 0 as in the reference) and the side of it
// that holds the majority (>= mean is the upper side, which wins ties); then per row the
// number of its finite values on that side (score[i] for the block) and whether it has a
// non-finite value (nonfinite[i]); *least_finite = the least number of finite values of a
// column of the block. Three sweeps over the block's rows:
// 1. the finite values' sum (float64) and count per column;
// 2. upper[c] = #(m <= x < inf), the finite values on the upper side (the others of the
//    count are below m: upper wins iff 2 upper >= count; no finite value: mean NaN, upper 0,
//    upper wins as in the reference, and no row scores);
// 3. per column the winning side as one interval [lo, hi): [m, inf) or [lowest, m) (the
//    finite values below m); per row the values inside it, and the non-finite ones.
// scratch: 6 (c1 - c0) doubles.
template <typename T>
BYZAGG_PASS_INLINE void brsgd_scores_impl(const T* X, int64_t n, int64_t d, int64_t c0, int64_t c1, double* scratch,
                                          int64_t* score, uint8_t* nonfinite, int64_t* least_finite) {
  typedef ScoreLanes<T> S;
  typedef typename S::C C;
  typedef typename S::I I;
  typedef typename S::V V;
  typedef typename S::M M;
  constexpr int L = S::L;
  const int64_t width = c1 - c0, vec_width = width / L * L;
  double* mean = scratch;
  I* count = reinterpret_cast<I*>(scratch + width);
  C* mc = reinterpret_cast<C*>(scratch + 2 * width);  // ceil_to(mean)
  C* lo = reinterpret_cast<C*>(scratch + 3 * width);  // the winning side [lo, hi)
  C* hi = reinterpret_cast<C*>(scratch + 4 * width);
  I* upper = reinterpret_cast<I*>(scratch + 5 * width);
  const C inf = std::numeric_limits<C>::infinity(), lowest = std::numeric_limits<C>::lowest();
  const V vinf = V{} + inf;
  for (int64_t c = 0; c < width; ++c) mean[c] = 0.0, count[c] = 0, upper[c] = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T* x = X + i * d + c0;
    int64_t c = 0;
    for (; c < vec_width; c += L) {
      if ((c & 15) == 0) prefetch(x + c);
      const V xv = load_cmp(x + c);
      const M finite = (xv - xv) == V{};
      const V kept = (V)((M)xv & finite);  // the value, +0.0 where not finite
      add_widened(mean + c, kept);
      store_as(count + c, load_as<M>(count + c) - finite);  // a true lane is -1
    }
    for (; c < width; ++c) {
      const C xv = static_cast<C>(x[c]);
      const bool finite = xv - xv == C(0);
      mean[c] = mean[c] + (finite ? static_cast<double>(xv) : 0.0);
      count[c] += finite;
    }
  }
  I least = static_cast<I>(n);
  for (int64_t c = 0; c < width; ++c) {
    mean[c] = mean[c] / static_cast<double>(count[c]);  // NaN when none is finite
    mc[c] = ceil_to<C>(mean[c]);
    least = count[c] < least ? count[c] : least;
  }
  *least_finite = static_cast<int64_t>(least);
  for (int64_t i = 0; i < n; ++i) {
    const T* x = X + i * d + c0;
    int64_t c = 0;
    for (; c < vec_width; c += L) {
      const V xv = load_cmp(x + c);
      store_as(upper + c, load_as<M>(upper + c) - ((xv >= load_as<V>(mc + c)) & (xv < vinf)));
    }
    for (; c < width; ++c) {
      const C xv = static_cast<C>(x[c]);
      upper[c] += (xv >= mc[c]) & (xv < inf);
    }
  }
  for (int64_t c = 0; c < width; ++c) {
    const bool upper_wins = 2 * static_cast<int64_t>(upper[c]) >= static_cast<int64_t>(count[c]);
    lo[c] = upper_wins ? mc[c] : lowest;
    hi[c] = upper_wins ? inf : mc[c];
  }
  for (int64_t i = 0; i < n; ++i) {
    const T* x = X + i * d + c0;
    M points = M{}, bad = M{};
    int64_t c = 0;
    for (; c < vec_width; c += L) {
      const V xv = load_cmp(x + c);
      points = points - ((xv >= load_as<V>(lo + c)) & (xv < load_as<V>(hi + c)));
      bad = bad - ((xv - xv) != V{});
    }
    int64_t tail_points = 0, tail_bad = 0;
    for (; c < width; ++c) {
      const C xv = static_cast<C>(x[c]);
      tail_points += (xv >= lo[c]) & (xv < hi[c]);
      tail_bad += !(xv - xv == C(0));
    }
    score[i] = mask_lane_sum(points, L) + tail_points;
    nonfinite[i] = (mask_lane_sum(bad, L) + tail_bad) > 0;
  }
}

// The geometric median's iteration pass on [c0, c1) (csrc/core/geometric_median.h):
// z <- z + lam s; y = (sum_i beta_i x_i) / beta_sum over the rows with use[i] (added in row
// order, four rows per sweep: the same order as one at a time) and q0[i] = sum (x_i - z)^2
// in the same sweep; s <- y - z and *e = sum s^2; then, the block still in cache, two rows
// per sweep, b[i] = sum (z - x_i) s and, with Candidate, r[i] = sum (x_i - x_k)^2, x_k the
// candidate row (xk: its full row). y: scratch of c1 - c0 doubles (then x_k's block in
// double).
template <bool Candidate, typename T>
BYZAGG_PASS_INLINE void gm_step_impl(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* beta,
                                     double beta_sum, double lam, double* z, double* s, int64_t c0, int64_t c1,
                                     double* y, double* q0, double* b, double* e, const T* xk, double* r) {
  const int64_t width = c1 - c0, vec_width = width / 4 * 4;
  const V4d zero = V4d{};
  double* zc = z + c0;
  double* sc = s + c0;
  for (int64_t c = 0; c < width; ++c) {
    zc[c] = zc[c] + lam * sc[c];
    y[c] = 0.0;
  }
  int64_t rows[4];
  int k = 0;
  for (int64_t from = next_rows(use, n, 0, rows, &k); k > 0; from = next_rows(use, n, from, rows, &k)) {
    const T* x[4];
    double bi[4];
    for (int j = 0; j < 4; ++j) {
      x[j] = X + rows[j < k ? j : 0] * d + c0;
      bi[j] = beta[rows[j < k ? j : 0]];
    }
    V4d a0 = zero, a1 = zero, a2 = zero, a3 = zero;
    int64_t c = 0;
    if (k == 4) {
      const V4d b0 = zero + bi[0], b1 = zero + bi[1], b2 = zero + bi[2], b3 = zero + bi[3];
      for (; c < vec_width; c += 4) {
        if ((c & 15) == 0) prefetch(x[0] + c), prefetch(x[1] + c), prefetch(x[2] + c), prefetch(x[3] + c);
        const V4d zv = load4(zc + c);
        V4d yv = load4(y + c);
        const V4d x0 = load4(x[0] + c), x1 = load4(x[1] + c), x2 = load4(x[2] + c), x3 = load4(x[3] + c);
        yv = yv + b0 * x0;
        yv = yv + b1 * x1;
        yv = yv + b2 * x2;
        yv = yv + b3 * x3;
        store4(y + c, yv);
        const V4d d0 = x0 - zv, d1 = x1 - zv, d2 = x2 - zv, d3 = x3 - zv;
        a0 = a0 + d0 * d0;
        a1 = a1 + d1 * d1;
        a2 = a2 + d2 * d2;
        a3 = a3 + d3 * d3;
      }
    } else {
      for (; c < vec_width; c += 4) {
        const V4d zv = load4(zc + c);
        V4d yv = load4(y + c);
        V4d* acc[4] = {&a0, &a1, &a2, &a3};
        for (int j = 0; j < k; ++j) {
          const V4d xv = load4(x[j] + c);
          yv = yv + (zero + bi[j]) * xv;
          const V4d dv = xv - zv;
          *acc[j] = *acc[j] + dv * dv;
        }
        store4(y + c, yv);
      }
    }
    double tail[4] = {0.0, 0.0, 0.0, 0.0};
    for (; c < width; ++c) {
      double yc = y[c];
      for (int j = 0; j < k; ++j) {
        const double xv = to_double(x[j][c]);
        yc = yc + bi[j] * xv;
        const double diff = xv - zc[c];
        tail[j] = tail[j] + diff * diff;
      }
      y[c] = yc;
    }
    const V4d acc[4] = {a0, a1, a2, a3};
    for (int j = 0; j < k; ++j) q0[rows[j]] = lane_sum4(acc[j]) + tail[j];
  }
  // s, e; then y holds x_k's block in double
  V4d ev = zero;
  int64_t c = 0;
  for (; c < vec_width; c += 4) {
    const V4d sv = load4(y + c) / beta_sum - load4(zc + c);
    store4(sc + c, sv);
    ev = ev + sv * sv;
  }
  double tail_e = 0.0;
  for (; c < width; ++c) {
    const double sv = y[c] / beta_sum - zc[c];
    sc[c] = sv;
    tail_e = tail_e + sv * sv;
  }
  *e = lane_sum4(ev) + tail_e;
  if (Candidate)
    for (c = 0; c < width; ++c) y[c] = to_double(xk[c0 + c]);
  for (int64_t from = next_rows(use, n, 0, rows, &k); k > 0; from = next_rows(use, n, from, rows, &k)) {
    for (int j = 0; j < k; j += 2) {
      const bool pair = j + 1 < k;
      const T* x0 = X + rows[j] * d + c0;
      const T* x1 = X + rows[pair ? j + 1 : j] * d + c0;
      V4d p0 = zero, p1 = zero, s0 = zero, s1 = zero;
      for (c = 0; c < vec_width; c += 4) {
        const V4d zv = load4(zc + c), sv = load4(sc + c);
        const V4d u0 = load4(x0 + c), u1 = load4(x1 + c);
        p0 = p0 + (zv - u0) * sv;
        p1 = p1 + (zv - u1) * sv;
        if (Candidate) {
          const V4d kv = load4(y + c);
          const V4d d0 = u0 - kv, d1 = u1 - kv;
          s0 = s0 + d0 * d0;
          s1 = s1 + d1 * d1;
        }
      }
      double tp0 = 0.0, tp1 = 0.0, ts0 = 0.0, ts1 = 0.0;
      for (; c < width; ++c) {
        const double u0 = to_double(x0[c]), u1 = to_double(x1[c]);
        tp0 = tp0 + (zc[c] - u0) * sc[c];
        tp1 = tp1 + (zc[c] - u1) * sc[c];
        if (Candidate) {
          const double d0 = u0 - y[c], d1 = u1 - y[c];
          ts0 = ts0 + d0 * d0;
          ts1 = ts1 + d1 * d1;
        }
      }
      b[rows[j]] = lane_sum4(p0) + tp0;
      if (Candidate) r[rows[j]] = lane_sum4(s0) + ts0;
      if (pair) {
        b[rows[j + 1]] = lane_sum4(p1) + tp1;
        if (Candidate) r[rows[j + 1]] = lane_sum4(s1) + ts1;
      }
    }
  }
}

// Addressable entry points (the _impl functions are forced inline) for PassKernels.
template <typename T>
void row_sums(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* v, int64_t c0, int64_t c1,
              double* sums, double* probe) {
  row_sums_impl(X, n, d, use, v, c0, c1, sums, probe);
}
template <typename T>
void clip_update(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* scale, double count, double* v,
                 int64_t c0, int64_t c1, double* acc) {
  clip_update_impl(X, n, d, use, scale, count, v, c0, c1, acc);
}
template <typename T>
void combine(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* coef, double divisor, int64_t c0,
             int64_t c1, double* out) {
  combine_impl(X, n, d, use, coef, divisor, c0, c1, out);
}
template <typename T>
void row_l1(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* v, int64_t c0, int64_t c1,
            double* sums) {
  row_l1_impl(X, n, d, use, v, c0, c1, sums);
}
template <typename T>
void brsgd_scores(const T* X, int64_t n, int64_t d, int64_t c0, int64_t c1, double* scratch, int64_t* score,
                  uint8_t* nonfinite, int64_t* least_finite) {
  brsgd_scores_impl(X, n, d, c0, c1, scratch, score, nonfinite, least_finite);
}
template <typename T>
void gm_step(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* beta, double beta_sum, double lam,
             double* z, double* s, int64_t c0, int64_t c1, double* y, double* q0, double* b, double* e, const T* xk,
             double* r) {
  if (xk) {
    gm_step_impl<true>(X, n, d, use, beta, beta_sum, lam, z, s, c0, c1, y, q0, b, e, xk, r);
  } else {
    gm_step_impl<false>(X, n, d, use, beta, beta_sum, lam, z, s, c0, c1, y, q0, b, e, xk, r);
  }
}

// The block kernels of this translation unit's copy, for element type T.
template <typename T>
PassKernels<T> block_kernels() {
  return {&row_sums<T>, &clip_update<T>, &combine<T>, &row_l1<T>, &brsgd_scores<T>, &gm_step<T>};
}

#undef BYZAGG_PASS_INLINE
#undef BYZAGG_PASS_SELECT

}  // namespace
}  // namespace cpu
}  // namespace byzagg
