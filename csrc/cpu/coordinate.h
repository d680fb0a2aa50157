// The CPU coordinate-wise kernel, callable from other CPU kernels (Bulyan's last step).
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

#include <vector>

#include "../core/window.h"

namespace byzagg {
namespace cpu {

// Per coordinate of the rows `rows` of the 2-D tensor G (all rows when empty): order the
// values (NaN last) and apply `rule` with f (window of n - f for MeaMed/Phocas, where n is
// the number of rows used; requires n - 2f >= 1 for the trimmed mean and Phocas and
// n - f >= 1 for MeaMed), written into `out`, a contiguous (d,) tensor of G's dtype (float
// and double straight from the kernel; half precision through a float buffer).
void coordinate_rule(const at::Tensor& G, const std::vector<int64_t>& rows, int64_t f, core::CoordinateRule rule,
                     const at::Tensor& out);

// The same returned in a new (d,) tensor of G's dtype.
at::Tensor coordinate_rule(const at::Tensor& G, const std::vector<int64_t>& rows, int64_t f, core::CoordinateRule rule);

// The same on the columns [c0, c1) of n rows given by pointers (rows[r][c] is row r's value
// of column c), into out[0, c1 - c0) in the accumulation type (double for double, float
// otherwise): for a kernel that fuses the rule with its own work on a block of columns
// still in cache (the geometric median's start). Inside a parallel region it runs on the
// calling thread.
template <typename scalar_t>
void coordinate_rule_columns(const scalar_t* const* rows, int64_t n, int64_t c0, int64_t c1, int64_t f,
                             core::CoordinateRule rule, at::opmath_type<scalar_t>* out);

}  // namespace cpu
}  // namespace byzagg
