// The iterative rules' block kernels (iterative_passes.inc) compiled for AVX2. Only
// standard and torch-free headers come before the target pragma, so that no shared inline
// code is compiled for this ISA.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "iterative_passes.h"

#pragma GCC push_options
#pragma GCC target("avx2")
#define BYZAGG_ISA_NAMESPACE avx2
#include "iterative_isa.inc"

#pragma GCC pop_options
