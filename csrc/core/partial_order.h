// Host only: the coordinate-wise rules on an unsorted column, putting in sorted order only
// the part that the rule reads (std::nth_element, then std::sort of that part), for long
// columns (n > 64 on the CPU), where sorting the whole column per coordinate dominated.
// The values are those of coordinate_rule_of_sorted on the fully sorted column (window.h,
// same arithmetic in the same order): the values in each position of the part read are the
// same; only a zero's sign can differ where -0 and +0 tie (the order does not rank them).
// The column is reordered.
#pragma once

#include <algorithm>
#include <cstdint>

#include "window.h"

namespace byzagg {
namespace core {

// The median in the NaN-last order (the mean of the two middle values for even n).
template <typename T>
T median_of_unsorted(T* v, int64_t n) {
  const int64_t mid = n / 2;
  std::nth_element(v, v + mid, v + n, nan_last_less<T>);
  if (n % 2 == 1) return v[mid];
  const T lower = *std::max_element(v, v + mid, nan_last_less<T>);
  return (lower + v[mid]) / T(2);
}

// The rule's value (window.h) for one unsorted column of n values, f the number tolerated.
template <typename T>
T coordinate_rule_of_unsorted(T* v, int64_t n, int64_t f, CoordinateRule rule) {
  switch (rule) {
    case CoordinateRule::kMedian: return median_of_unsorted(v, n);
    case CoordinateRule::kTrimmedMean:
      // v[f, n - f) <- the order statistics f .. n - f - 1, then sorted (summed in order)
      if (f > 0) {
        std::nth_element(v, v + f, v + n, nan_last_less<T>);
        std::nth_element(v + f, v + (n - f), v + n, nan_last_less<T>);
      }
      std::sort(v + f, v + (n - f), nan_last_less<T>);
      return range_mean(v, f, n - 2 * f);
    default:
      // MeaMed, Phocas: the window of n - f values may start anywhere in [0, f]
      std::sort(v, v + n, nan_last_less<T>);
      return coordinate_rule_of_sorted(v, n, f, rule);
  }
}

}  // namespace core
}  // namespace byzagg
