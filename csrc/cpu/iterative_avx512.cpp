// The iterative rules' block kernels (iterative_block.h) compiled for AVX-512. Only standard
// and torch-free headers come before the target pragma, so that no shared inline code is
// compiled for this ISA.
// On other targets (BYZAGG_X86_ISAS is 0, isa.h) this file compiles to nothing.
#include "isa.h"

#if BYZAGG_X86_ISAS
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "iterative_passes.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq")
#pragma GCC optimize("fp-contract=off")

#include "iterative_block.h"

namespace byzagg {
namespace cpu {
namespace avx512 {

PassKernels<float> float_pass_kernels() { return block_kernels<float>(); }
PassKernels<double> double_pass_kernels() { return block_kernels<double>(); }

}  // namespace avx512
}  // namespace cpu
}  // namespace byzagg

#pragma GCC pop_options

#endif  // BYZAGG_X86_ISAS
