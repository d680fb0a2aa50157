// Minimum-diameter averaging's subset, exactly, without enumerating the C(n, f) subsets.
// Torch-free host code.
//
// The kept set S (|S| = k = n - f) minimises the diameter max_{i, j in S} D[i][j]; among
// the subsets of least diameter, the lexicographically first sorted tuple of indices
// (itertools.combinations order, as the reference). Non-finite rows have D = +inf to
// every other row.
//
// A subset has diameter <= t iff it contains no "conflict" pair (D > t), that is iff the
// removed rows form a vertex cover of the conflict graph. So:
// 1. t* = the least pairwise distance t for which the conflict graph has a vertex cover of
//    at most f rows (binary search over the sorted distances; the test is monotone in t);
// 2. at t*, rows are decided in index order: row i is kept when some cover still exists
//    that avoids every kept row (including i) and contains every removed row, otherwise it
//    is removed; this yields the lexicographically first optimal subset.
// The cover test is a branch and bound: rows next to a kept row must go; a row with more
// conflicts than the budget left must go; more than budget^2 conflicts left is hopeless;
// otherwise branch on the row with most conflicts (remove it, or keep it). At most about
// 2^f leaves, and C(n, f) >= 2^f when n > 2f.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace byzagg {
namespace core {

class MdaSearch {
 public:
  // D: row-major n x n distances (symmetric, zero diagonal, +inf allowed, no NaN).
  MdaSearch(const double* D, int64_t n, int64_t f) : D_(D), n_(n), f_(f), state_(static_cast<size_t>(n), kFree) {}

  // The kept rows, ascending.
  std::vector<int64_t> select() {
    const int64_t k = n_ - f_;
    std::vector<int64_t> kept;
    if (f_ <= 0) {
      for (int64_t i = 0; i < n_; ++i) kept.push_back(i);
      return kept;
    }
    set_threshold(least_feasible_diameter());
    std::fill(state_.begin(), state_.end(), kFree);
    int64_t removed = 0;
    for (int64_t i = 0; i < n_; ++i) {
      if (static_cast<int64_t>(kept.size()) == k) {
        state_[i] = kRemoved;
        continue;
      }
      if (removed == f_) {
        state_[i] = kKept;
        kept.push_back(i);
        continue;
      }
      state_[i] = kKept;
      if (cover_exists(f_ - removed)) {
        kept.push_back(i);
      } else {
        state_[i] = kRemoved;
        ++removed;
      }
    }
    return kept;
  }

  // The least diameter of a subset of k rows (exposed for tests).
  double least_feasible_diameter() {
    std::vector<double> candidates;
    candidates.reserve(static_cast<size_t>(n_ * (n_ - 1) / 2));
    for (int64_t i = 0; i < n_; ++i)
      for (int64_t j = i + 1; j < n_; ++j) candidates.push_back(D_[i * n_ + j]);
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
    if (candidates.empty()) return 0.0;
    // Invariant: candidates[hi] is feasible (the largest distance leaves no conflict).
    int64_t lo = 0, hi = static_cast<int64_t>(candidates.size()) - 1;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      std::fill(state_.begin(), state_.end(), kFree);
      if (set_threshold(candidates[mid]) && cover_exists(f_)) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    return candidates[hi];
  }

 private:
  enum State : uint8_t { kFree = 0, kKept = 1, kRemoved = 2 };

  // Conflict pairs at threshold t; false when there are too many for f removals to cover
  // (each removed row covers at most n - 1 of them).
  bool set_threshold(double t) {
    edges_.clear();
    const int64_t limit = f_ * (n_ - 1);
    for (int64_t i = 0; i < n_; ++i)
      for (int64_t j = i + 1; j < n_; ++j)
        if (D_[i * n_ + j] > t) {
          if (static_cast<int64_t>(edges_.size()) >= limit) return false;
          edges_.emplace_back(i, j);
        }
    return true;
  }

  void assign(int64_t v, State s) {
    trail_.emplace_back(v, state_[v]);
    state_[v] = s;
  }

  void undo(size_t mark) {
    while (trail_.size() > mark) {
      state_[trail_.back().first] = static_cast<State>(trail_.back().second);
      trail_.pop_back();
    }
  }

  // Whether removing at most `budget` more free rows covers every conflict pair, given the
  // kept and removed rows. Leaves the states as it found them.
  bool cover_exists(int64_t budget) {
    const size_t mark = trail_.size();
    const bool found = search(budget);
    undo(mark);
    return found;
  }

  bool search(int64_t budget) {
    std::vector<int64_t> degree(static_cast<size_t>(n_));
    for (;;) {
      // Rows in conflict with a kept row must go.
      bool forced = false;
      int64_t open = 0;
      for (const auto& e : edges_) {
        const State a = static_cast<State>(state_[e.first]), b = static_cast<State>(state_[e.second]);
        if (a == kRemoved || b == kRemoved) continue;
        if (a == kKept && b == kKept) return false;
        if (a == kKept || b == kKept) {
          if (budget == 0) return false;
          assign(a == kKept ? e.second : e.first, kRemoved);
          --budget;
          forced = true;
        } else {
          ++open;
        }
      }
      if (forced) continue;
      if (open == 0) return true;
      if (budget == 0) return false;
      // Rows with more open conflicts than the budget must go.
      std::fill(degree.begin(), degree.end(), 0);
      for (const auto& e : edges_)
        if (state_[e.first] == kFree && state_[e.second] == kFree) {
          ++degree[e.first];
          ++degree[e.second];
        }
      int64_t best = -1;
      for (int64_t v = 0; v < n_; ++v)
        if (degree[v] > 0 && (best < 0 || degree[v] > degree[best])) best = v;
      if (degree[best] > budget) {  // one at a time: the other degrees change with it
        assign(best, kRemoved);
        --budget;
        continue;
      }
      // Every row covers at most `budget` open conflicts now.
      if (open > budget * budget) return false;
      const size_t mark = trail_.size();
      assign(best, kRemoved);
      if (search(budget - 1)) return true;
      undo(mark);
      assign(best, kKept);
      if (search(budget)) return true;
      undo(mark);
      return false;
    }
  }

  const double* D_;
  int64_t n_, f_;
  std::vector<uint8_t> state_;
  std::vector<std::pair<int64_t, int64_t>> edges_;
  std::vector<std::pair<int64_t, uint8_t>> trail_;
};

// The kept rows of MDA (ascending), see the header.
inline std::vector<int64_t> mda_select(const double* D, int64_t n, int64_t f) { return MdaSearch(D, n, f).select(); }

}  // namespace core
}  // namespace byzagg
