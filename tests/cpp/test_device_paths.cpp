// Host tests of the logic the CUDA kernels run (csrc/core, compiled here as host code):
// - rank_position (one thread per entry, counting) gives rank_rows's order;
// - coordinate_rule_by_network (the register path, n <= 64) gives the value of a plain
//   sort followed by the window, for every rule, with NaN, infinities and ties, and with
//   skip_nan the value of the rule over the values that are not NaN;
// - the bitonic steps of the shared-memory path (bitonic_pair, bitonic_ascending,
//   padded_less) sort padded columns into the same order as a stable sort;
// - SortingNetwork<N> (every N <= 64) holds Batcher's comparators, and any two that share a
//   value run in Batcher's order (its depth-first order changes only when independent ones
//   run, so every comparator sees the values it sees in Batcher's order).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "core/network_rule.h"
#include "core/selection.h"
#include "check.h"

namespace core = byzagg::core;
using core::CoordinateRule;
using core::NetworkOutputs;

static const CoordinateRule kRules[] = {CoordinateRule::kMedian, CoordinateRule::kTrimmedMean, CoordinateRule::kMeaMed,
                                        CoordinateRule::kPhocas};

static bool same_bits_or_nan(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// A value from a small set (ties), with NaN and infinities now and then.
static float draw(std::mt19937& rng) {
  const int k = static_cast<int>(rng() % 20);
  if (k == 0) return std::numeric_limits<float>::quiet_NaN();
  if (k == 1) return std::numeric_limits<float>::infinity();
  if (k == 2) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(static_cast<int>(rng() % 9) - 4) * 0.75f;
}

static float plain_rule(std::vector<float> column, int64_t f, CoordinateRule rule) {
  std::stable_sort(column.begin(), column.end(), core::nan_last_less<float>);
  return core::coordinate_rule_of_sorted(column.data(), static_cast<int64_t>(column.size()), f, rule);
}

template <int N>
static void check_network_size(std::mt19937& rng) {
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t n = 1 + static_cast<int64_t>(rng() % N);
    std::vector<float> column(static_cast<size_t>(n));
    for (float& x : column) x = draw(rng);
    for (CoordinateRule rule : kRules) {
      const int64_t f_max = rule == CoordinateRule::kMedian ? 0 : (n - 1) / 2;
      const int64_t f = f_max == 0 ? 0 : static_cast<int64_t>(rng() % (f_max + 1));
      auto load = [&](int64_t p) { return column[static_cast<size_t>(p)]; };
      const float got = rule == CoordinateRule::kMedian
                            ? core::coordinate_rule_by_network<N, NetworkOutputs::kMiddle, float>(load, n, f, rule)
                            : core::coordinate_rule_by_network<N, NetworkOutputs::kAll, float>(load, n, f, rule);
      const float want = plain_rule(column, f, rule);
      CHECK(same_bits_or_nan(got, want), "N=%d n=%lld f=%lld rule=%s: %g vs %g", N, static_cast<long long>(n),
            static_cast<long long>(f), core::coordinate_rule_name(rule), got, want);
      // skip_nan (the CUDA geometric median's start): the rule over the values that are not
      // NaN, where the window still fits them.
      std::vector<float> numbers;
      for (float x : column)
        if (!std::isnan(x)) numbers.push_back(x);
      const int64_t m = static_cast<int64_t>(numbers.size());
      if (rule == CoordinateRule::kMedian || (m > 0 && m > 2 * f)) {
        const float got_numbers =
            core::coordinate_rule_by_network<N, NetworkOutputs::kAll, float>(load, n, f, rule, true);
        const float want_numbers = m == 0 ? std::numeric_limits<float>::quiet_NaN() : plain_rule(numbers, f, rule);
        CHECK(same_bits_or_nan(got_numbers, want_numbers), "skip_nan N=%d n=%lld m=%lld f=%lld rule=%s: %g vs %g", N,
              static_cast<long long>(n), static_cast<long long>(m), static_cast<long long>(f),
              core::coordinate_rule_name(rule), got_numbers, want_numbers);
      }
    }
  }
}

static void check_bitonic(std::mt19937& rng) {
  for (int64_t padded : {2, 8, 128, 1024}) {
    for (int trial = 0; trial < 30; ++trial) {
      const int64_t n = 1 + static_cast<int64_t>(rng() % padded);
      std::vector<float> values(static_cast<size_t>(padded), 0.0f);
      std::vector<uint8_t> pad(static_cast<size_t>(padded), 1);
      for (int64_t k = 0; k < n; ++k) {
        values[k] = draw(rng);
        pad[k] = 0;
      }
      std::vector<float> want(values.begin(), values.begin() + n);
      std::stable_sort(want.begin(), want.end(), core::nan_last_less<float>);
      for (int64_t size = 2; size <= padded; size <<= 1)
        for (int64_t stride = size >> 1; stride > 0; stride >>= 1)
          for (int64_t p = 0; p < padded / 2; ++p) {
            const core::BitonicPair pair = core::bitonic_pair(p, stride);
            CHECK(pair.i >= 0 && pair.j < padded && pair.j - pair.i == stride, "pair %lld", static_cast<long long>(p));
            const bool j_first = core::padded_less(pad[pair.j] != 0, values[pair.j], pad[pair.i] != 0, values[pair.i]);
            if (j_first == core::bitonic_ascending(pair.i, size)) {
              std::swap(values[pair.i], values[pair.j]);
              std::swap(pad[pair.i], pad[pair.j]);
            }
          }
      bool ordered = true;
      for (int64_t k = 0; k < padded; ++k) {
        if (k < n)
          ordered = ordered && pad[k] == 0 && same_bits_or_nan(values[k], want[k]);
        else
          ordered = ordered && pad[k] == 1;
      }
      CHECK(ordered, "bitonic: padded=%lld n=%lld not sorted like a stable sort", static_cast<long long>(padded),
            static_cast<long long>(n));
    }
  }
}

