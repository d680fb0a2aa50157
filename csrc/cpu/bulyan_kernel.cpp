// CPU kernel of Bulyan: one pass over G for the exact distances, the repeated Krum
// selection on the n x n matrix only (csrc/core/selection.h), then per coordinate the
// MeaMed window of the selected rows (the shared coordinate-wise kernel).
#include <torch/library.h>
#include <torch/types.h>

#include <vector>

#include "../checks.h"
#include "../core/selection.h"
#include "../core/window.h"
#include "coordinate.h"
#include "distances.h"

namespace byzagg {
namespace cpu {
namespace {

at::Tensor bulyan_cpu(const at::Tensor& G, int64_t f) {
  check_matrix_argument(G, "bulyan");
  const int64_t n = G.size(0);
  check_bulyan_f(n, f);
  check_square_temporaries("bulyan", n, 16.0);
  const at::Tensor X = G.contiguous();
  const SquaredDistances dist = squared_distances(X);
  const std::vector<int64_t> selected = core::bulyan_select(dist.D2.data(), n, dist.finite.data(), f);
  // MeaMed over the theta = n - 2f selected rows with f' = 2f keeps the beta = theta - 2f
  // values nearest their median: Bulyan's last step.
  return coordinate_rule(X, selected, 2 * f, core::CoordinateRule::kMeaMed);
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(byzagg, CPU, m) { m.impl("bulyan", &cpu::bulyan_cpu); }

}  // namespace byzagg
