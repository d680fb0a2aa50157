// Passes over the coordinates of G that also reduce over them (per-row norms, l1
// distances, step sizes): the coordinates are cut into fixed blocks, each block's partial
// sums are stored, and the partials are added in block order. The blocks depend on n and
// d only, so the sums have the same bits for any number of threads. Torch-free.
#pragma once

#include <cstdint>

#include "macros.h"

namespace byzagg {
namespace core {

// Coordinates per block: a block of 51 rows of float stays in L2 (about 400 KiB).
constexpr int64_t kPassBlockColumns = 2048;

struct PassBlocks {
  int64_t d = 0;
  int64_t columns = 0;  // coordinates per block (the last block may be shorter)
  int64_t count = 0;    // number of blocks

  BYZAGG_HD int64_t begin(int64_t b) const { return b * columns; }
  BYZAGG_HD int64_t end(int64_t b) const { return (b + 1) * columns < d ? (b + 1) * columns : d; }
};

// At least n coordinates per block, so that count x n partials take at most d + n values.
BYZAGG_HD PassBlocks make_pass_blocks(int64_t n, int64_t d) {
  PassBlocks blocks;
  blocks.d = d;
  blocks.columns = n > kPassBlockColumns ? n : kPassBlockColumns;
  blocks.count = (d + blocks.columns - 1) / blocks.columns;
  return blocks;
}

// sum over b of partials[b * stride + offset], in block order.
BYZAGG_HD double sum_in_block_order(const double* partials, int64_t blocks, int64_t stride, int64_t offset) {
  double sum = 0.0;
  for (int64_t b = 0; b < blocks; ++b) sum += partials[b * stride + offset];
  return sum;
}

// Centered clipping's scale of a row at distance `norm` from the center: min(1, tau / norm)
// written as the reference does (norm > tau ? tau / norm : 1); 0 for a non-finite row.
BYZAGG_HD double clipping_scale(bool finite, double norm, double tau) {
  if (!finite) return 0.0;
  return norm > tau ? tau / norm : 1.0;
}

// Weiszfeld's weight of a row: w / max(distance, eps).
BYZAGG_HD double weiszfeld_weight(double w, double distance, double eps) {
  return w / (distance < eps ? eps : distance);  // clamp(distance, min=eps), NaN kept
}

}  // namespace core
}  // namespace byzagg
