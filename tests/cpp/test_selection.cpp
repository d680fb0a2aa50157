// Unit tests of csrc/core/selection.h (no torch) against brute-force definitions: the
// ranking order, Krum scores, Krum and Bulyan selection (repeated Krum written out
// naively), NNM neighbourhoods and the medoid, with ties, duplicates and non-finite rows.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "core/distances.h"
#include "core/selection.h"
#include "check.h"

namespace core = byzagg::core;

static const double kInf = std::numeric_limits<double>::infinity();
static const double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Matrix {
  int64_t n;
  std::vector<double> D2;
  std::vector<unsigned char> finite;
};

// Rows of small integers (ties everywhere) or normals; some rows non-finite.
static Matrix make_matrix(std::mt19937_64& rng, int64_t n, int64_t d, bool integers, int64_t bad_rows) {
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> small(-2, 2);
  std::vector<double> X(static_cast<size_t>(n * d));
  for (auto& x : X) x = integers ? small(rng) : normal(rng);
  for (int64_t r = 0; r < bad_rows; ++r) X[static_cast<size_t>((rng() % n) * d + rng() % d)] = r % 2 ? kNaN : kInf;
  Matrix m{n, std::vector<double>(static_cast<size_t>(n * n)), std::vector<unsigned char>(static_cast<size_t>(n))};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) m.D2[i * n + j] = core::squared_sum_double(&X[i * d], &X[j * d], d);
  core::finish_squared_distances(m.D2.data(), n, m.finite.data());
  return m;
}

// The definition: a stable sort by key, then a stable sort moving non-finite rows last.
static std::vector<int64_t> rank_definition(const std::vector<double>& keys, const unsigned char* finite) {
  const int64_t n = static_cast<int64_t>(keys.size());
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const bool na = std::isnan(keys[a]), nb = std::isnan(keys[b]);
    if (na || nb) return !na && nb;
    return keys[a] < keys[b];
  });
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return finite[a] && !finite[b]; });
  return order;
}

// Krum score of `row` among `members`: sum of the k smallest D2 to other members.
static double score_definition(const Matrix& m, const std::vector<int64_t>& members, int64_t row, int64_t k) {
  std::vector<double> others;
  for (int64_t j : members)
    if (j != row) others.push_back(m.D2[row * m.n + j]);
  std::sort(others.begin(), others.end());
  double sum = 0;
  for (int64_t t = 0; t < k && t < static_cast<int64_t>(others.size()); ++t) sum += others[t];
  return k > 0 ? sum : 0.0;
}

static void test_rank_order() {
  const unsigned char finite[] = {1, 0, 1, 1, 1, 0, 1};
  const std::vector<double> keys = {3, 0, kNaN, 1, 3, kInf, kInf};
  std::vector<int64_t> order(7);
  core::rank_rows(keys.data(), finite, 7, order.data());
  const std::vector<int64_t> want = {3, 0, 4, 6, 2, 1, 5};
  CHECK(order == want, "finite by key then index, NaN key last, non-finite rows last");
  CHECK(order == rank_definition(keys, finite), "definition");
  CHECK(core::ranks_before(true, 5.0, 3, false, 0.0, 0), "a finite row first");
  CHECK(core::ranks_before(true, 1.0, 3, true, 1.0, 4) && !core::ranks_before(true, 1.0, 4, true, 1.0, 3), "index");
}

