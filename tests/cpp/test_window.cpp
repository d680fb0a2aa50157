// Unit tests of csrc/core/window.h against brute-force definitions (no torch).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "core/partial_order.h"
#include "core/window.h"
#include "check.h"

namespace core = byzagg::core;
using core::CoordinateRule;

static bool same(double a, double b, double tol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= tol * std::max(1.0, std::fabs(b));
}

// Brute force "mean of the k values nearest c" over every contiguous window of the sorted
// column: the window minimising (max distance, then the distances in order), lowest start
// on ties, which is what "ties keep the lower values" means.
static double nearest_mean_brute(const std::vector<double>& sorted, int64_t k, double c) {
  const int64_t n = static_cast<int64_t>(sorted.size());
  int64_t best = 0;
  std::vector<double> best_key;
  for (int64_t s = 0; s + k <= n; ++s) {
    std::vector<double> key;
    for (int64_t i = s; i < s + k; ++i) {
      double dist = std::isnan(sorted[i]) ? std::numeric_limits<double>::infinity() : std::fabs(sorted[i] - c);
      key.push_back(dist);
    }
    std::sort(key.rbegin(), key.rend());
    if (s == 0 || key < best_key) {
      best = s;
      best_key = key;
    }
  }
  double sum = 0;
  for (int64_t i = best; i < best + k; ++i) sum += sorted[i];
  return sum / k;
}

static double definition(std::vector<double> v, int64_t f, CoordinateRule rule) {
  std::stable_sort(v.begin(), v.end(), core::nan_last_less<double>);
  const int64_t n = static_cast<int64_t>(v.size());
  double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  double trimmed = 0;
  for (int64_t i = f; i < n - f; ++i) trimmed += v[i];
  trimmed /= (n - 2 * f);
  switch (rule) {
    case CoordinateRule::kMedian: return median;
    case CoordinateRule::kTrimmedMean: return trimmed;
    case CoordinateRule::kMeaMed: return nearest_mean_brute(v, n - f, median);
    default: return nearest_mean_brute(v, n - f, trimmed);
  }
}

static void test_order() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> v = {nan, 3, -inf, inf, 1, nan, -2};
  core::insertion_sort(v.data(), static_cast<int64_t>(v.size()));
  CHECK(v[0] == -inf && v[1] == -2 && v[2] == 1 && v[3] == 3 && v[4] == inf, "order");
  CHECK(std::isnan(v[5]) && std::isnan(v[6]), "NaN last");
  CHECK(core::nan_last_less(inf, nan) && !core::nan_last_less(nan, inf) && !core::nan_last_less(nan, nan), "NaN order");
}

static void test_ties() {
  // Symmetric around the median 2: the window of 4 keeps the lower values {0,1,2,3}.
  std::vector<double> v = {0, 1, 2, 3, 4};
  CHECK(core::nearest_mean(v.data(), 5, 4, 2.0) == 1.5, "tie keeps the lower values");
  // Center 3.5 between 3 and 4: takes 4 over 2? |4-3.5| = |3-3.5|, both in; 2 vs 5: tie -> 2.
  std::vector<double> w = {1, 2, 3, 4, 5, 6};
  CHECK(core::nearest_mean(w.data(), 6, 4, 3.5) == 3.5, "window 2..5");
}

