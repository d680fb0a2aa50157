// The iterative rules' block kernels (iterative_passes.inc) compiled for AVX512. Only
// standard and torch-free headers come before the target pragma, so that no shared inline
// code is compiled for this ISA.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "iterative_passes.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq")
#pragma GCC optimize("fp-contract=off")
#pragma GCC diagnostic ignored "-Wpsabi"

namespace byzagg {
namespace cpu {
namespace avx512 {
namespace {

typedef double V8d __attribute__((vector_size(64)));
typedef float V8f __attribute__((vector_size(32)));
#define BYZAGG_PASS_INLINE inline __attribute__((always_inline))
inline double to_double(double x) { return x; }
inline double to_double(float x) { return static_cast<double>(x); }

#include "iterative_passes.inc"

#undef BYZAGG_PASS_INLINE

}  // namespace

PassKernels<float> float_pass_kernels() { return {&row_sums<float>, &clip_update<float>, &combine<float>, &row_l1<float>, &brsgd_scores<float>, &gm_step<float>}; }
PassKernels<double> double_pass_kernels() { return {&row_sums<double>, &clip_update<double>, &combine<double>, &row_l1<double>, &brsgd_scores<double>, &gm_step<double>}; }

}  // namespace avx512
}  // namespace cpu
}  // namespace byzagg

#pragma GCC pop_options
