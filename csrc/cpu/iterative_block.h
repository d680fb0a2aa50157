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

// Software prefetch distance, in elements: the rows are read in chunks of a block's width,
// a row after the other, which the hardware prefetchers follow poorly.
constexpr int64_t kPrefetchAhead = 1024;

template <typename T>
BYZAGG_PASS_INLINE void prefetch(const T* p) {
  __builtin_prefetch(p + kPrefetchAhead);
}

// sum over [c0, c1) of (x - v)^2 (and of x * 0 when Probe): four vector accumulators over
// 32 columns at a time, then one over 8, then a scalar tail, added in a fixed order.
template <bool Probe, typename T>
BYZAGG_PASS_INLINE void row_sum(const T* x, const double* v, int64_t c0, int64_t c1, double* sum, double* probe) {
  const V8d zero = V8d{};
  V8d a0 = zero, a1 = zero, a2 = zero, a3 = zero, p0 = zero;
  int64_t c = c0;
  for (; c + 32 <= c1; c += 32) {
    prefetch(x + c);
    prefetch(x + c + 16);
    const V8d x0 = load8(x + c), x1 = load8(x + c + 8), x2 = load8(x + c + 16), x3 = load8(x + c + 24);
    const V8d d0 = x0 - load8(v + c), d1 = x1 - load8(v + c + 8);
    const V8d d2 = x2 - load8(v + c + 16), d3 = x3 - load8(v + c + 24);
    a0 = a0 + d0 * d0;
    a1 = a1 + d1 * d1;
    a2 = a2 + d2 * d2;
    a3 = a3 + d3 * d3;
    if (Probe) p0 = p0 + ((x0 * zero + x1 * zero) + (x2 * zero + x3 * zero));
  }
  for (; c + 8 <= c1; c += 8) {
    const V8d xv = load8(x + c);
    const V8d diff = xv - load8(v + c);
    a0 = a0 + diff * diff;
    if (Probe) p0 = p0 + xv * zero;
  }
  double tail = 0.0, tail_probe = 0.0;
  for (; c < c1; ++c) {
    const double xv = to_double(x[c]);
    const double diff = xv - v[c];
    tail = tail + diff * diff;
    if (Probe) tail_probe = tail_probe + xv * 0.0;
  }
  *sum = lane_sum((a0 + a1) + (a2 + a3)) + tail;
  if (Probe) *probe = lane_sum(p0) + tail_probe;
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

// BrSGD's scores on [c0, c1) (docs/api.md): per column the mean of its finite values (added in
// row order, a non-finite value adding 0 as in the reference), the side of it that holds
// the majority (>= mean is the upper side, which wins ties); then per row the number of its
// finite values on that side (score[i] for the block) and whether it has a non-finite value
// (nonfinite[i]). scratch: 3 (c1 - c0) doubles.
template <typename T>
BYZAGG_PASS_INLINE void brsgd_scores_impl(const T* X, int64_t n, int64_t d, int64_t c0, int64_t c1, double* scratch,
                                          int64_t* score, uint8_t* nonfinite) {
  const int64_t width = c1 - c0, vec_width = width / 8 * 8;
  double* mean = scratch;
  double* count = scratch + width;
  double* upper = scratch + 2 * width;  // upper minus lower count, then 1 where upper wins
  const V8d zero = V8d{}, one = zero + 1.0;
  for (int64_t c = 0; c < width; ++c) mean[c] = 0.0, count[c] = 0.0, upper[c] = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const T* x = X + i * d + c0;
    int64_t c = 0;
    for (; c < vec_width; c += 8) {
      if ((c & 15) == 0) prefetch(x + c);
      const V8d xv = load8(x + c);
      const V8m finite = (xv - xv) == zero;
      store8(mean + c, load8(mean + c) + BYZAGG_PASS_SELECT(finite, xv));
      store8(count + c, load8(count + c) + BYZAGG_PASS_SELECT(finite, one));
    }
    for (; c < width; ++c) {
      const double xv = to_double(x[c]);
      const bool finite = xv - xv == 0.0;
      mean[c] = mean[c] + (finite ? xv : 0.0);
      count[c] = count[c] + (finite ? 1.0 : 0.0);
    }
  }
  for (int64_t c = 0; c < width; ++c) mean[c] = mean[c] / count[c];  // NaN when none is finite
  for (int64_t i = 0; i < n; ++i) {
    const T* x = X + i * d + c0;
    int64_t c = 0;
    for (; c < vec_width; c += 8) {
      const V8d xv = load8(x + c), m = load8(mean + c);
      const V8m finite = (xv - xv) == zero;
      // +1 on the upper side (x >= m), -1 on the lower (x < m), 0 if neither or not finite
      const V8d side = BYZAGG_PASS_SELECT(finite & (xv >= m), one) + BYZAGG_PASS_SELECT(finite & (xv < m), -one);
      store8(upper + c, load8(upper + c) + side);
    }
    for (; c < width; ++c) {
      const double xv = to_double(x[c]);
      if (xv - xv == 0.0) upper[c] = upper[c] + (xv >= mean[c] ? 1.0 : (xv < mean[c] ? -1.0 : 0.0));
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const T* x = X + i * d + c0;
    V8d points = zero, bad = zero;
    int64_t c = 0;
    for (; c < vec_width; c += 8) {
      const V8d xv = load8(x + c), m = load8(mean + c), u = load8(upper + c);
      const V8m finite = (xv - xv) == zero;
      const V8m upper_wins = u >= zero;
      const V8m on_side = (upper_wins & (xv >= m)) | (~upper_wins & (xv < m));
      points = points + BYZAGG_PASS_SELECT(finite & on_side, one);
      bad = bad + BYZAGG_PASS_SELECT(~finite, one);
    }
    double tail_points = 0.0, tail_bad = 0.0;
    for (; c < width; ++c) {
      const double xv = to_double(x[c]);
      const bool finite = xv - xv == 0.0;
      const bool on_side = upper[c] >= 0.0 ? xv >= mean[c] : xv < mean[c];
      tail_points = tail_points + (finite && on_side ? 1.0 : 0.0);
      tail_bad = tail_bad + (finite ? 0.0 : 1.0);
    }
    score[i] = static_cast<int64_t>(lane_sum(points) + tail_points);
    nonfinite[i] = (lane_sum(bad) + tail_bad) > 0.0;
  }
}

// The geometric median's iteration pass on [c0, c1) (csrc/core/geometric_median.h):
// z <- z + lam s; y = (sum_i beta_i x_i) / beta_sum over the rows with use[i] (added in row
// order) and q0[i] = sum (x_i - z)^2 in the same sweep; s <- y - z and *e = sum s^2; then,
// the block still in cache, b[i] = sum (z - x_i) s and r[i] = sum (x_i - x_k)^2, x_k the
// candidate row (xk: its full row). y: scratch of c1 - c0 doubles.
template <typename T>
BYZAGG_PASS_INLINE void gm_step_impl(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* beta,
                                     double beta_sum, double lam, double* z, double* s, int64_t c0, int64_t c1,
                                     double* y, double* q0, double* b, double* e, const T* xk, double* r) {
  const int64_t width = c1 - c0, vec_width = width / 8 * 8, wide = width / 16 * 16;
  const V8d zero = V8d{};
  double* zc = z + c0;
  double* sc = s + c0;
  const T* kc = xk + c0;
  for (int64_t c = 0; c < width; ++c) {
    zc[c] = zc[c] + lam * sc[c];
    y[c] = 0.0;
  }
  for (int64_t i = 0; i < n; ++i) {
    if (!use[i]) continue;
    const T* x = X + i * d + c0;
    const double bi = beta[i];
    const V8d bv = zero + bi;
    V8d a0 = zero, a1 = zero;
    int64_t c = 0;
    for (; c < wide; c += 16) {
      prefetch(x + c);
      const V8d x0 = load8(x + c), x1 = load8(x + c + 8);
      store8(y + c, load8(y + c) + bv * x0);
      store8(y + c + 8, load8(y + c + 8) + bv * x1);
      const V8d d0 = x0 - load8(zc + c), d1 = x1 - load8(zc + c + 8);
      a0 = a0 + d0 * d0;
      a1 = a1 + d1 * d1;
    }
    for (; c < vec_width; c += 8) {
      const V8d x0 = load8(x + c);
      store8(y + c, load8(y + c) + bv * x0);
      const V8d d0 = x0 - load8(zc + c);
      a0 = a0 + d0 * d0;
    }
    double tail = 0.0;
    for (; c < width; ++c) {
      const double xv = to_double(x[c]);
      y[c] = y[c] + bi * xv;
      const double diff = xv - zc[c];
      tail = tail + diff * diff;
    }
    q0[i] = lane_sum(a0 + a1) + tail;
  }
  V8d ev = zero;
  int64_t c = 0;
  for (; c < vec_width; c += 8) {
    const V8d sv = load8(y + c) / beta_sum - load8(zc + c);
    store8(sc + c, sv);
    ev = ev + sv * sv;
  }
  double tail_e = 0.0;
  for (; c < width; ++c) {
    const double sv = y[c] / beta_sum - zc[c];
    sc[c] = sv;
    tail_e = tail_e + sv * sv;
  }
  *e = lane_sum(ev) + tail_e;
  for (int64_t i = 0; i < n; ++i) {
    if (!use[i]) continue;
    const T* x = X + i * d + c0;
    V8d a0 = zero, a1 = zero, r0 = zero, r1 = zero;
    int64_t k = 0;
    for (; k < wide; k += 16) {
      const V8d x0 = load8(x + k), x1 = load8(x + k + 8);
      a0 = a0 + (load8(zc + k) - x0) * load8(sc + k);
      a1 = a1 + (load8(zc + k + 8) - x1) * load8(sc + k + 8);
      const V8d d0 = x0 - load8(kc + k), d1 = x1 - load8(kc + k + 8);
      r0 = r0 + d0 * d0;
      r1 = r1 + d1 * d1;
    }
    for (; k < vec_width; k += 8) {
      const V8d x0 = load8(x + k);
      a0 = a0 + (load8(zc + k) - x0) * load8(sc + k);
      const V8d d0 = x0 - load8(kc + k);
      r0 = r0 + d0 * d0;
    }
    double tail = 0.0, tail_r = 0.0;
    for (; k < width; ++k) {
      const double xv = to_double(x[k]);
      tail = tail + (zc[k] - xv) * sc[k];
      const double diff = xv - to_double(kc[k]);
      tail_r = tail_r + diff * diff;
    }
    b[i] = lane_sum(a0 + a1) + tail;
    r[i] = lane_sum(r0 + r1) + tail_r;
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
                  uint8_t* nonfinite) {
  brsgd_scores_impl(X, n, d, c0, c1, scratch, score, nonfinite);
}
template <typename T>
void gm_step(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* beta, double beta_sum, double lam,
             double* z, double* s, int64_t c0, int64_t c1, double* y, double* q0, double* b, double* e, const T* xk,
             double* r) {
  gm_step_impl(X, n, d, use, beta, beta_sum, lam, z, s, c0, c1, y, q0, b, e, xk, r);
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
