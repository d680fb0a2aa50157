// The vector instruction set the CPU kernels use: one detection and one reading of
// BYZAGG_CPU_ISA for every kernel family (coordinate-wise, distances, iterative).
#pragma once

#include <cstdint>
#include <string>

// 1 where the AVX2 and AVX-512 copies of the kernels are compiled (x86-64 with GCC or
// Clang); elsewhere (e.g. aarch64) their files compile to nothing and the generic path
// (vector extensions of the baseline ISA) is the only one.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BYZAGG_X86_ISAS 1
#else
#define BYZAGG_X86_ISAS 0
#endif

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

// The kernel families, each with one place that picks its vector path.
enum class Family : int { kCoordinate = 0, kDistances = 1, kSelection = 2, kIterative = 3 };

// Notes the path a family's kernel took (its call of cpu_isa(), or less where the kernel
// has no vector path for the input: e.g. n > 4096 coordinate-wise, or half precision).
void record_isa(Family family, Isa isa);

// The path each family took since the last call, e.g.
// "coordinate=avx2,distances=avx2,selection=avx2,iterative=none" ("none": not run), and
// clears the record: what tests/test_isa.py checks against BYZAGG_CPU_ISA.
std::string take_isa_trace();

}  // namespace cpu
}  // namespace byzagg
