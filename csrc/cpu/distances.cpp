// CPU kernel of the exact distance matrix (csrc/core/distances.h) and the op
// pairwise_distances. Register tiles of 4 x 4 row pairs, coordinates in chunks of 8 KiB
// per row, the chunk's sums formed in float (double for fp64) in the canonical lane order
// of core::squared_sum_lanes and added in double; work items are (superblock of chunks,
// pair of row blocks), and superblocks are added in order, so the bits depend neither on
// the number of threads nor on the vector ISA (AVX-512, AVX2 and the generic code agree).
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BYZAGG_X86_DISPATCH 1
#include <immintrin.h>
#else
#define BYZAGG_X86_DISPATCH 0
#endif

#include "../checks.h"
#include "../core/distances.h"
#include "distances.h"
#include "isa.h"

namespace byzagg {
namespace cpu {
namespace {

constexpr int kTile = static_cast<int>(core::kDistanceTileRows);
static_assert(kTile == 4, "the vector kernels are written for 4 x 4 tiles");

// out[a * 4 + b] = the canonical chunk sum of rows a[a] and b[b] on [0, len)
// (core::squared_sum_lanes): 16 float or 8 double lanes, fused multiply-adds, lanes halved
// in double. Every kernel below gives exactly these bits, whatever its register width.
template <typename T>
using TileKernel = void (*)(const T* const* a, const T* const* b, int64_t len, double* out);

// ---------------------------------------------------------------------------------------
// Generic kernels: any CPU (the compiler vectorises the lane loop where it can).

template <typename T>
void tile_generic(const T* const* a, const T* const* b, int64_t len, double* out) {
  core::tile_squared_sums<kTile, kTile>(a, b, len, out);
}

// Whether x[0, len) is all finite: x * 0 is 0 for a number, NaN for inf or NaN.
template <typename T>
bool all_finite(const T* x, int64_t len) {
  T probe = T(0);
#pragma omp simd reduction(+ : probe)
  for (int64_t k = 0; k < len; ++k) probe += x[k] * T(0);
  return probe == T(0);
}

using PairSum = double (*)(const float* x, const float* y, int64_t len);

double pair_sum_double_generic(const float* x, const float* y, int64_t len) {
  return core::squared_sum_double(x, y, len);
}

#if BYZAGG_X86_DISPATCH
// The same generic code compiled where the CPU has FMA: fmaf becomes an instruction
// instead of a library call (same bits).
__attribute__((target("avx2,fma"))) void tile_generic_f32_fma(const float* const* a, const float* const* b, int64_t len,
                                                              double* out) {
  core::tile_squared_sums<kTile, kTile>(a, b, len, out);
}
__attribute__((target("avx2,fma"))) void tile_generic_f64_fma(const double* const* a, const double* const* b,
                                                              int64_t len, double* out) {
  core::tile_squared_sums<kTile, kTile>(a, b, len, out);
}
__attribute__((target("avx2,fma"))) double pair_sum_double_fma(const float* x, const float* y, int64_t len) {
  return core::squared_sum_double(x, y, len);
}

// ---------------------------------------------------------------------------------------
// AVX-512: one register per pair holds the 16 float (8 double) lanes; 16 accumulators
// (4 x 4 pairs), 4 + 1 rows in flight. Accumulators are named variables, not an array, so
// that they stay in registers.

#define BYZAGG_DECLARE_ACCUMULATORS(VEC, ZERO)                                                                        \
  VEC acc00 = ZERO, acc01 = ZERO, acc02 = ZERO, acc03 = ZERO, acc10 = ZERO, acc11 = ZERO, acc12 = ZERO, acc13 = ZERO, \
      acc20 = ZERO, acc21 = ZERO, acc22 = ZERO, acc23 = ZERO, acc30 = ZERO, acc31 = ZERO, acc32 = ZERO, acc33 = ZERO

// One step of 4 x 4 pairs on one vector of coordinates at k; LOAD(pointer) loads a vector.
#define BYZAGG_TILE_STEP(VEC, LOAD, SUB, FMA)                                             \
  do {                                                                                    \
    const VEC x0 = LOAD(a0 + k), x1 = LOAD(a1 + k), x2 = LOAD(a2 + k), x3 = LOAD(a3 + k); \
    VEC y, d0, d1, d2, d3;                                                                \
    y = LOAD(b0 + k);                                                                     \
    d0 = SUB(x0, y), d1 = SUB(x1, y), d2 = SUB(x2, y), d3 = SUB(x3, y);                   \
    acc00 = FMA(d0, d0, acc00), acc10 = FMA(d1, d1, acc10);                               \
    acc20 = FMA(d2, d2, acc20), acc30 = FMA(d3, d3, acc30);                               \
    y = LOAD(b1 + k);                                                                     \
    d0 = SUB(x0, y), d1 = SUB(x1, y), d2 = SUB(x2, y), d3 = SUB(x3, y);                   \
    acc01 = FMA(d0, d0, acc01), acc11 = FMA(d1, d1, acc11);                               \
    acc21 = FMA(d2, d2, acc21), acc31 = FMA(d3, d3, acc31);                               \
    y = LOAD(b2 + k);                                                                     \
    d0 = SUB(x0, y), d1 = SUB(x1, y), d2 = SUB(x2, y), d3 = SUB(x3, y);                   \
    acc02 = FMA(d0, d0, acc02), acc12 = FMA(d1, d1, acc12);                               \
    acc22 = FMA(d2, d2, acc22), acc32 = FMA(d3, d3, acc32);                               \
    y = LOAD(b3 + k);                                                                     \
    d0 = SUB(x0, y), d1 = SUB(x1, y), d2 = SUB(x2, y), d3 = SUB(x3, y);                   \
    acc03 = FMA(d0, d0, acc03), acc13 = FMA(d1, d1, acc13);                               \
    acc23 = FMA(d2, d2, acc23), acc33 = FMA(d3, d3, acc33);                               \
  } while (0)

#define BYZAGG_STORE_ACCUMULATORS(REDUCE)                                                               \
  do {                                                                                                  \
    out[0] = REDUCE(acc00), out[1] = REDUCE(acc01), out[2] = REDUCE(acc02), out[3] = REDUCE(acc03);     \
    out[4] = REDUCE(acc10), out[5] = REDUCE(acc11), out[6] = REDUCE(acc12), out[7] = REDUCE(acc13);     \
    out[8] = REDUCE(acc20), out[9] = REDUCE(acc21), out[10] = REDUCE(acc22), out[11] = REDUCE(acc23);   \
    out[12] = REDUCE(acc30), out[13] = REDUCE(acc31), out[14] = REDUCE(acc32), out[15] = REDUCE(acc33); \
  } while (0)

// The halving reduction of core::reduce_lanes on 8 double lanes: (l, l + 4), (l, l + 2), (0, 1).
__attribute__((target("avx512f"))) inline double reduce_pd_avx512(__m512d v) {
  const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

// 16 float lanes: first (l, l + 8) in double, then as above.
__attribute__((target("avx512f"))) inline double reduce_ps_avx512(__m512 v) {
  const __m512d low = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  const __m512d high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  return reduce_pd_avx512(_mm512_add_pd(low, high));
}

__attribute__((target("avx512f"))) void tile_f32_avx512(const float* const* a, const float* const* b, int64_t len,
                                                        double* out) {
  const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
  const float *b0 = b[0], *b1 = b[1], *b2 = b[2], *b3 = b[3];
  BYZAGG_DECLARE_ACCUMULATORS(__m512, _mm512_setzero_ps());
  int64_t k = 0;
  for (; k + 16 <= len; k += 16) BYZAGG_TILE_STEP(__m512, _mm512_loadu_ps, _mm512_sub_ps, _mm512_fmadd_ps);
  if (k < len) {
    const __mmask16 mask = __mmask16((1u << (len - k)) - 1u);
#define BYZAGG_MASKED_LOAD(p) _mm512_maskz_loadu_ps(mask, p)
    BYZAGG_TILE_STEP(__m512, BYZAGG_MASKED_LOAD, _mm512_sub_ps, _mm512_fmadd_ps);
#undef BYZAGG_MASKED_LOAD
  }
  BYZAGG_STORE_ACCUMULATORS(reduce_ps_avx512);
}

__attribute__((target("avx512f"))) void tile_f64_avx512(const double* const* a, const double* const* b, int64_t len,
                                                        double* out) {
  const double *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
  const double *b0 = b[0], *b1 = b[1], *b2 = b[2], *b3 = b[3];
  BYZAGG_DECLARE_ACCUMULATORS(__m512d, _mm512_setzero_pd());
  int64_t k = 0;
  for (; k + 8 <= len; k += 8) BYZAGG_TILE_STEP(__m512d, _mm512_loadu_pd, _mm512_sub_pd, _mm512_fmadd_pd);
  if (k < len) {
    const __mmask8 mask = __mmask8((1u << (len - k)) - 1u);
#define BYZAGG_MASKED_LOAD(p) _mm512_maskz_loadu_pd(mask, p)
    BYZAGG_TILE_STEP(__m512d, BYZAGG_MASKED_LOAD, _mm512_sub_pd, _mm512_fmadd_pd);
#undef BYZAGG_MASKED_LOAD
  }
  BYZAGG_STORE_ACCUMULATORS(reduce_pd_avx512);
}

// ---------------------------------------------------------------------------------------
// AVX2 + FMA: two registers per pair hold the 16 float (8 double) lanes, low and high;
// with 16 registers the 4 x 4 tile runs as four 2 x 2 quarters (8 accumulators).

#define BYZAGG_QUARTER_STEP(VEC, LOAD_LO, LOAD_HI, W, SUB, FMA)                                                   \
  do {                                                                                                            \
    const VEC x0l = LOAD_LO(x0 + k), x0h = LOAD_HI(x0 + k + W), x1l = LOAD_LO(x1 + k), x1h = LOAD_HI(x1 + k + W); \
    VEC yl = LOAD_LO(y0 + k), yh = LOAD_HI(y0 + k + W), dl, dh;                                                   \
    dl = SUB(x0l, yl), dh = SUB(x0h, yh), s00l = FMA(dl, dl, s00l), s00h = FMA(dh, dh, s00h);                     \
    dl = SUB(x1l, yl), dh = SUB(x1h, yh), s10l = FMA(dl, dl, s10l), s10h = FMA(dh, dh, s10h);                     \
    yl = LOAD_LO(y1 + k), yh = LOAD_HI(y1 + k + W);                                                               \
    dl = SUB(x0l, yl), dh = SUB(x0h, yh), s01l = FMA(dl, dl, s01l), s01h = FMA(dh, dh, s01h);                     \
    dl = SUB(x1l, yl), dh = SUB(x1h, yh), s11l = FMA(dl, dl, s11l), s11h = FMA(dh, dh, s11h);                     \
  } while (0)

// 8 double lanes as low (0-3) and high (4-7): (l, l + 4), (l, l + 2), (0, 1).
__attribute__((target("avx2,fma"))) inline double reduce_pd_avx2(__m256d lo, __m256d hi) {
  const __m256d s4 = _mm256_add_pd(lo, hi);
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

// 16 float lanes as low (0-7) and high (8-15): (l, l + 8) in double, then as above.
__attribute__((target("avx2,fma"))) inline double reduce_ps_avx2(__m256 lo, __m256 hi) {
  const __m256d s8_low =
      _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(lo)), _mm256_cvtps_pd(_mm256_castps256_ps128(hi)));
  const __m256d s8_high =
      _mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(lo, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(hi, 1)));
  return reduce_pd_avx2(s8_low, s8_high);
}

__attribute__((target("avx2,fma"))) void tile_f32_avx2(const float* const* a, const float* const* b, int64_t len,
                                                       double* out) {
  const int64_t full = len - len % 16, rest = len - full;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i mask_lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rest)), lane);
  const __m256i mask_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rest) - 8), lane);
  for (int p = 0; p < kTile; p += 2)
    for (int q = 0; q < kTile; q += 2) {
      const float *x0 = a[p], *x1 = a[p + 1], *y0 = b[q], *y1 = b[q + 1];
      __m256 s00l = _mm256_setzero_ps(), s00h = s00l, s01l = s00l, s01h = s00l;
      __m256 s10l = s00l, s10h = s00l, s11l = s00l, s11h = s00l;
      int64_t k = 0;
      for (; k < full; k += 16)
        BYZAGG_QUARTER_STEP(__m256, _mm256_loadu_ps, _mm256_loadu_ps, 8, _mm256_sub_ps, _mm256_fmadd_ps);
      if (rest) {
#define BYZAGG_LOAD_LO(ptr) _mm256_maskload_ps(ptr, mask_lo)
#define BYZAGG_LOAD_HI(ptr) _mm256_maskload_ps(ptr, mask_hi)
        BYZAGG_QUARTER_STEP(__m256, BYZAGG_LOAD_LO, BYZAGG_LOAD_HI, 8, _mm256_sub_ps, _mm256_fmadd_ps);
#undef BYZAGG_LOAD_LO
#undef BYZAGG_LOAD_HI
      }
      out[p * kTile + q] = reduce_ps_avx2(s00l, s00h), out[p * kTile + q + 1] = reduce_ps_avx2(s01l, s01h);
      out[(p + 1) * kTile + q] = reduce_ps_avx2(s10l, s10h);
      out[(p + 1) * kTile + q + 1] = reduce_ps_avx2(s11l, s11h);
    }
}