static void test_random(unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> small(-3, 3);
  const double specials[] = {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity(), 1e30, -1e30};
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t n = 1 + static_cast<int64_t>(rng() % 40);
    const int64_t fmax = (n - 1) / 2;
    const int64_t f = fmax > 0 ? static_cast<int64_t>(rng() % (fmax + 1)) : 0;
    std::vector<double> column(n);
    const bool integers = trial % 3 == 0;  // many exact ties
    for (auto& x : column) x = integers ? small(rng) : normal(rng);
    // Up to f special values: the result must stay finite.
    for (int64_t i = 0; i < f && trial % 2 == 1; ++i) column[rng() % n] = specials[rng() % 5];
    for (CoordinateRule rule :
         {CoordinateRule::kMedian, CoordinateRule::kTrimmedMean, CoordinateRule::kMeaMed, CoordinateRule::kPhocas}) {
      std::vector<double> sorted = column;
      std::stable_sort(sorted.begin(), sorted.end(), core::nan_last_less<double>);
      const double got = core::coordinate_rule_of_sorted(sorted.data(), n, f, rule);
      const double want = definition(column, f, rule);
      CHECK(same(got, want, 1e-12), "rule %s n=%lld f=%lld got %.17g want %.17g", core::coordinate_rule_name(rule),
            static_cast<long long>(n), static_cast<long long>(f), got, want);
      int64_t nonfinite = 0;
      for (double x : column) nonfinite += std::isfinite(x) ? 0 : 1;
      if (nonfinite <= f)
        CHECK(std::isfinite(got), "finite with <= f non-finite values, rule %s", core::coordinate_rule_name(rule));
    }
  }
}

static void test_float_accumulation() {
  std::vector<float> v = {1.0f, 2.0f, 3.0f, 4.0f};
  CHECK(core::median_of_sorted(v.data(), 4) == 2.5f, "even median");
  CHECK(core::range_mean(v.data(), 1, 2) == 2.5f, "trimmed");
  CHECK(core::coordinate_rule_accepts(5, 2, CoordinateRule::kPhocas), "n > 2f");
  CHECK(!core::coordinate_rule_accepts(4, 2, CoordinateRule::kPhocas), "n = 2f rejected");
  CHECK(core::coordinate_rule_accepts(1, 0, CoordinateRule::kMedian), "median n=1");
}

// partial_order.h: the rule on an unsorted column equals the rule on the stably sorted
// column, value for value (a zero's sign aside: -0 == +0 here), for long columns with ties,
// NaN, infinities and signed zeros, every rule and every f it accepts (float and double).
template <typename T>
static void test_partial_order(unsigned seed) {
  std::mt19937 rng(seed);
  const T specials[] = {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                        -std::numeric_limits<T>::infinity(), T(-0.0), T(0.0)};
  for (int64_t n : {33, 34, 65, 100, 101, 257}) {
    for (int trial = 0; trial < 6; ++trial) {
      std::vector<T> column(static_cast<size_t>(n));
      for (T& x : column) {
        const unsigned k = rng() % 16;
        x = k < 5 && trial % 2 == 1 ? specials[k]
                                    : static_cast<T>(static_cast<int>(rng() % (trial < 3 ? 7 : 1000)) - 3) / T(4);
      }
      std::vector<T> sorted = column;
      std::stable_sort(sorted.begin(), sorted.end(), core::nan_last_less<T>);
      for (CoordinateRule rule :
           {CoordinateRule::kMedian, CoordinateRule::kTrimmedMean, CoordinateRule::kMeaMed, CoordinateRule::kPhocas}) {
        for (int64_t f = 0; core::coordinate_rule_accepts(n, f, rule) && f <= n; f += 1 + n / 9) {
          std::vector<T> work = column;
          const T got = core::coordinate_rule_of_unsorted(work.data(), n, f, rule);
          const T want = core::coordinate_rule_of_sorted(sorted.data(), n, f, rule);
          CHECK((std::isnan(got) && std::isnan(want)) || got == want,
                "partial order: rule %s n=%lld f=%lld got %.17g want %.17g", core::coordinate_rule_name(rule),
                static_cast<long long>(n), static_cast<long long>(f), static_cast<double>(got),
                static_cast<double>(want));
          if (rule == CoordinateRule::kMedian) break;
        }
      }
    }
  }
}

int main() {
  for (unsigned seed = 1; seed <= 4; ++seed) test_partial_order<float>(seed), test_partial_order<double>(seed + 10);
  test_order();
  test_ties();
  for (unsigned seed = 1; seed <= 5; ++seed) test_random(seed);
  test_float_accumulation();
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_window: all checks passed\n");
  return 0;
}
