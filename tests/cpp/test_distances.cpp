// Unit tests of csrc/core/distances.h (no torch): the work plan covers every coordinate and
// row pair once, the tile sums and the double fallback are the definition, the trust test
// of float partials, and the finishing step (symmetry, non-finite rows, diagonal).
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "core/distances.h"
#include "check.h"

namespace core = byzagg::core;

static void test_plan() {
  const int64_t sizes_n[] = {1, 2, 3, 4, 5, 31, 64, 65, 100, 257};
  const int64_t sizes_d[] = {1, 7, 2047, 2048, 2049, 100000, 1000003};
  for (int64_t n : sizes_n)
    for (int64_t d : sizes_d)
      for (int64_t bytes : {4, 8}) {
        const core::DistancePlan plan = core::make_distance_plan(n, d, bytes);
        CHECK(plan.chunk * bytes == core::kDistanceChunkBytes, "chunk");
        CHECK(plan.superblocks >= 1 && plan.superblocks <= plan.chunks, "n=%lld d=%lld superblocks %lld", (long long)n,
              (long long)d, (long long)plan.superblocks);
        CHECK(plan.superblocks * n * n * 8 <= core::kDistancePartialBytes || plan.superblocks == 1, "memory cap");
        // Superblocks tile [0, d) in order, none empty.
        int64_t next = 0;
        for (int64_t s = 0; s < plan.superblocks; ++s) {
          CHECK(plan.superblock_begin(s) == next, "superblock %lld starts at %lld", (long long)s, (long long)next);
          CHECK(plan.superblock_end(s) > plan.superblock_begin(s), "superblock %lld empty", (long long)s);
          next = plan.superblock_end(s);
        }
        CHECK(next == d, "superblocks cover d: %lld of %lld", (long long)next, (long long)d);
        // Block pairs cover every pair of blocks P <= Q exactly once.
        std::vector<int> seen(static_cast<size_t>(plan.blocks * plan.blocks), 0);
        for (int64_t p = 0; p < plan.block_pairs; ++p) {
          int64_t a = -1, b = -1;
          plan.block_pair(p, &a, &b);
          CHECK(0 <= a && a <= b && b < plan.blocks, "block pair %lld = (%lld, %lld)", (long long)p, (long long)a,
                (long long)b);
          if (0 <= a && a <= b && b < plan.blocks) ++seen[static_cast<size_t>(a * plan.blocks + b)];
        }
        for (int64_t a = 0; a < plan.blocks; ++a)
          for (int64_t b = a; b < plan.blocks; ++b) CHECK(seen[static_cast<size_t>(a * plan.blocks + b)] == 1, "pair");
        CHECK(plan.blocks * plan.block_rows >= n && (plan.blocks - 1) * plan.block_rows < n, "blocks cover n");
        CHECK(plan.block_rows == n || plan.block_rows % core::kDistanceTileRows == 0, "block rows");
      }
  // The plan does not depend on anything but n, d and the element size.
  const core::DistancePlan a = core::make_distance_plan(51, 1000000, 4), b = core::make_distance_plan(51, 1000000, 4);
  CHECK(a.superblocks == b.superblocks && a.chunks_per_superblock == b.chunks_per_superblock, "deterministic plan");
}

// The canonical order of csrc/core/distances.h written out independently: lane l sums the
// coordinates l, l + L, ... with fused multiply-adds, then lanes are halved in double.
template <typename Acc, int L, typename T>
static double canonical_sum(const T* x, const T* y, int64_t len) {
  double lanes[L];
  for (int l = 0; l < L; ++l) {
    Acc acc = 0;
    for (int64_t k = l; k < len; k += L) {
      const Acc diff = static_cast<Acc>(x[k]) - static_cast<Acc>(y[k]);
      acc = std::fma(diff, diff, acc);
    }
    lanes[l] = static_cast<double>(acc);
  }
  for (int w = L / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) lanes[l] = lanes[l] + lanes[l + w];
  return lanes[0];
}

