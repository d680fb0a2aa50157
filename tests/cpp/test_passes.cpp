// Unit tests of csrc/core/passes.h (no torch): blocks cover the coordinates in order with
// bounded partial storage, block-order sums, and the per-row weights of the iterative rules.
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "core/passes.h"
#include "check.h"

namespace core = byzagg::core;

int main() {
  for (int64_t n : {1, 2, 51, 3000, 10000})
    for (int64_t d : {1, 5, 2047, 2048, 2049, 1000000}) {
      const core::PassBlocks blocks = core::make_pass_blocks(n, d);
      int64_t next = 0;
      for (int64_t b = 0; b < blocks.count; ++b) {
        CHECK(blocks.begin(b) == next && blocks.end(b) > blocks.begin(b), "block %lld", (long long)b);
        next = blocks.end(b);
      }
      CHECK(next == d, "cover d=%lld", (long long)d);
      CHECK(blocks.count * n <= d + n, "partials bounded: n=%lld d=%lld", (long long)n, (long long)d);
    }
  const double partials[] = {1, 10, 2, 20, 3, 30};  // 3 blocks x 2 rows
  CHECK(core::sum_in_block_order(partials, 3, 2, 0) == 6 && core::sum_in_block_order(partials, 3, 2, 1) == 60, "sum");
  CHECK(core::clipping_scale(true, 4.0, 1.0) == 0.25 && core::clipping_scale(true, 1.0, 1.0) == 1.0, "clip");
  CHECK(core::clipping_scale(false, 4.0, 1.0) == 0.0 && core::clipping_scale(true, 0.0, 1.0) == 1.0, "clip edges");
  CHECK(core::weiszfeld_weight(2.0, 4.0, 1e-8) == 0.5 && core::weiszfeld_weight(1.0, 0.0, 0.5) == 2.0, "weiszfeld");
  CHECK(std::isnan(core::weiszfeld_weight(1.0, std::nan(""), 0.5)), "NaN distance kept, as torch.clamp does");
  if (failures) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_passes: all checks passed\n");
  return 0;
}
