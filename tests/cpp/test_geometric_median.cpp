// Unit tests of csrc/core/geometric_median.h (no torch): the data-point check's candidate
// (the active row nearest the iterate, first on ties), the line search's objective change
// (against the objective computed directly), and the row's slack.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

#include "check.h"
#include "core/geometric_median.h"

namespace core = byzagg::core;

int main() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  {
    const double dist[] = {3.0, 1.0, 0.5, 0.5, 2.0};
    const uint8_t all[] = {1, 1, 1, 1, 1}, some[] = {1, 1, 0, 1, 1}, none[] = {0, 0, 0, 0, 0};
    CHECK(core::geometric_median_nearest_row(dist, 5, all) == 2, "first of the least");
    CHECK(core::geometric_median_nearest_row(dist, 5, some) == 3, "inactive rows skipped");
    CHECK(core::geometric_median_nearest_row(dist, 5, none) == -1, "no active row");
    const double nans[] = {nan, nan, nan};
    const uint8_t later[] = {0, 1, 1};
    CHECK(core::geometric_median_nearest_row(nans, 3, later) == 1, "all NaN: the first active row");
    const double near_tie[] = {2.0, 1.0 + 1e-12, 1.0, 1.0 + 1e-6};
    const uint8_t four[] = {1, 1, 1, 1};
    CHECK(core::geometric_median_nearest_row(near_tie, 4, four) == 1, "a near tie goes to the first");
    const double apart[] = {1.0 + 1e-6, 1.0};
    CHECK(core::geometric_median_nearest_row(apart, 2, four) == 1, "beyond the slack: the nearest");
  }
  {
    // rows on a line at 0, 1, 10 (d = 1), z = 4, s = -2: the objective along z + lam s is
    // |4 - 2 lam| + |3 - 2 lam| + |6 + 2 lam| with weights 1, 2, 0.5
    const double x[] = {0.0, 1.0, 10.0}, w[] = {1.0, 2.0, 0.5};
    const double z = 4.0, s = -2.0;
    const uint8_t active[] = {1, 1, 1};
    double q0[3], b[3], dist[3], change = nan;
    for (int i = 0; i < 3; ++i) q0[i] = (z - x[i]) * (z - x[i]), b[i] = (z - x[i]) * s;
    const double lam = core::geometric_median_line_search(q0, b, s * s, w, 3, active, dist, &change);
    auto objective = [&](double at) {
      double sum = 0.0;
      for (int i = 0; i < 3; ++i) sum += w[i] * std::fabs(at - x[i]);
      return sum;
    };
    const double best = objective(z + lam * s);
    CHECK(std::fabs(objective(z) + change - best) <= 1e-12 * objective(z), "change %.17g", change);
    for (int k = 0; k < core::kGeometricMedianSteps; ++k)
      CHECK(best <= objective(z + core::geometric_median_step(k) * s) + 1e-12, "the least of the grid, k=%d", k);
    for (int i = 0; i < 3; ++i) CHECK(std::fabs(dist[i] - std::fabs(z + lam * s - x[i])) <= 1e-12, "dist %d", i);
    double none = nan;
    core::geometric_median_line_search(q0, b, 0.0, w, 3, active, dist, &none);
    CHECK(none == 0.0, "no step: no change");
  }
  CHECK(core::geometric_median_row_wins(1.0, 1.0), "a tie goes to the row");
  CHECK(core::geometric_median_row_wins(1.0 + 1e-13, 1.0), "within the slack");
  CHECK(!core::geometric_median_row_wins(1.0 + 1e-9, 1.0), "beyond the slack");
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_geometric_median: all checks passed\n");
  return 0;
}