static void check_rank_position(std::mt19937& rng) {
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t n = 1 + static_cast<int64_t>(rng() % 40);
    std::vector<double> keys(static_cast<size_t>(n));
    std::vector<uint8_t> finite(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      keys[i] = static_cast<double>(draw(rng));
      finite[i] = rng() % 5 != 0;
    }
    const bool with_flags = trial % 2 == 0;
    std::vector<int64_t> want(static_cast<size_t>(n));
    if (with_flags) {
      core::rank_rows(keys.data(), finite.data(), n, want.data());
    } else {
      const std::vector<uint8_t> all(static_cast<size_t>(n), 1);
      core::rank_rows(keys.data(), all.data(), n, want.data());
    }
    std::vector<int64_t> got(static_cast<size_t>(n), -1);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t position = core::rank_position(
          keys.data(), with_flags ? finite.data() : static_cast<const uint8_t*>(nullptr), n, j, false, int64_t(0));
      CHECK(position >= 0 && position < n, "position %lld out of range", static_cast<long long>(position));
      if (position >= 0 && position < n) got[position] = j;
    }
    CHECK(got == want, "rank_position differs from rank_rows (n=%lld)", static_cast<long long>(n));
    // Skipping entry r: the ranking of the other entries, as neighbour_lists builds it.
    const int64_t r = static_cast<int64_t>(rng() % n);
    std::vector<int64_t> others;
    for (int64_t j : want)
      if (j != r) others.push_back(j);
    std::vector<int64_t> got_others(static_cast<size_t>(n - 1), -1);
    for (int64_t j = 0; j < n; ++j) {
      if (j == r) continue;
      const int64_t position = core::rank_position(
          keys.data(), with_flags ? finite.data() : static_cast<const uint8_t*>(nullptr), n, j, true, r);
      if (position >= 0 && position < n - 1) got_others[position] = j;
    }
    CHECK(got_others == others, "rank_position with skip_self differs (n=%lld, r=%lld)", static_cast<long long>(n),
          static_cast<long long>(r));
  }
}

template <int N>
static void check_network_order() {
  std::vector<core::Comparator> batcher;
  core::batcher_network(N, [&](int lo, int hi, int) { batcher.push_back(core::Comparator{lo, hi}); });
  using Net = core::SortingNetwork<N, NetworkOutputs::kAll>;
  const int count = static_cast<int>(batcher.size());
  CHECK(Net::kCount == count, "N=%d: %d comparators, Batcher has %d", N, Net::kCount, count);
  if (Net::kCount != count) return;
  // where each of Batcher's comparators runs in the network (the k-th (lo, hi) pair of one
  // order is the k-th of the other)
  std::vector<int> position(static_cast<size_t>(count), -1);
  std::vector<bool> taken(static_cast<size_t>(count), false);
  for (int c = 0; c < count; ++c) {
    const core::Comparator cmp = Net::kBuilt.comparators[c];
    int b = 0;
    while (b < count && (taken[b] || batcher[b].lo != cmp.lo || batcher[b].hi != cmp.hi)) ++b;
    CHECK(b < count, "N=%d: comparator (%d, %d) is not Batcher's", N, cmp.lo, cmp.hi);
    if (b == count) return;
    taken[b] = true;
    position[b] = c;
  }
  for (int a = 0; a < count; ++a) {
    for (int b = a + 1; b < count; ++b) {
      const bool share = batcher[a].lo == batcher[b].lo || batcher[a].lo == batcher[b].hi ||
                         batcher[a].hi == batcher[b].lo || batcher[a].hi == batcher[b].hi;
      if (share && position[a] > position[b]) {
        CHECK(false, "N=%d: (%d, %d) runs after (%d, %d), which depends on it", N, batcher[a].lo, batcher[a].hi,
              batcher[b].lo, batcher[b].hi);
        return;
      }
    }
  }
}

template <std::size_t... I>
static void check_network_orders(std::index_sequence<I...>) {
  (check_network_order<static_cast<int>(I) + 2>(), ...);
}

int main() {
  std::mt19937 rng(20261123);
  check_network_size<16>(rng);
  check_network_size<32>(rng);
  check_network_size<48>(rng);
  check_network_size<64>(rng);
  check_bitonic(rng);
  check_rank_position(rng);
  check_network_orders(std::make_index_sequence<63>{});  // N = 2 .. 64
  std::printf("test_device_paths: %d failures\n", failures);
  return failures == 0 ? 0 : 1;
}
