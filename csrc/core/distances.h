// Exact squared Euclidean distances between the rows of an (n, d) matrix:
// sum_k (x_ik - x_jk)^2, never |x|^2 + |y|^2 - 2<x, y> (cancellation). Torch-free, host
// and device.
//
// Arithmetic (the same on every backend):
// - coordinates are walked in chunks; inside a chunk, differences, squares and sums are
//   formed in the chunk type (float for fp16/bf16/fp32 inputs, double for fp64) in a fixed
//   lane order (squared_sum_lanes), and each chunk's partial sum is added in double;
// - a float chunk partial is trusted only when no square can have overflowed and none can
//   have been lost to underflow (float_partial_trusted); otherwise the chunk is summed
//   again in double, so +-1e30 rows or tiny differences come out as in float64;
// - chunks are grouped into a fixed number of superblocks that depends on n and d only;
//   superblock sums are added in superblock order, so the result has the same bits for
//   any number of threads;
// - a row with a non-finite value is infinitely far from every row, itself excepted: its
//   diagonal sum comes out NaN ((inf - inf)^2 or NaN^2), which is how it is detected.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "macros.h"

namespace byzagg {
namespace core {

// Rows per side of a register tile: a tile pair covers 4 x 4 row pairs.
constexpr int64_t kDistanceTileRows = 4;
// Bytes of one row's chunk (8 KiB): 2048 floats or 1024 doubles; a tile's rows stay in L1.
constexpr int64_t kDistanceChunkBytes = 8192;
// Rows per cache block: a block pair's chunks (2 x 32 rows x 8 KiB) stay in L2.
constexpr int64_t kDistanceBlockRows = 32;
// Below this a float partial may hide squares lost to underflow (each at most 2^-149):
// summed again in double. Above it, underflow costs less than 1e-16 relative.
constexpr double kFloatPartialMin = 1e-25;
// Enough independent work items for load balance on a many-core machine.
constexpr int64_t kDistanceTargetItems = 64;
// Cap on the superblock partial sums, superblocks x n x n doubles.
constexpr int64_t kDistancePartialBytes = int64_t(64) << 20;

template <typename T>
BYZAGG_HD T ceil_div(T a, T b) {
  return (a + b - 1) / b;
}

// A float chunk partial s (summed in float, reduced to double) of a pair of rows that are
// finite on the chunk: trusted unless a square overflowed (s = inf) or underflow may have
// taken away a relevant part (s < kFloatPartialMin, which includes exact zeros).
BYZAGG_HD bool float_partial_trusted(double s) {
  return s >= kFloatPartialMin && s <= std::numeric_limits<double>::max();
}

// The partition of the work: coordinates in chunks of `chunk`, chunks in `superblocks`
// consecutive groups, rows in blocks of `block_rows` (a multiple of the tile size, or n).
// Depends on n, d and the element size only, never on the number of threads.
struct DistancePlan {
  int64_t n = 0, d = 0;
  int64_t chunk = 0;        // coordinates per chunk
  int64_t chunks = 0;       // ceil(d / chunk)
  int64_t superblocks = 0;  // groups of consecutive chunks, summed separately
  int64_t chunks_per_superblock = 0;
  int64_t block_rows = 0;   // rows per cache block
  int64_t blocks = 0;       // ceil(n / block_rows)
  int64_t block_pairs = 0;  // blocks * (blocks + 1) / 2 (upper triangle)

