// The coordinate-wise rule of one column held in registers (the CUDA kernel for n <= 64,
// one thread per coordinate): NaN replaced by +inf and counted, padding +inf, the column
// sorted by the compile-time network of sorting_network.h, NaN restored at the top, then
// the window of window.h. Torch-free, host and device (unit-tested on the host).
#pragma once

#include <cstdint>
#include <limits>

#include "macros.h"
#include "sorting_network.h"
#include "window.h"

namespace byzagg {
namespace core {

// Puts min(a, b) in a and max(a, b) in b (no NaN may be present).
struct MinMaxExchange {
  template <typename T>
  BYZAGG_HD void operator()(T& a, T& b) const {
    const T low = a < b ? a : b;
    b = a < b ? b : a;
    a = low;
  }
};

// The rule's value of the column whose value p (0 <= p < n <= N) is load(p). The median uses
// the network pruned to its two middle outputs (Outputs = kMiddle): the column is placed so
// that its middle lands on the network's middle, -inf below and +inf above; other rules
// sort all N positions (Outputs = kAll), the column first and +inf above.
// With skip_nan (Outputs = kAll only), the rule applies to the values that are not NaN.
template <int N, NetworkOutputs Outputs, typename T, typename Load>
BYZAGG_HD T coordinate_rule_by_network(Load&& load, int64_t n, int64_t f, CoordinateRule rule, bool skip_nan = false) {
  static_assert(N % 2 == 0, "network sizes are even");
  const T inf = std::numeric_limits<T>::infinity();
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const int64_t low = Outputs == NetworkOutputs::kMiddle ? N / 2 - (n + 1) / 2 : 0;  // position of value 0
  T v[N];
  int64_t nans = 0;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int k = 0; k < N; ++k) {
    const int64_t p = k - low;
    T x;
    if (p < 0) {
      x = -inf;
    } else if (p >= n) {
      x = inf;
    } else {
      x = load(p);
      if (is_nan(x)) {
        ++nans;
        x = inf;
      }
    }
    v[k] = x;
  }
  apply_network<N, Outputs>(v, MinMaxExchange{});
  const int64_t first_nan = n - nans;  // sorted values from here on were NaN
  if (Outputs == NetworkOutputs::kMiddle) {
    const T a = N / 2 - 1 - low >= first_nan ? nan : v[N / 2 - 1];
    const T b = N / 2 - low >= first_nan ? nan : v[N / 2];
    return n % 2 == 1 ? a : (a + b) / T(2);
  }
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int k = 0; k < N; ++k)
    if (k >= first_nan) v[k] = nan;
  return skip_nan ? coordinate_rule_of_sorted_numbers(v, n, f, rule) : coordinate_rule_of_sorted(v, n, f, rule);
}

}  // namespace core
}  // namespace byzagg
