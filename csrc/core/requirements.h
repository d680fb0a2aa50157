// Preconditions on (n, f) of every rule, written so that no product of f can overflow:
// f is a user-supplied int64 (torch.ops.byzagg.* takes any value), and 2f + 3 or 4f + 3
// would wrap around for f near 2^62 and let such f through. Torch-free, host and device.
#pragma once

#include <cstdint>

#include "macros.h"

namespace byzagg {
namespace core {

// n > 2f (trimmed mean, MeaMed, Phocas, MDA, NNM).
BYZAGG_HD bool n_above_2f(int64_t n, int64_t f) { return f >= 0 && n >= 1 && f <= (n - 1) / 2; }

// n >= 2f + 3 (Krum, Multi-Krum, Krum scores).
BYZAGG_HD bool n_at_least_2f_plus_3(int64_t n, int64_t f) { return f >= 0 && n >= 3 && f <= (n - 3) / 2; }

// n >= 4f + 3 (Bulyan).
BYZAGG_HD bool n_at_least_4f_plus_3(int64_t n, int64_t f) { return f >= 0 && n >= 3 && f <= (n - 3) / 4; }

}  // namespace core
}  // namespace byzagg