__attribute__((target("avx2,fma"))) void tile_f64_avx2(const double* const* a, const double* const* b, int64_t len,
                                                       double* out) {
  const int64_t full = len - len % 8, rest = len - full;
  const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
  const __m256i mask_lo = _mm256_cmpgt_epi64(_mm256_set1_epi64x(rest), lane);
  const __m256i mask_hi = _mm256_cmpgt_epi64(_mm256_set1_epi64x(rest - 4), lane);
  for (int p = 0; p < kTile; p += 2)
    for (int q = 0; q < kTile; q += 2) {
      const double *x0 = a[p], *x1 = a[p + 1], *y0 = b[q], *y1 = b[q + 1];
      __m256d s00l = _mm256_setzero_pd(), s00h = s00l, s01l = s00l, s01h = s00l;
      __m256d s10l = s00l, s10h = s00l, s11l = s00l, s11h = s00l;
      int64_t k = 0;
      for (; k < full; k += 8)
        BYZAGG_QUARTER_STEP(__m256d, _mm256_loadu_pd, _mm256_loadu_pd, 4, _mm256_sub_pd, _mm256_fmadd_pd);
      if (rest) {
#define BYZAGG_LOAD_LO(ptr) _mm256_maskload_pd(ptr, mask_lo)
#define BYZAGG_LOAD_HI(ptr) _mm256_maskload_pd(ptr, mask_hi)
        BYZAGG_QUARTER_STEP(__m256d, BYZAGG_LOAD_LO, BYZAGG_LOAD_HI, 4, _mm256_sub_pd, _mm256_fmadd_pd);
#undef BYZAGG_LOAD_LO
#undef BYZAGG_LOAD_HI
      }
      out[p * kTile + q] = reduce_pd_avx2(s00l, s00h), out[p * kTile + q + 1] = reduce_pd_avx2(s01l, s01h);
      out[(p + 1) * kTile + q] = reduce_pd_avx2(s10l, s10h);
      out[(p + 1) * kTile + q + 1] = reduce_pd_avx2(s11l, s11h);
    }
}

