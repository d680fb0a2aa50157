// The coordinate-wise sorting-network kernel (coordinate_simd.h) compiled for AVX2. Only
// standard and torch-free headers come before the target pragma, so that no shared inline
// code is compiled for this ISA.
// On other targets (BYZAGG_X86_ISAS is 0, isa.h) this file compiles to nothing.
#include "isa.h"

#if BYZAGG_X86_ISAS
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "../core/sorting_network.h"
#include "../core/window.h"
#include "coordinate_network.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "coordinate_simd.h"

namespace byzagg {
namespace cpu {
namespace avx2 {
namespace {

struct Simd {
  using Vf = __m256;
  using Vd = __m256d;
  static constexpr int kMergeRows = 8;  // rows a pass of the long-column merges holds in registers
  static inline __attribute__((always_inline)) Vf min(Vf a, Vf b) { return _mm256_min_ps(a, b); }
  static inline __attribute__((always_inline)) Vf max(Vf a, Vf b) { return _mm256_max_ps(a, b); }
  static inline __attribute__((always_inline)) Vd min(Vd a, Vd b) { return _mm256_min_pd(a, b); }
  static inline __attribute__((always_inline)) Vd max(Vd a, Vd b) { return _mm256_max_pd(a, b); }
};

}  // namespace

BYZAGG_COORDINATE_PATH_DEFINITIONS(Simd)

}  // namespace avx2
}  // namespace cpu
}  // namespace byzagg

#pragma GCC pop_options

#endif  // BYZAGG_X86_ISAS
