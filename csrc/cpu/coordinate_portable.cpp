// The coordinate-wise sorting-network kernel (coordinate_simd.h) compiled for the baseline
// ISA with no target pragma: the generic path, and what an ARM CPU runs. Its vectors are
// GCC/Clang vector extensions of 16 bytes (4 float or 2 double lanes), the width every
// target has in registers: SSE2 on x86-64, NEON (Advanced SIMD) on aarch64. A wider vector
// extension would not help: GCC lowers a 32-byte ?: on SSE2 lane by lane, to scalar code.
//
// min / max are the ternaries a < b ? a : b and a > b ? a : b, which are exactly what
// minps / maxps (SSE, AVX2, AVX-512) compute, so every path gives the same bits, a zero's
// sign included (equal values give b). x86 compiles them to minps / maxps; aarch64 to a
// compare and a bit select (its fmin / fminnm order -0 below +0, which the x86 paths do
// not). The network only sees ordered values: NaN is taken out before the sort.
// Torch-free, so that it compiles (and is compile-checked in CI) for aarch64 without torch.
#include <cstdint>

#include "../core/window.h"
#include "coordinate_network.h"
#include "coordinate_simd.h"

namespace byzagg {
namespace cpu {
namespace portable {
namespace {

struct Simd {
  typedef float Vf __attribute__((vector_size(16)));
  typedef double Vd __attribute__((vector_size(16)));
  static constexpr int kMergeRows = 8;  // rows a pass of the long-column merges holds in registers
  static inline __attribute__((always_inline)) Vf min(Vf a, Vf b) { return a < b ? a : b; }
  static inline __attribute__((always_inline)) Vf max(Vf a, Vf b) { return a > b ? a : b; }
  static inline __attribute__((always_inline)) Vd min(Vd a, Vd b) { return a < b ? a : b; }
  static inline __attribute__((always_inline)) Vd max(Vd a, Vd b) { return a > b ? a : b; }
};

}  // namespace

BYZAGG_COORDINATE_PATH_DEFINITIONS(Simd)

}  // namespace portable
}  // namespace cpu
}  // namespace byzagg