static void test_tile_sums() {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  const int64_t len = 37;
  std::vector<std::vector<double>> rows(8, std::vector<double>(len));
  for (auto& r : rows)
    for (auto& x : r) x = normal(rng);
  const double* a[4] = {rows[0].data(), rows[1].data(), rows[2].data(), rows[3].data()};
  const double* b[4] = {rows[4].data(), rows[5].data(), rows[6].data(), rows[7].data()};
  double out[16];
  core::tile_squared_sums<4, 4>(a, b, len, out);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      double want = 0;
      for (int64_t k = 0; k < len; ++k) want += (a[i][k] - b[j][k]) * (a[i][k] - b[j][k]);
      CHECK(std::fabs(out[i * 4 + j] - want) <= 1e-12 * want, "tile (%d, %d)", i, j);
      CHECK((core::squared_sum_double(a[i], b[j], len) == canonical_sum<double, 8>(a[i], b[j], len)),
            "double fallback (%d, %d)", i, j);
      CHECK((out[i * 4 + j] == canonical_sum<double, 8>(a[i], b[j], len)), "tile order (%d, %d)", i, j);
    }
  // Float chunks: 16 lanes, every length class of the tail.
  std::vector<std::vector<float>> frows(2, std::vector<float>(100));
  for (auto& r : frows)
    for (auto& x : r) x = static_cast<float>(normal(rng));
  for (int64_t n = 1; n <= 100; ++n)
    CHECK((core::squared_sum_lanes(frows[0].data(), frows[1].data(), n) ==
           canonical_sum<float, 16>(frows[0].data(), frows[1].data(), n)),
          "float lanes, len %d", static_cast<int>(n));
  // Float inputs accumulated in double: exact for small integers.
  std::vector<float> x = {1, 2, 3}, y = {4, 6, 3};
  CHECK(core::squared_sum_double(x.data(), y.data(), 3) == 25.0, "3-4-5");
}

static void test_trust() {
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(core::float_partial_trusted(1.0), "ordinary");
  CHECK(core::float_partial_trusted(1e30), "large but finite");
  CHECK(!core::float_partial_trusted(inf), "overflow");
  CHECK(!core::float_partial_trusted(0.0), "zero may hide underflow");
  CHECK(!core::float_partial_trusted(1e-30), "tiny");
  CHECK(!core::float_partial_trusted(std::nan("")), "NaN");
  // What the threshold protects: float squares of 1e-23 vanish, in double they do not.
  const float tiny = 1e-23f;
  CHECK(tiny * tiny == 0.0f || !core::float_partial_trusted(static_cast<double>(tiny * tiny)), "underflow caught");
}

static void test_finish() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t n = 4;
  // Upper triangle with diagonal: row 2 non-finite (NaN diagonal).
  std::vector<double> D = {0,  1,  nan, 4,  //
                           -1, 0,  7,   5,  //
                           -1, -1, nan, 9,  //
                           -1, -1, -1,  0};
  std::vector<unsigned char> finite(n);
  core::finish_squared_distances(D.data(), n, finite.data());
  CHECK(finite[0] && finite[1] && !finite[2] && finite[3], "finite flags");
  for (int64_t i = 0; i < n; ++i) {
    CHECK(D[i * n + i] == 0.0, "diagonal %lld", (long long)i);
    for (int64_t j = 0; j < n; ++j) CHECK(D[i * n + j] == D[j * n + i], "symmetric");
  }
  CHECK(D[0 * n + 1] == 1 && D[0 * n + 3] == 4 && D[1 * n + 3] == 5, "kept");
  CHECK(std::isinf(D[0 * n + 2]) && std::isinf(D[1 * n + 2]) && std::isinf(D[3 * n + 2]), "non-finite row at +inf");
}

int main() {
  test_plan();
  test_tile_sums();
  test_trust();
  test_finish();
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_distances: all checks passed\n");
  return 0;
}
