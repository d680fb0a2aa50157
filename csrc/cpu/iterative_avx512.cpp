// The iterative rules' block kernels (iterative_passes.inc) compiled for AVX512. Only
// standard and torch-free headers come before the target pragma, so that no shared inline
// code is compiled for this ISA.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "iterative_passes.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq")
#define BYZAGG_ISA_NAMESPACE avx512
#include "iterative_isa.inc"

#pragma GCC pop_options
