// Batcher's odd-even merge sort as a compile-time list of comparators, for sorting a column
// held in registers (SIMD lanes on the CPU, registers of one thread on the GPU). Torch-free.
//
// For N values the network of the next power of two P is taken and every comparator that
// touches a position >= N is dropped: those positions would hold +inf, which no comparator
// moves, so what remains sorts N values. A network can be pruned to the comparators that
// reach a set of output positions (the median needs far fewer than a full sort).
#pragma once

#include <cstdint>
#include <utility>

#include "macros.h"

namespace byzagg {
namespace core {

struct Comparator {
  int lo;
  int hi;
};

constexpr int next_power_of_two(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Calls emit(lo, hi, p) for each comparator of the network for n values, in order; p is its
// merge level (it merges sorted runs of p values into runs of 2p, within a block of 2p).
template <typename Emit>
constexpr void batcher_network(int n, Emit&& emit) {
  const int P = next_power_of_two(n);
  for (int p = 1; p < P; p <<= 1) {
    for (int k = p; k >= 1; k >>= 1) {
      for (int j = k % p; j + k < P; j += 2 * k) {
        for (int i = 0; i < k && i + j + k < P; ++i) {
          if ((i + j) / (2 * p) == (i + j + k) / (2 * p) && i + j + k < n) emit(i + j, i + j + k, p);
        }
      }
    }
  }
}

// Which outputs a network must produce exactly.
enum class NetworkOutputs : int {
  kAll = 0,     // a full sort
  kMiddle = 1,  // positions (N - 1) / 2 and N / 2: the median, odd or even N
};

template <int N, NetworkOutputs Outputs>
struct SortingNetwork {
  static constexpr int kMaxComparators = N * N;  // generous bound for the arrays below
  struct Built {
    Comparator comparators[kMaxComparators > 0 ? kMaxComparators : 1];
    int count;
  };

  // Appends the comparators of the block at level p, index b (values [2pb, 2p(b + 1))):
  // those of its halves first, then its own.
  static constexpr void emit_block(Built& built, int p, int b) {
    if (p < 1) return;
    emit_block(built, p / 2, 2 * b);
    emit_block(built, p / 2, 2 * b + 1);
    batcher_network(N, [&built, p, b](int lo, int hi, int level) {
      if (level == p && lo / (2 * p) == b) built.comparators[built.count++] = Comparator{lo, hi};
    });
  }

  static constexpr Built build() {
    // Batcher's comparators in depth-first order: a block of 2p values is sorted by sorting
    // its halves (recursively) and then running its level-p comparators, so that a small
    // block is sorted while its values are in registers. The same comparators, each seeing
    // the same values as in Batcher's order: only the order of independent ones changes.
    Built all{};
    all.count = 0;
    emit_block(all, next_power_of_two(N) / 2, 0);
    if (Outputs == NetworkOutputs::kAll) return all;
    // Walk back from the needed outputs, keeping comparators that can reach them.
    bool needed[N > 0 ? N : 1] = {};
    if (N > 0) {
      needed[(N - 1) / 2] = true;
      needed[N / 2] = true;
    }
    bool keep[kMaxComparators > 0 ? kMaxComparators : 1] = {};
    for (int c = all.count - 1; c >= 0; --c) {
      const Comparator cmp = all.comparators[c];
      if (needed[cmp.lo] || needed[cmp.hi]) {
        keep[c] = true;
        needed[cmp.lo] = needed[cmp.hi] = true;
      }
    }
    Built pruned{};
    pruned.count = 0;
    for (int c = 0; c < all.count; ++c) {
      if (keep[c]) pruned.comparators[pruned.count++] = all.comparators[c];
    }
    return pruned;
  }

  static constexpr Built kBuilt = build();
  static constexpr int kCount = kBuilt.count;
};

template <int N, NetworkOutputs Outputs>
constexpr typename SortingNetwork<N, Outputs>::Built SortingNetwork<N, Outputs>::kBuilt;

// Applies the network to x[0..N) with `exchange(a, b)` putting min in a and max in b; fully
// unrolled, so that x can live in registers.
template <int N, NetworkOutputs Outputs, typename V, typename Exchange, std::size_t... I>
BYZAGG_HD void apply_network_unrolled(V* x, Exchange&& exchange, std::index_sequence<I...>) {
  using Net = SortingNetwork<N, Outputs>;
  (exchange(x[Net::kBuilt.comparators[I].lo], x[Net::kBuilt.comparators[I].hi]), ...);
}

template <int N, NetworkOutputs Outputs, typename V, typename Exchange>
BYZAGG_HD void apply_network(V* x, Exchange&& exchange) {
  apply_network_unrolled<N, Outputs>(x, exchange, std::make_index_sequence<SortingNetwork<N, Outputs>::kCount>{});
}

// Bitonic sort of P (a power of two) values by P / 2 parallel comparators per step (the
// CUDA shared-memory path): steps for size = 2, 4, ..., P and stride = size / 2, ..., 1;
// comparator p (0 <= p < P / 2) of a step joins positions i < j below, and puts the pair
// in ascending order when `bitonic_ascending(i, size)`, descending otherwise.
struct BitonicPair {
  int64_t i;
  int64_t j;
};

BYZAGG_HD BitonicPair bitonic_pair(int64_t p, int64_t stride) {
  const int64_t i = 2 * p - (p & (stride - 1));  // (p / stride) * 2 * stride + p % stride
  return BitonicPair{i, i + stride};
}

BYZAGG_HD bool bitonic_ascending(int64_t i, int64_t size) { return (i & size) == 0; }

}  // namespace core
}  // namespace byzagg
