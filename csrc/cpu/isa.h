// The vector instruction set the CPU kernels use: one detection and one reading of
// BYZAGG_CPU_ISA for every kernel family (coordinate-wise, distances, iterative).
#pragma once

#include <cstdint>

namespace byzagg {
namespace cpu {

// Ordered: a cap keeps the lesser of the CPU's best and the one asked for.
enum class Isa : int64_t { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

// The best this CPU runs: avx512 (F, VL, BW, DQ and FMA), avx2 (with FMA), else generic
// (portable C++; what a CPU without them, e.g. an ARM one, runs). Detected once.
Isa supported_isa();

// supported_isa() capped by the environment variable BYZAGG_CPU_ISA = generic | avx2 |
// avx512 (read at each call, so tests and benchmarks can switch it); any other value is
// an error naming the valid ones. Every path gives the same bits (tests/test_same_bits.py).
Isa cpu_isa();

const char* isa_name(Isa isa);

}  // namespace cpu
}  // namespace byzagg
