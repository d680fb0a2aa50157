// The coordinate-wise sorting-network kernel (coordinate_simd.h) compiled for AVX-512. Only
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
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,fma")
// GCC 12 sees the masked builtin behind _mm512_min_ps / _mm512_max_ps read an undefined
// pass-through operand (its mask is all ones, so no lane is read): a false warning,
// repeated for every network size.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // the same, as g++ words it under C++20 (torch 2.14)

#include "coordinate_simd.h"

namespace byzagg {
namespace cpu {
namespace avx512 {
namespace {

struct Simd {
  using Vf = __m512;
  using Vd = __m512d;
  static constexpr int kMergeRows = 16;  // rows a pass of the long-column merges holds in registers
  static inline __attribute__((always_inline)) Vf min(Vf a, Vf b) { return _mm512_min_ps(a, b); }
  static inline __attribute__((always_inline)) Vf max(Vf a, Vf b) { return _mm512_max_ps(a, b); }
  static inline __attribute__((always_inline)) Vd min(Vd a, Vd b) { return _mm512_min_pd(a, b); }
  static inline __attribute__((always_inline)) Vd max(Vd a, Vd b) { return _mm512_max_pd(a, b); }
};

}  // namespace

BYZAGG_COORDINATE_PATH_DEFINITIONS(Simd)

}  // namespace avx512
}  // namespace cpu
}  // namespace byzagg

#pragma GCC pop_options

#endif  // BYZAGG_X86_ISAS