static void test_random(unsigned seed) {
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 150; ++trial) {
    const int64_t n = 3 + static_cast<int64_t>(rng() % 30);
    const bool integers = trial % 2 == 0;
    const int64_t f_max = (n - 3) / 2;
    const int64_t f = f_max > 0 ? static_cast<int64_t>(rng() % (f_max + 1)) : 0;
    const int64_t bad = trial % 3 == 0 ? static_cast<int64_t>(rng() % (f + 1)) : 0;
    const Matrix m = make_matrix(rng, n, 1 + static_cast<int64_t>(rng() % 6), integers, bad);
    std::vector<int64_t> all(n);
    for (int64_t i = 0; i < n; ++i) all[i] = i;

    // Krum scores and selection.
    const std::vector<double> scores = core::krum_scores(m.D2.data(), n, f);
    std::vector<double> want_scores(n);
    for (int64_t i = 0; i < n; ++i) {
      want_scores[i] = score_definition(m, all, i, n - f - 2);
      CHECK(scores[i] == want_scores[i] ||
                (integers == false && std::fabs(scores[i] - want_scores[i]) <= 1e-12 * std::fabs(want_scores[i])),
            "score n=%lld f=%lld row %lld: %g vs %g", (long long)n, (long long)f, (long long)i, scores[i],
            want_scores[i]);
    }
    const int64_t m_rows = 1 + static_cast<int64_t>(rng() % (n - f));
    const std::vector<int64_t> chosen = core::krum_select(m.D2.data(), n, m.finite.data(), f, m_rows);
    std::vector<int64_t> want_order = rank_definition(scores, m.finite.data());
    want_order.resize(m_rows);
    CHECK(chosen == want_order, "krum selection n=%lld f=%lld m=%lld", (long long)n, (long long)f, (long long)m_rows);
    if (bad <= f) CHECK(m.finite[chosen[0]], "krum picks a finite row with <= f bad rows");

    // Bulyan: repeated Krum written out.
    const int64_t fb = (n - 3) / 4 > 0 ? static_cast<int64_t>(rng() % ((n - 3) / 4 + 1)) : 0;
    std::vector<int64_t> remaining = all, want_bulyan;
    for (int64_t round = 0; round < n - 2 * fb; ++round) {
      const int64_t count = static_cast<int64_t>(remaining.size());
      std::vector<double> sub(count);
      std::vector<unsigned char> sub_finite(count);
      for (int64_t t = 0; t < count; ++t) {
        sub[t] = score_definition(m, remaining, remaining[t], count - fb - 2);
        sub_finite[t] = m.finite[remaining[t]];
      }
      const int64_t best = rank_definition(sub, sub_finite.data())[0];
      want_bulyan.push_back(remaining[best]);
      remaining.erase(remaining.begin() + best);
    }
    const std::vector<int64_t> got_bulyan = core::bulyan_select(m.D2.data(), n, m.finite.data(), fb);
    CHECK(got_bulyan == want_bulyan, "bulyan selection n=%lld f=%lld", (long long)n, (long long)fb);

    // NNM neighbourhoods.
    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; ++i) {
      core::neighbourhood_order(m.D2.data(), n, m.finite.data(), i, order.data());
      const std::vector<double> row(m.D2.begin() + i * n, m.D2.begin() + (i + 1) * n);
      CHECK(order == rank_definition(row, m.finite.data()), "neighbourhood of %lld", (long long)i);
    }

    // Medoid.
    std::vector<double> sums(n, kInf);
    bool any = false;
    for (int64_t i = 0; i < n; ++i) {
      any = any || m.finite[i];
      if (!m.finite[i]) continue;
      double s = 0;
      for (int64_t j = 0; j < n; ++j)
        if (m.finite[j]) s += std::sqrt(m.D2[i * n + j]);
      sums[i] = s;
    }
    const int64_t want_medoid = any ? rank_definition(sums, m.finite.data())[0] : 0;
    CHECK(core::medoid_row(m.D2.data(), n, m.finite.data()) == want_medoid, "medoid n=%lld", (long long)n);
  }
}

static void test_hand_made() {
  // Points on a line at 0, 1, 2, 10: Krum with f=0 (2 neighbours): scores 5, 2, 5, 145.
  const double pos[] = {0, 1, 2, 10};
  std::vector<double> D2(16);
  std::vector<unsigned char> finite(4, 1);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) D2[i * 4 + j] = (pos[i] - pos[j]) * (pos[i] - pos[j]);
  const std::vector<double> scores = core::krum_scores(D2.data(), 4, 0);
  CHECK(scores[0] == 5 && scores[1] == 2 && scores[2] == 5 && scores[3] == 145, "scores %g %g %g %g", scores[0],
        scores[1], scores[2], scores[3]);
  const std::vector<int64_t> chosen = core::krum_select(D2.data(), 4, finite.data(), 0, 3);
  CHECK(chosen.size() == 3 && chosen[0] == 1 && chosen[1] == 0 && chosen[2] == 2, "ties to the lower index");
  CHECK(core::medoid_row(D2.data(), 4, finite.data()) == 1, "medoid");
  // No finite row: the medoid is row 0.
  std::vector<unsigned char> none(4, 0);
  CHECK(core::medoid_row(D2.data(), 4, none.data()) == 0, "no finite row");
}

int main() {
  test_rank_order();
  for (unsigned seed = 1; seed <= 4; ++seed) test_random(seed);
  test_hand_made();
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_selection: all checks passed\n");
  return 0;
}
