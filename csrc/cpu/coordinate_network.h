// The SIMD sorting-network path of the coordinate-wise kernel, one copy per ISA
// (coordinate_simd.h compiled by coordinate_avx512.cpp and coordinate_avx2.cpp on x86-64,
// and by coordinate_portable.cpp, with vector extensions, for the baseline of any target).
#pragma once

#include "isa.h"

#include <cstdint>

#include "../core/window.h"

namespace byzagg {
namespace cpu {

// coordinate_columns computes the rule on columns [begin, end') of the n rows (2 <= n <= 64), where end'
// is the last multiple of the vector width not beyond end, and returns end'; the caller
// does the rest. long_columns (kMaxNetworkRows < n <= kMaxBitonicRows) computes the rule on
// the vector width's columns c0, c0 + 1, ... of the n rows into out[0], out[1], ..., sorting
// them in the NaN-last order in stage, which holds n x the vector width values (the padding
// is never stored). Only call the variant the CPU supports (cpu_isa(), isa.h); the portable
// one runs everywhere.
// The four entry points of one vector path, declared in its namespace.
#define BYZAGG_COORDINATE_PATH(isa)                                                                         \
  namespace isa {                                                                                           \
  int64_t coordinate_columns(const float* const* rows, int64_t n, int64_t begin, int64_t end, int64_t f,    \
                             core::CoordinateRule rule, float* out);                                        \
  int64_t coordinate_columns(const double* const* rows, int64_t n, int64_t begin, int64_t end, int64_t f,   \
                             core::CoordinateRule rule, double* out);                                       \
  void long_columns(const float* const* rows, int64_t n, int64_t c0, int64_t f, core::CoordinateRule rule,  \
                    float* stage, float* out);                                                              \
  void long_columns(const double* const* rows, int64_t n, int64_t c0, int64_t f, core::CoordinateRule rule, \
                    double* stage, double* out);                                                            \
  }
BYZAGG_COORDINATE_PATH(portable)
#if BYZAGG_X86_ISAS
BYZAGG_COORDINATE_PATH(avx512)
BYZAGG_COORDINATE_PATH(avx2)
#endif  // BYZAGG_X86_ISAS

constexpr int64_t kMaxNetworkRows = 64;
constexpr int64_t kMaxBitonicRows = 4096;

// The rows of the bitonic network for n rows: n rounded up to a power of two.
inline int64_t bitonic_rows(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

}  // namespace cpu
}  // namespace byzagg