#undef BYZAGG_DECLARE_ACCUMULATORS
#undef BYZAGG_TILE_STEP
#undef BYZAGG_STORE_ACCUMULATORS
#undef BYZAGG_QUARTER_STEP
#endif  // BYZAGG_X86_DISPATCH

// ---------------------------------------------------------------------------------------
// Choice of kernel family at run time.

bool cpu_has_fma() {
#if BYZAGG_X86_DISPATCH
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

TileKernel<float> float_kernel(Isa isa) {
#if BYZAGG_X86_DISPATCH
  if (isa == Isa::kAvx512) return &tile_f32_avx512;
  if (isa == Isa::kAvx2) return &tile_f32_avx2;
  if (cpu_has_fma()) return &tile_generic_f32_fma;
#endif
  (void)isa;
  return &tile_generic<float>;
}

TileKernel<double> double_kernel(Isa isa) {
#if BYZAGG_X86_DISPATCH
  if (isa == Isa::kAvx512) return &tile_f64_avx512;
  if (isa == Isa::kAvx2) return &tile_f64_avx2;
  if (cpu_has_fma()) return &tile_generic_f64_fma;
#endif
  (void)isa;
  return &tile_generic<double>;
}

PairSum pair_sum_kernel() {
#if BYZAGG_X86_DISPATCH
  if (cpu_has_fma()) return &pair_sum_double_fma;
#endif
  return &pair_sum_double_generic;
}

// ---------------------------------------------------------------------------------------
// One work item: a superblock of chunks times a pair of row blocks.

// The chunk type of an input type: double for double, float otherwise.
template <typename scalar_t>
using chunk_t = typename std::conditional<std::is_same<scalar_t, double>::value, double, float>::type;

template <typename scalar_t>
struct ItemContext {
  using T = chunk_t<scalar_t>;
  const core::DistancePlan* plan;
  const scalar_t* X;
  TileKernel<T> kernel;
  PairSum pair_sum;  // float chunks whose partial is not trusted, in double
  double* partials;  // superblocks x n x n
};

template <typename scalar_t>
void run_item(const ItemContext<scalar_t>& ctx, int64_t item) {
  using T = chunk_t<scalar_t>;
  constexpr bool kConvert = !std::is_same<scalar_t, T>::value;  // fp16 / bf16 -> float
  constexpr bool kFloatChunks = std::is_same<T, float>::value;
  const core::DistancePlan& plan = *ctx.plan;
  const int64_t n = plan.n, d = plan.d;
  const int64_t s = item / plan.block_pairs;
  int64_t P = 0, Q = 0;
  plan.block_pair(item % plan.block_pairs, &P, &Q);
  const int64_t p_begin = P * plan.block_rows, p_end = std::min(n, p_begin + plan.block_rows);
  const int64_t q_begin = Q * plan.block_rows, q_end = std::min(n, q_begin + plan.block_rows);
  const int64_t p_rows = p_end - p_begin, q_rows = q_end - q_begin;
  double* acc = ctx.partials + s * n * n;

  // Rows of the two blocks on the current chunk: pointers into X, or into `converted`.
  std::vector<T> converted(kConvert ? static_cast<size_t>((p_rows + (P == Q ? 0 : q_rows)) * plan.chunk) : 0);
  std::vector<const T*> p_ptr(static_cast<size_t>(p_rows)), q_ptr(static_cast<size_t>(q_rows));
  // Per row of the two blocks, on the current chunk: 0 unknown, 1 finite, 2 not finite.
  std::vector<uint8_t> p_state(static_cast<size_t>(p_rows)), q_state(static_cast<size_t>(q_rows));
  double tile_out[16];

  const int64_t begin = plan.superblock_begin(s), end = plan.superblock_end(s);
  for (int64_t c0 = begin; c0 < end; c0 += plan.chunk) {
    const int64_t len = std::min(plan.chunk, end - c0);
    for (int64_t r = 0; r < p_rows; ++r) {
      const scalar_t* src = ctx.X + (p_begin + r) * d + c0;
      if constexpr (kConvert) {
        T* dst = converted.data() + r * plan.chunk;
        for (int64_t k = 0; k < len; ++k) dst[k] = static_cast<T>(src[k]);
        p_ptr[r] = dst;
      } else {
        p_ptr[r] = reinterpret_cast<const T*>(src);
      }
    }
    for (int64_t r = 0; r < q_rows; ++r) {
      if (P == Q) {
        q_ptr[r] = p_ptr[r];
        continue;
      }
      const scalar_t* src = ctx.X + (q_begin + r) * d + c0;
      if constexpr (kConvert) {
        T* dst = converted.data() + (p_rows + r) * plan.chunk;
        for (int64_t k = 0; k < len; ++k) dst[k] = static_cast<T>(src[k]);
        q_ptr[r] = dst;
      } else {
        q_ptr[r] = reinterpret_cast<const T*>(src);
      }
    }
    std::fill(p_state.begin(), p_state.end(), 0);
    std::fill(q_state.begin(), q_state.end(), 0);
    auto finite_on_chunk = [&](std::vector<uint8_t>& state, const std::vector<const T*>& ptr, int64_t r) {
      if (state[r] == 0) state[r] = all_finite(ptr[r], len) ? 1 : 2;
      return state[r] == 1;
    };

    for (int64_t ti = 0; ti < p_rows; ti += kTile) {
      const T* a[kTile];
      for (int t = 0; t < kTile; ++t) a[t] = p_ptr[std::min(ti + t, p_rows - 1)];
      for (int64_t tj = (P == Q ? ti : 0); tj < q_rows; tj += kTile) {
        const T* b[kTile];
        for (int t = 0; t < kTile; ++t) b[t] = q_ptr[std::min(tj + t, q_rows - 1)];
        ctx.kernel(a, b, len, tile_out);
        for (int x = 0; x < kTile && ti + x < p_rows; ++x) {
          const int64_t i = p_begin + ti + x;
          for (int y = 0; y < kTile && tj + y < q_rows; ++y) {
            const int64_t j = q_begin + tj + y;
            if (j < i) continue;  // the lower half of a diagonal tile
            double v = tile_out[x * kTile + y];
            if (kFloatChunks && i != j && !core::float_partial_trusted(v) && v == v &&
                finite_on_chunk(p_state, p_ptr, ti + x) && finite_on_chunk(q_state, q_ptr, tj + y)) {
              if constexpr (kFloatChunks) v = ctx.pair_sum(p_ptr[ti + x], q_ptr[tj + y], len);
            }
            acc[i * n + j] += v;
          }
        }
      }
    }
  }
}

template <typename scalar_t>
void squared_distances_impl(const scalar_t* X, int64_t n, int64_t d, Isa isa, double* D) {
  using T = chunk_t<scalar_t>;
  const core::DistancePlan plan = core::make_distance_plan(n, d, static_cast<int64_t>(sizeof(T)));
  std::vector<double> partials;
  double* target = D;
  if (plan.superblocks > 1) {
    partials.assign(static_cast<size_t>(plan.superblocks * n * n), 0.0);
    target = partials.data();
  } else {
    std::fill(D, D + n * n, 0.0);
  }
  ItemContext<scalar_t> ctx;
  ctx.plan = &plan;
  ctx.X = X;
  if constexpr (std::is_same<T, double>::value) {
    ctx.kernel = double_kernel(isa);
  } else {
    ctx.kernel = float_kernel(isa);
  }
  ctx.pair_sum = pair_sum_kernel();
  ctx.partials = target;
  at::parallel_for(0, plan.items(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) run_item(ctx, item);
  });
  if (plan.superblocks > 1) {
    // Superblocks added in order: the same bits whatever thread computed them.
    at::parallel_for(0, n, 8, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        for (int64_t j = i; j < n; ++j) {
          double sum = 0.0;
          for (int64_t s = 0; s < plan.superblocks; ++s) sum += partials[(s * n + i) * n + j];
          D[i * n + j] = sum;
        }
    });
  }
}

