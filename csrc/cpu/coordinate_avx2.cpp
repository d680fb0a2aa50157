// The coordinate-wise sorting-network kernel compiled for AVX2 (see coordinate_network.inc).
// Only standard and torch-free headers come before the target pragma, so that no shared
// inline code is compiled for this ISA.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "../core/sorting_network.h"
#include "../core/window.h"
#include "coordinate_network.h"

#define BYZAGG_ALWAYS_INLINE inline __attribute__((always_inline))

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace byzagg {
namespace cpu {
namespace avx2 {

using Vf = __m256;
using Vd = __m256d;
BYZAGG_ALWAYS_INLINE Vf vmin(Vf a, Vf b) { return _mm256_min_ps(a, b); }
BYZAGG_ALWAYS_INLINE Vf vmax(Vf a, Vf b) { return _mm256_max_ps(a, b); }
BYZAGG_ALWAYS_INLINE Vd vmin(Vd a, Vd b) { return _mm256_min_pd(a, b); }
BYZAGG_ALWAYS_INLINE Vd vmax(Vd a, Vd b) { return _mm256_max_pd(a, b); }

#include "coordinate_network.inc"

}  // namespace avx2
}  // namespace cpu
}  // namespace byzagg

#pragma GCC pop_options
