// The coordinate-wise family (median, trimmed mean, MeaMed, Phocas, Bulyan's last step) as
// "order the column, then average a window of it". Torch-free, host and device.
//
// Order: ascending with NaN after +inf (docs/api.md). Windows:
//   median        the middle value, or the mean of the two middle values for even n;
//   trimmed mean  [f, n - f);
//   nearest k     the k values nearest a center: a contiguous window of the sorted column,
//                 slid up from 0 while the value it would take in is strictly nearer the
//                 center than the one it would drop (ties keep the lower values).
// Arithmetic in T, the accumulation type (float for fp16/bf16/fp32, double for fp64).
#pragma once

#include <cstdint>

#include "macros.h"
#include "requirements.h"

namespace byzagg {
namespace core {

enum class CoordinateRule : int32_t {
  kMedian = 0,
  kTrimmedMean = 1,
  kMeaMed = 2,
  kPhocas = 3,
};

template <typename T>
BYZAGG_HD bool is_nan(T x) {
  return x != x;
}

// a < b in the order where NaN is larger than every number.
template <typename T>
BYZAGG_HD bool nan_last_less(T a, T b) {
  return is_nan(b) ? !is_nan(a) : a < b;
}

// The order of a padded column: real values (NaN last) before padding.
template <typename T>
BYZAGG_HD bool padded_less(bool pad_a, T a, bool pad_b, T b) {
  if (pad_a != pad_b) return pad_b;
  return !pad_a && nan_last_less(a, b);
}

// Stable insertion sort in the NaN-last order: for short columns and device code.
template <typename T>
BYZAGG_HD void insertion_sort(T* v, int64_t n) {
  for (int64_t i = 1; i < n; ++i) {
    T x = v[i];
    int64_t j = i;
    while (j > 0 && nan_last_less(x, v[j - 1])) {
      v[j] = v[j - 1];
      --j;
    }
    v[j] = x;
  }
}

template <typename T>
BYZAGG_HD T median_of_sorted(const T* v, int64_t n) {
  if (n % 2 == 1) return v[n / 2];
  return (v[n / 2 - 1] + v[n / 2]) / T(2);
}

// Mean of v[begin, begin + count), summed in index order.
template <typename T>
BYZAGG_HD T range_mean(const T* v, int64_t begin, int64_t count) {
  T sum = T(0);
  for (int64_t i = begin; i < begin + count; ++i) sum += v[i];
  return sum / T(count);
}

// Start of the k values of the sorted column v nearest to center (see the header).
template <typename T>
BYZAGG_HD int64_t nearest_window_start(const T* v, int64_t n, int64_t k, T center) {
  int64_t start = 0;
  while (start < n - k && (v[start + k] - center) < (center - v[start])) ++start;
  return start;
}

template <typename T>
BYZAGG_HD T nearest_mean(const T* v, int64_t n, int64_t k, T center) {
  return range_mean(v, nearest_window_start(v, n, k, center), k);
}

// The rule's value for one sorted column of n values, f the number tolerated.
template <typename T>
BYZAGG_HD T coordinate_rule_of_sorted(const T* v, int64_t n, int64_t f, CoordinateRule rule) {
  switch (rule) {
    case CoordinateRule::kMedian: return median_of_sorted(v, n);
    case CoordinateRule::kTrimmedMean: return range_mean(v, f, n - 2 * f);
    case CoordinateRule::kMeaMed: return nearest_mean(v, n, n - f, median_of_sorted(v, n));
    case CoordinateRule::kPhocas:
    default: return nearest_mean(v, n, n - f, range_mean(v, f, n - 2 * f));
  }
}

// The rule over the values of a sorted column that are not NaN (the first ones: NaN sorts
// last): NaN when there are none. The CUDA geometric median starts at the median of the
// rows that take part, the others loaded as NaN.
template <typename T>
BYZAGG_HD T coordinate_rule_of_sorted_numbers(const T* v, int64_t n, int64_t f, CoordinateRule rule) {
  int64_t count = n;
  while (count > 0 && is_nan(v[count - 1])) --count;
  if (count == 0) return v[0];  // NaN
  return coordinate_rule_of_sorted(v, count, f, rule);
}

// What the rule requires of n and f (n >= 1 for the median, n > 2f otherwise).
inline bool coordinate_rule_accepts(int64_t n, int64_t f, CoordinateRule rule) {
  if (n < 1 || f < 0) return false;
  return rule == CoordinateRule::kMedian || n_above_2f(n, f);
}

inline const char* coordinate_rule_name(CoordinateRule rule) {
  switch (rule) {
    case CoordinateRule::kMedian: return "median";
    case CoordinateRule::kTrimmedMean: return "trimmed_mean";
    case CoordinateRule::kMeaMed: return "meamed";
    default: return "phocas";
  }
}

}  // namespace core
}  // namespace byzagg