at::Tensor pairwise_distances_cpu(const at::Tensor& G, bool squared) {
  check_matrix(G, "pairwise_distances", c10::DeviceType::CPU);
  check_square_temporaries("pairwise_distances", G.size(0), 16.0 + static_cast<double>(G.element_size()));
  SquaredDistances dist = squared_distances(G);
  const int64_t n = dist.n;
  at::Tensor out = at::empty({n, n}, G.options().dtype(at::kDouble));
  double* o = out.data_ptr<double>();
  for (int64_t k = 0; k < n * n; ++k) o[k] = squared ? dist.D2[k] : std::sqrt(dist.D2[k]);
  return out.to(G.scalar_type());
}

}  // namespace

namespace {

// Bytes of memory available now: MemAvailable (Linux), else the free physical pages.
double available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  double kib = 0.0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024.0;
  }
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 1e300;
}

}  // namespace

void check_square_temporaries(const char* rule, int64_t n, double bytes_per_pair) {
  const double bytes = bytes_per_pair * static_cast<double>(n) * static_cast<double>(n);
  const char* limit_text = std::getenv("BYZAGG_MEMORY_LIMIT_BYTES");
  double limit = 0.0;
  if (limit_text != nullptr && *limit_text != '\0') {
    limit = std::strtod(limit_text, nullptr);
  } else {
    if (bytes <= 256.0 * (1 << 20)) return;
    limit = available_memory_bytes();
  }
  const double gib = 1024.0 * 1024.0 * 1024.0;
  TORCH_CHECK_WITH(OutOfMemoryError, bytes <= limit, rule, ": n=", n, " rows need about ", bytes / gib,
                   " GiB of temporary memory (", bytes_per_pair,
                   " bytes per pair of rows, n x n pairs), more than the ", limit / gib,
                   " GiB available; use fewer rows (e.g. bucketing first) or a coordinate-wise rule");
}

SquaredDistances squared_distances(const at::Tensor& G) {
  const at::Tensor X = G.contiguous();
  const int64_t n = X.size(0), d = X.size(1);
  SquaredDistances result;
  result.n = n;
  result.D2.assign(static_cast<size_t>(n * n), 0.0);
  result.finite.assign(static_cast<size_t>(n), 1);
  const Isa isa = cpu_isa();
  record_isa(Family::kDistances, isa);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_squared_distances", [&] {
    squared_distances_impl<scalar_t>(X.data_ptr<scalar_t>(), n, d, isa, result.D2.data());
  });
  core::finish_squared_distances(result.D2.data(), n, result.finite.data());
  return result;
}

}  // namespace cpu

TORCH_LIBRARY_IMPL(byzagg, CPU, m) { m.impl("pairwise_distances", &cpu::pairwise_distances_cpu); }

}  // namespace byzagg
