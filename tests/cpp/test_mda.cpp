// Unit tests of csrc/core/mda.h (no torch) against the enumeration of every subset in
// itertools.combinations order (first minimum wins), on random, tied, clustered and
// non-finite inputs.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "core/distances.h"
#include "core/mda.h"
#include "check.h"

namespace core = byzagg::core;

// The definition: every k-subset in lexicographic order, the first of least diameter.
static std::vector<int64_t> brute_force(const std::vector<double>& D, int64_t n, int64_t k) {
  std::vector<int64_t> subset(k), best;
  for (int64_t i = 0; i < k; ++i) subset[i] = i;
  double best_diameter = 0;
  for (;;) {
    double diameter = 0;
    for (int64_t a = 0; a < k; ++a)
      for (int64_t b = a + 1; b < k; ++b) diameter = std::max(diameter, D[subset[a] * n + subset[b]]);
    if (best.empty() || diameter < best_diameter) {
      best = subset;
      best_diameter = diameter;
    }
    int64_t i = k - 1;
    while (i >= 0 && subset[i] == n - k + i) --i;
    if (i < 0) break;
    ++subset[i];
    for (int64_t j = i + 1; j < k; ++j) subset[j] = subset[j - 1] + 1;
  }
  return best;
}

static std::vector<double> distances(const std::vector<double>& X, int64_t n, int64_t d) {
  std::vector<double> D(static_cast<size_t>(n * n));
  std::vector<unsigned char> finite(n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) D[i * n + j] = core::squared_sum_double(&X[i * d], &X[j * d], d);
  core::finish_squared_distances(D.data(), n, finite.data());
  for (double& v : D) v = std::sqrt(v);
  return D;
}

int main() {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> small(-1, 1);
  int cases = 0;
  for (int trial = 0; trial < 600; ++trial) {
    const int64_t n = 3 + static_cast<int64_t>(rng() % 11);
    const int64_t f = static_cast<int64_t>(rng() % ((n - 1) / 2 + 1));
    const int64_t d = 1 + static_cast<int64_t>(rng() % 4);
    const int kind = trial % 4;
    std::vector<double> X(static_cast<size_t>(n * d));
    for (auto& x : X) x = kind == 1 ? small(rng) : normal(rng);
    if (kind == 2)  // a far cluster of f rows
      for (int64_t r = 0; r < f; ++r)
        for (int64_t c = 0; c < d; ++c) X[r * d + c] = 30 + 0.01 * normal(rng);
    if (kind == 3)  // up to f + 1 non-finite rows
      for (int64_t r = 0; r <= f && r < n; ++r)
        if (rng() % 2)
          X[(rng() % n) * d] =
              r % 2 ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    const std::vector<double> D = distances(X, n, d);
    const std::vector<int64_t> got = core::mda_select(D.data(), n, f);
    const std::vector<int64_t> want = brute_force(D, n, n - f);
    CHECK(got == want, "n=%lld f=%lld kind=%d", (long long)n, (long long)f, kind);
    ++cases;
  }
  // All rows equal: the first n - f rows.
  const std::vector<double> zeros(36, 0.0);
  const std::vector<int64_t> first = core::mda_select(zeros.data(), 6, 2);
  CHECK((first == std::vector<int64_t>{0, 1, 2, 3}), "ties to the first subset");
  // Larger f: the search stays exact (checked against enumeration, C(16, 7) = 11440).
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t n = 16, f = 7, d = 2;
    std::vector<double> X(static_cast<size_t>(n * d));
    for (auto& x : X) x = trial % 2 ? small(rng) : normal(rng);
    const std::vector<double> D = distances(X, n, d);
    CHECK(core::mda_select(D.data(), n, f) == brute_force(D, n, n - f), "n=16 f=7 trial %d", trial);
  }
  if (failures) {
    std::printf("%d check(s) failed of %d cases\n", failures, cases);
    return 1;
  }
  std::printf("test_mda: all checks passed\n");
  return 0;
}
