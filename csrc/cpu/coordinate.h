// The CPU coordinate-wise kernel, callable from other CPU kernels (Bulyan's last step).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "../core/window.h"

namespace byzagg {
namespace cpu {

// Per coordinate of the rows `rows` of the 2-D tensor G (all rows when empty): order the
// values (NaN last) and apply `rule` with f (window of n - f for MeaMed/Phocas, where n is
// the number of rows used; requires n - 2f >= 1 for the trimmed mean and Phocas and
// n - f >= 1 for MeaMed). The result has G's dtype, shape (d,).
at::Tensor coordinate_rule(const at::Tensor& G, const std::vector<int64_t>& rows, int64_t f, core::CoordinateRule rule);

}  // namespace cpu
}  // namespace byzagg
