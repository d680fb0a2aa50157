#include "isa.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace byzagg {
namespace cpu {

Isa supported_isa() {
  static const Isa isa = [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    if (avx512) return Isa::kAvx512;
    if (avx2) return Isa::kAvx2;
#endif
    return Isa::kGeneric;
  }();
  return isa;
}

Isa cpu_isa() {
  const Isa best = supported_isa();
  const char* cap = std::getenv("BYZAGG_CPU_ISA");
  if (cap == nullptr || *cap == '\0') return best;
  Isa wanted;
  if (std::strcmp(cap, "generic") == 0) {
    wanted = Isa::kGeneric;
  } else if (std::strcmp(cap, "avx2") == 0) {
    wanted = Isa::kAvx2;
  } else if (std::strcmp(cap, "avx512") == 0) {
    wanted = Isa::kAvx512;
  } else {
    TORCH_CHECK(false, "BYZAGG_CPU_ISA must be generic, avx2 or avx512 (or unset for the best this CPU runs), got '",
                cap, "'");
  }
  return wanted < best ? wanted : best;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

namespace {
constexpr int kFamilies = 4;
constexpr const char* kFamilyNames[kFamilies] = {"coordinate", "distances", "selection", "iterative"};
std::atomic<int> last_isa[kFamilies] = {-1, -1, -1, -1};
}  // namespace

void record_isa(Family family, Isa isa) {
  last_isa[static_cast<int>(family)].store(static_cast<int>(isa), std::memory_order_relaxed);
}

std::string take_isa_trace() {
  std::string trace;
  for (int f = 0; f < kFamilies; ++f) {
    const int isa = last_isa[f].exchange(-1, std::memory_order_relaxed);
    if (f > 0) trace += ",";
    trace += kFamilyNames[f];
    trace += "=";
    trace += isa < 0 ? "none" : isa_name(static_cast<Isa>(isa));
  }
  return trace;
}

}  // namespace cpu
}  // namespace byzagg
