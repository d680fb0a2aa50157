// Krum-family selections on an n x n matrix of squared distances (csrc/core/distances.h):
// ranking, Krum scores, Krum and Bulyan selection, nearest neighbours (NNM), medoid.
// Torch-free. The comparator is host and device; the rest is host code (std::sort).
//
// Order of rows (docs/api.md, and rank_rows in byzagg/_reference_impl.py): a row with a
// non-finite value after every finite row; then by key, NaN keys last; then by index.
// Scores are sums in double of the smallest distances taken in ascending order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "macros.h"

namespace byzagg {
namespace core {

// Whether row a (finite flag, key, index) ranks before row b.
template <typename Key>
BYZAGG_HD bool ranks_before(bool finite_a, Key key_a, int64_t a, bool finite_b, Key key_b, int64_t b) {
  if (finite_a != finite_b) return finite_a;
  const bool nan_a = key_a != key_a, nan_b = key_b != key_b;
  if (nan_a != nan_b) return nan_b;
  if (!nan_a && key_a != key_b) return key_a < key_b;
  return a < b;
}

// The position of entry j in ranking r of the n keys keys[0, n) (with finite flags, null:
// all finite): the number of entries that rank before it. With skip_self, entry r is left
// out (the ranking of the other rows). The CUDA kernels rank this way, one thread per
// entry, with no sort: order[position(j)] = j gives core::rank_rows's order.
template <typename Key, typename Flag>
BYZAGG_HD int64_t rank_position(const Key* keys, const Flag* finite, int64_t n, int64_t j, bool skip_self, int64_t r) {
  const bool finite_j = finite == nullptr || static_cast<bool>(finite[j]);
  int64_t position = 0;
  for (int64_t l = 0; l < n; ++l) {
    if (l == j || (skip_self && l == r)) continue;
    const bool finite_l = finite == nullptr || static_cast<bool>(finite[l]);
    if (ranks_before(finite_l, keys[l], l, finite_j, keys[j], j)) ++position;
  }
  return position;
}

// order[0, n) = 0..n-1 sorted by ranks_before(finite[i], keys[i], i, ...).
template <typename Key, typename Flag>
void rank_rows(const Key* keys, const Flag* finite, int64_t n, int64_t* order) {
  std::iota(order, order + n, int64_t(0));
  std::sort(order, order + n, [&](int64_t a, int64_t b) {
    return ranks_before(static_cast<bool>(finite[a]), keys[a], a, static_cast<bool>(finite[b]), keys[b], b);
  });
}

// For each row i of the row-major n x n matrix D2, the other rows in ascending order of
// (D2[i][j], j): row i's list is lists[i * (n - 1), (i + 1) * (n - 1)).
inline std::vector<int64_t> neighbour_lists(const double* D2, int64_t n) {
  std::vector<int64_t> lists(static_cast<size_t>(n * (n - 1)));
  for (int64_t i = 0; i < n; ++i) {
    int64_t* list = lists.data() + i * (n - 1);
    int64_t k = 0;
    for (int64_t j = 0; j < n; ++j)
      if (j != i) list[k++] = j;
    const double* row = D2 + i * n;
    std::sort(list, list + (n - 1),
              [&](int64_t a, int64_t b) { return ranks_before(true, row[a], a, true, row[b], b); });
  }
  return lists;
}

// Row i's Krum score within the active rows: the sum of D2[i][j] over the first
// `neighbours` active rows j of its neighbour list (the other rows by ascending distance).
template <typename Flag>
BYZAGG_HD double krum_score_within(const double* D2, int64_t n, const int64_t* list, const Flag* active,
                                   int64_t neighbours, int64_t i) {
  double sum = 0.0;
  int64_t taken = 0;
  for (int64_t k = 0; k < n - 1 && taken < neighbours; ++k) {
    const int64_t j = list[k];
    if (!active[j]) continue;
    sum += D2[i * n + j];
    ++taken;
  }
  return sum;
}

// Krum scores within the active rows: for each active row i, the sum of D2[i][j] over its
// `neighbours` nearest active rows j != i, in ascending order (0 when neighbours <= 0).
// Inactive rows get no score (their entry is left as is).
template <typename Flag>
void krum_scores_within(const double* D2, int64_t n, const std::vector<int64_t>& lists, const Flag* active,
                        int64_t neighbours, double* scores) {
  for (int64_t i = 0; i < n; ++i) {
    if (!active[i]) continue;
    scores[i] = krum_score_within(D2, n, lists.data() + i * (n - 1), active, neighbours, i);
  }
}

// Krum scores of all n rows with n - f - 2 neighbours.
inline std::vector<double> krum_scores(const double* D2, int64_t n, int64_t f) {
  std::vector<double> scores(static_cast<size_t>(n), 0.0);
  const std::vector<uint8_t> all(static_cast<size_t>(n), 1);
  krum_scores_within(D2, n, neighbour_lists(D2, n), all.data(), n - f - 2, scores.data());
  return scores;
}

// The m rows Krum selects, best first: ranked by (non-finite last, score, index).
template <typename Flag>
std::vector<int64_t> krum_select(const double* D2, int64_t n, const Flag* finite, int64_t f, int64_t m) {
  const std::vector<double> scores = krum_scores(D2, n, f);
  std::vector<int64_t> order(static_cast<size_t>(n));
  rank_rows(scores.data(), finite, n, order.data());
  order.resize(static_cast<size_t>(std::min(m, n)));
  return order;
}

// Bulyan's selection: theta = n - 2f rows, each the best-ranked Krum row among the rows not
// yet selected, scores recomputed on that set with (remaining - f - 2) neighbours. Returns
// the rows in the order they were selected.
template <typename Flag>
std::vector<int64_t> bulyan_select(const double* D2, int64_t n, const Flag* finite, int64_t f) {
  const int64_t theta = n - 2 * f;
  const std::vector<int64_t> lists = neighbour_lists(D2, n);
  std::vector<uint8_t> active(static_cast<size_t>(n), 1);
  std::vector<double> scores(static_cast<size_t>(n), 0.0);
  std::vector<int64_t> selected;
  selected.reserve(static_cast<size_t>(std::max<int64_t>(theta, 0)));
  for (int64_t round = 0; round < theta; ++round) {
    const int64_t remaining = n - round;
    krum_scores_within(D2, n, lists, active.data(), remaining - f - 2, scores.data());
    int64_t best = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (!active[i]) continue;
      if (best < 0 ||
          ranks_before(static_cast<bool>(finite[i]), scores[i], i, static_cast<bool>(finite[best]), scores[best], best))
        best = i;
    }
    selected.push_back(best);
    active[static_cast<size_t>(best)] = 0;
  }
  return selected;
}

// NNM's order of the rows around row i: all n rows ranked by (non-finite row last,
// D2[i][j], j); the neighbourhood of n - f rows is its first n - f entries (row i itself,
// at distance 0, is among them unless n - f rows tie with it at 0 before it).
template <typename Flag>
void neighbourhood_order(const double* D2, int64_t n, const Flag* finite, int64_t i, int64_t* order) {
  rank_rows(D2 + i * n, finite, n, order);
}

// The active row k of least sum_i w[i] sqrt(D2[k][i]) over the active rows i (w null: all
// weights 1; summed in column order), the first on ties; -1 when no row is active. The
// medoid's row, and the geometric median's data-point candidate (geometric_median.h).
template <typename Flag>
BYZAGG_HD int64_t least_distance_sum_row(const double* D2, int64_t n, const Flag* active, const double* w) {
  int64_t best = -1;
  double best_sum = 0.0;
  for (int64_t k = 0; k < n; ++k) {
    if (!active[k]) continue;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i)
      if (active[i]) sum += (w == nullptr ? 1.0 : w[i]) * sqrt(D2[k * n + i]);
    if (best < 0 || sum < best_sum) {
      best = k;
      best_sum = sum;
    }
  }
  return best;
}

// The medoid: the row with the least sum of Euclidean distances sqrt(D2) to the finite
// rows, among the finite rows, ties to the lower index; row 0 when no row is finite.
template <typename Flag>
int64_t medoid_row(const double* D2, int64_t n, const Flag* finite) {
  const int64_t best = least_distance_sum_row(D2, n, finite, nullptr);
  return best < 0 ? 0 : best;
}

}  // namespace core
}  // namespace byzagg
