// The block kernels of iterative_block.h, one copy per ISA (iterative_avx512.cpp,
// iterative_avx2.cpp, and the baseline in iterative.cpp), chosen at run time with
// cpu_isa() (BYZAGG_CPU_ISA caps it). All copies give the same bits.
#pragma once

#include <cstdint>

#include "isa.h"

namespace byzagg {
namespace cpu {

template <typename T>
struct PassKernels {
  void (*row_sums)(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* v, int64_t c0, int64_t c1,
                   double* sums, double* probe);
  void (*clip_update)(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* scale, double count,
                      double* v, int64_t c0, int64_t c1, double* acc);
  void (*combine)(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* coef, double divisor, int64_t c0,
                  int64_t c1, double* out);
  void (*row_l1)(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* v, int64_t c0, int64_t c1,
                 double* sums);
  void (*brsgd_scores)(const T* X, int64_t n, int64_t d, int64_t c0, int64_t c1, double* scratch, int64_t* score,
                       uint8_t* nonfinite, int64_t* least_finite);
  void (*gm_step)(const T* X, int64_t n, int64_t d, const uint8_t* use, const double* beta, double beta_sum, double lam,
                  double* z, double* s, int64_t c0, int64_t c1, double* y, double* q0, double* b, double* e,
                  const T* xk, double* r);
};

// The best copy this CPU runs (float, double; the baseline copy for float16 and bfloat16).
template <typename T>
PassKernels<T> pass_kernels();

// The copies compiled for AVX-512 and AVX2 (iterative_avx512.cpp, iterative_avx2.cpp).
#if BYZAGG_X86_ISAS
namespace avx512 {
PassKernels<float> float_pass_kernels();
PassKernels<double> double_pass_kernels();
}  // namespace avx512
namespace avx2 {
PassKernels<float> float_pass_kernels();
PassKernels<double> double_pass_kernels();
}  // namespace avx2
#endif  // BYZAGG_X86_ISAS

}  // namespace cpu
}  // namespace byzagg