  BYZAGG_HD int64_t items() const { return superblocks * block_pairs; }
  // The coordinates [begin, end) of superblock s.
  BYZAGG_HD int64_t superblock_begin(int64_t s) const {
    const int64_t c = s * chunks_per_superblock * chunk;
    return c < d ? c : d;
  }
  BYZAGG_HD int64_t superblock_end(int64_t s) const { return superblock_begin(s + 1); }
  // Block pair p (0 <= p < block_pairs) in row-major order of the upper triangle.
  BYZAGG_HD void block_pair(int64_t p, int64_t* first, int64_t* second) const {
    int64_t i = 0;
    while (p >= blocks - i) {
      p -= blocks - i;
      ++i;
    }
    *first = i;
    *second = i + p;
  }
};

BYZAGG_HD DistancePlan make_distance_plan(int64_t n, int64_t d, int64_t element_bytes) {
  DistancePlan plan;
  plan.n = n;
  plan.d = d;
  plan.chunk = kDistanceChunkBytes / element_bytes;
  plan.chunks = ceil_div(d, plan.chunk);
  plan.block_rows = n <= 2 * kDistanceBlockRows ? n : kDistanceBlockRows;
  plan.blocks = ceil_div(n, plan.block_rows);
  plan.block_pairs = plan.blocks * (plan.blocks + 1) / 2;
  int64_t superblocks = ceil_div(kDistanceTargetItems, plan.block_pairs);
  const int64_t memory_cap = kDistancePartialBytes / (n * n * int64_t(sizeof(double)));
  if (superblocks > memory_cap) superblocks = memory_cap;
  if (superblocks > plan.chunks) superblocks = plan.chunks;
  if (superblocks < 1) superblocks = 1;
  plan.chunks_per_superblock = ceil_div(plan.chunks, superblocks);
  plan.superblocks = ceil_div(plan.chunks, plan.chunks_per_superblock);
  return plan;
}

// The canonical sum of one pair of rows on one chunk, the arithmetic every CPU kernel
// reproduces bit for bit whatever its SIMD width (so Krum's choice among near-equal rows
// does not depend on the CPU): L lanes of type Acc, lane l accumulating the coordinates
// k = l (mod L) in order with a fused multiply-add of the difference, diff formed in Acc;
// then the lanes reduced in double by halving (lane l + L/2 into lane l, then L/4, ...).
// L = 16 for float chunks (one AVX-512 register, two AVX2 registers), 8 for double ones.
template <typename Acc>
struct SumLanes {
  static constexpr int value = 16;
};
template <>
struct SumLanes<double> {
  static constexpr int value = 8;
};

BYZAGG_HD float fused_multiply_add(float a, float b, float c) { return fmaf(a, b, c); }
BYZAGG_HD double fused_multiply_add(double a, double b, double c) { return fma(a, b, c); }

// The halving reduction of L lanes in double.
template <int L, typename Acc>
BYZAGG_HD double reduce_lanes(const Acc* lanes) {
  double s[L / 2];
  for (int l = 0; l < L / 2; ++l) s[l] = static_cast<double>(lanes[l]) + static_cast<double>(lanes[l + L / 2]);
  for (int w = L / 4; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) s[l] = s[l] + s[l + w];
  return s[0];
}

template <typename Acc, typename T>
BYZAGG_HD double squared_sum_in(const T* x, const T* y, int64_t len) {
  constexpr int L = SumLanes<Acc>::value;
  Acc acc[L];
  for (int l = 0; l < L; ++l) acc[l] = Acc(0);
  int64_t k = 0;
  for (; k + L <= len; k += L)
    for (int l = 0; l < L; ++l) {
      const Acc diff = static_cast<Acc>(x[k + l]) - static_cast<Acc>(y[k + l]);
      acc[l] = fused_multiply_add(diff, diff, acc[l]);
    }
  for (int l = 0; k + l < len; ++l) {
    const Acc diff = static_cast<Acc>(x[k + l]) - static_cast<Acc>(y[k + l]);
    acc[l] = fused_multiply_add(diff, diff, acc[l]);
  }
  return reduce_lanes<L>(acc);
}

// One pair's chunk in its chunk type T (float or double): the canonical lane sum.
template <typename T>
BYZAGG_HD double squared_sum_lanes(const T* x, const T* y, int64_t len) {
  return squared_sum_in<T>(x, y, len);
}

// One pair's chunk summed in double (8 lanes): the fallback when a float partial is not
// trusted, and the double arithmetic of the CUDA kernels.
template <typename T>
BYZAGG_HD double squared_sum_double(const T* x, const T* y, int64_t len) {
  return squared_sum_in<double>(x, y, len);
}

// One tile pair on one chunk: out[a * B + b], the canonical lane sums of the chunk type T.
template <int A, int B, typename T>
BYZAGG_HD void tile_squared_sums(const T* const* rows_a, const T* const* rows_b, int64_t len, double* out) {
  for (int a = 0; a < A; ++a)
    for (int b = 0; b < B; ++b) out[a * B + b] = squared_sum_lanes(rows_a[a], rows_b[b], len);
}

// Turns summed squares into the distance matrix. On entry the upper triangle (diagonal
// included) of the row-major n x n matrix D holds the sums; the diagonal is 0 for a finite
// row and NaN for a row with a non-finite value. On exit D is symmetric, +inf in the rows
// and columns of non-finite rows, 0 on the diagonal, and finite[i] says whether row i is
// finite.
template <typename Flag>
BYZAGG_HD void finish_squared_distances(double* D, int64_t n, Flag* finite) {
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) finite[i] = D[i * n + i] == D[i * n + i];
  for (int64_t i = 0; i < n; ++i) {
    D[i * n + i] = 0.0;
    for (int64_t j = i + 1; j < n; ++j) {
      double v = D[i * n + j];
      if (!finite[i] || !finite[j]) v = inf;
      D[i * n + j] = v;
      D[j * n + i] = v;
    }
  }
}

}  // namespace core
}  // namespace byzagg
