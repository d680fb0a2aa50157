// CPU kernel of the coordinate-wise family: per coordinate, sort the column (NaN last),
// then average the rule's window (csrc/core/window.h). Columns are independent, so the
// result does not depend on the number of threads.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <vector>

#include "../core/window.h"

namespace byzagg {
namespace {

using core::CoordinateRule;

// Columns handled together: one block of G's rows is read once per block.
constexpr int64_t kColumnsPerBlock = 32;
constexpr int64_t kInsertionSortMax = 32;

template <typename scalar_t>
void coordinate_rule_cpu_kernel(const scalar_t* G, int64_t n, int64_t d, int64_t f, CoordinateRule rule,
                                at::opmath_type<scalar_t>* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t grain = std::max<int64_t>(kColumnsPerBlock, 65536 / std::max<int64_t>(n, 1));
  at::parallel_for(0, d, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> columns(static_cast<size_t>(n * kColumnsPerBlock));
    for (int64_t c0 = begin; c0 < end; c0 += kColumnsPerBlock) {
      const int64_t width = std::min(kColumnsPerBlock, end - c0);
      for (int64_t r = 0; r < n; ++r) {
        const scalar_t* row = G + r * d + c0;
        for (int64_t c = 0; c < width; ++c) columns[c * n + r] = static_cast<acc_t>(row[c]);
      }
      for (int64_t c = 0; c < width; ++c) {
        acc_t* column = columns.data() + c * n;
        if (n <= kInsertionSortMax) {
          core::insertion_sort(column, n);
        } else {
          std::stable_sort(column, column + n, core::nan_last_less<acc_t>);
        }
        out[c0 + c] = core::coordinate_rule_of_sorted(column, n, f, rule);
      }
    }
  });
}

at::Tensor coordinate_rule_cpu(const at::Tensor& G, int64_t f, CoordinateRule rule) {
  const char* name = core::coordinate_rule_name(rule);
  TORCH_CHECK(G.dim() == 2, name, ": G must be 2-D (n, d), got ", G.dim(), " dimensions");
  TORCH_CHECK(G.is_floating_point(), name, ": G must have a floating dtype, got ", G.scalar_type());
  const int64_t n = G.size(0), d = G.size(1);
  TORCH_CHECK(n > 0 && d > 0, name, ": empty input, got n=", n, ", d=", d);
  TORCH_CHECK(core::coordinate_rule_accepts(n, f, rule), name, " requires n > 2f, got n=", n, ", f=", f);
  const at::Tensor X = G.contiguous();
  const auto acc_dtype = X.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor out = at::empty({d}, X.options().dtype(acc_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_coordinate_rule_cpu", [&] {
    coordinate_rule_cpu_kernel<scalar_t>(X.data_ptr<scalar_t>(), n, d, f, rule,
                                         out.data_ptr<at::opmath_type<scalar_t>>());
  });
  return out.scalar_type() == X.scalar_type() ? out : out.to(X.scalar_type());
}

at::Tensor median_cpu(const at::Tensor& G) { return coordinate_rule_cpu(G, 0, CoordinateRule::kMedian); }
at::Tensor trimmed_mean_cpu(const at::Tensor& G, int64_t f) {
  return coordinate_rule_cpu(G, f, CoordinateRule::kTrimmedMean);
}
at::Tensor meamed_cpu(const at::Tensor& G, int64_t f) { return coordinate_rule_cpu(G, f, CoordinateRule::kMeaMed); }
at::Tensor phocas_cpu(const at::Tensor& G, int64_t f) { return coordinate_rule_cpu(G, f, CoordinateRule::kPhocas); }

}  // namespace

TORCH_LIBRARY_IMPL(byzagg, CPU, m) {
  m.impl("median", &median_cpu);
  m.impl("trimmed_mean", &trimmed_mean_cpu);
  m.impl("meamed", &meamed_cpu);
  m.impl("phocas", &phocas_cpu);
}

}  // namespace byzagg
