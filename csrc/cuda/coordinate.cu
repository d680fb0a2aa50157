// CUDA kernel of the coordinate-wise family (median, trimmed mean, MeaMed, Phocas, Bulyan's
// last step): per coordinate, order the column (NaN last), then average the rule's window
// (csrc/core/window.h, the same arithmetic as the CPU).
//
// n <= 64: one thread per coordinate (consecutive threads read consecutive coordinates of
// a row: coalesced), the column held in registers and sorted by the compile-time Batcher
// network of csrc/core/sorting_network.h (pruned to the two middle outputs for the
// median), csrc/core/network_rule.h: NaN is replaced by +inf and counted, then restored at
// the top of the column; the network size is n rounded up to a multiple of 16.
// 64 < n <= kSharedMaxRows: a block sorts a tile of columns in shared memory with a
// bitonic network. Larger n: the columns are sorted by torch (a sorted copy, O(n d) extra
// memory), then the same window code runs on each column.
#include <ATen/ops/sort.h>

#include "../checks.h"
#include "../out.h"
#include "../core/network_rule.h"
#include "../core/sorting_network.h"
#include "../core/window.h"
#include "common.cuh"

namespace byzagg {
namespace cuda {
namespace {

using core::CoordinateRule;
using core::NetworkOutputs;

constexpr int kNetworkMaxRows = 64;
constexpr int kNetworkStep = 16;
constexpr int64_t kSharedMaxRows = 2048;
constexpr int64_t kSharedBytes = 32 * 1024;

// Value k of column c: row rows[k] (row k when rows is null); NaN when mask[row] is 0.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t load_value(const scalar_t* X, const int64_t* rows, const uint8_t* mask, int64_t k,
                                            int64_t d, int64_t c) {
  const int64_t r = rows == nullptr ? k : rows[k];
  if (mask != nullptr && !mask[r]) return quiet_nan<acc_t>();
  return static_cast<acc_t>(X[r * d + c]);
}

// The rule on a sorted column; with a mask, on its values that are not NaN.
template <typename acc_t>
__device__ __forceinline__ acc_t rule_of_sorted(const acc_t* v, int64_t n, int64_t f, CoordinateRule rule,
                                                bool skip_nan) {
  return skip_nan ? core::coordinate_rule_of_sorted_numbers(v, n, f, rule)
                  : core::coordinate_rule_of_sorted(v, n, f, rule);
}

template <typename scalar_t, typename acc_t, int N, NetworkOutputs Outputs>
__global__ void network_kernel(const scalar_t* __restrict__ X, const int64_t* __restrict__ rows,
                               const uint8_t* __restrict__ mask, int64_t n, int64_t d, int64_t f, CoordinateRule rule,
                               acc_t* __restrict__ out) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  auto load = [=](int64_t p) { return load_value<scalar_t, acc_t>(X, rows, mask, p, d, c); };
  out[c] = core::coordinate_rule_by_network<N, Outputs, acc_t>(load, n, f, rule, mask != nullptr);
}

// A block sorts `tile` columns of `padded` (a power of two >= n) values each in shared
// memory (bitonic network, NaN last, padding +inf after NaN), then one thread per column
// applies the rule.
template <typename scalar_t, typename acc_t>
__global__ void shared_sort_kernel(const scalar_t* __restrict__ X, const int64_t* __restrict__ rows,
                                   const uint8_t* __restrict__ mask, int64_t n, int64_t d, int64_t f,
                                   CoordinateRule rule, int64_t padded, int64_t tile, acc_t* __restrict__ out) {
  extern __shared__ unsigned char shared_bytes[];
  acc_t* columns = reinterpret_cast<acc_t*>(shared_bytes);             // tile x padded values
  uint8_t* pad = reinterpret_cast<uint8_t*>(columns + tile * padded);  // 1 where a value is padding
  const int64_t c0 = blockIdx.x * tile;
  const int64_t width = d - c0 < tile ? d - c0 : tile;
  for (int64_t e = threadIdx.x; e < tile * padded; e += blockDim.x) {
    const int64_t col = e % tile, k = e / tile;  // consecutive threads: consecutive columns
    const bool real = k < n && col < width;
    columns[col * padded + k] = real ? load_value<scalar_t, acc_t>(X, rows, mask, k, d, c0 + col) : acc_t(0);
    pad[col * padded + k] = real ? 0 : 1;
  }
  __syncthreads();
  // Bitonic sort of each column in the order (padding last, then NaN last, then value).
  for (int64_t size = 2; size <= padded; size <<= 1) {
    for (int64_t stride = size >> 1; stride > 0; stride >>= 1) {
      for (int64_t e = threadIdx.x; e < tile * (padded / 2); e += blockDim.x) {
        const int64_t col = e / (padded / 2), p = e % (padded / 2);
        const core::BitonicPair pair = core::bitonic_pair(p, stride);
        const int64_t i = pair.i, j = pair.j;
        const bool ascending = core::bitonic_ascending(i, size);
        acc_t* base = columns + col * padded;
        uint8_t* base_pad = pad + col * padded;
        const bool j_before_i = core::padded_less(base_pad[j] != 0, base[j], base_pad[i] != 0, base[i]);
        if (j_before_i == ascending) {
          const acc_t t = base[i];
          base[i] = base[j];
          base[j] = t;
          const uint8_t tp = base_pad[i];
          base_pad[i] = base_pad[j];
          base_pad[j] = tp;
        }
      }
      __syncthreads();
    }
  }
  if (threadIdx.x < width)
    out[c0 + threadIdx.x] = rule_of_sorted(columns + threadIdx.x * padded, n, f, rule, mask != nullptr);
}

// One thread per column of the (d, n) row-major matrix S of sorted columns.
template <typename acc_t>
__global__ void sorted_columns_kernel(const acc_t* __restrict__ S, int64_t n, int64_t d, int64_t f, CoordinateRule rule,
                                      bool skip_nan, acc_t* __restrict__ out) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  out[c] = rule_of_sorted(S + c * n, n, f, rule, skip_nan);
}

template <typename scalar_t, typename acc_t, int N>
void launch_network(const scalar_t* X, const int64_t* rows, const uint8_t* mask, int64_t n, int64_t d, int64_t f,
                    CoordinateRule rule, acc_t* out) {
  const unsigned blocks = static_cast<unsigned>(blocks_for(d));
  if (rule == CoordinateRule::kMedian && mask == nullptr) {  // the pruned network needs the full column
    network_kernel<scalar_t, acc_t, N, NetworkOutputs::kMiddle>
        <<<blocks, kThreads, 0, current_stream()>>>(X, rows, mask, n, d, f, rule, out);
  } else {
    network_kernel<scalar_t, acc_t, N, NetworkOutputs::kAll>
        <<<blocks, kThreads, 0, current_stream()>>>(X, rows, mask, n, d, f, rule, out);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename acc_t>
void coordinate_rule_typed(const at::Tensor& X, const at::Tensor& rows, const uint8_t* mask, int64_t n, int64_t f,
                           CoordinateRule rule, const at::Tensor& out) {
  const int64_t d = X.size(1);
  const scalar_t* x = X.data_ptr<scalar_t>();
  const int64_t* r = rows.defined() ? rows.data_ptr<int64_t>() : nullptr;
  acc_t* o = out.data_ptr<acc_t>();
  if (n <= kNetworkMaxRows) {
    switch ((n + kNetworkStep - 1) / kNetworkStep) {
      case 1: return launch_network<scalar_t, acc_t, 16>(x, r, mask, n, d, f, rule, o);
      case 2: return launch_network<scalar_t, acc_t, 32>(x, r, mask, n, d, f, rule, o);
      case 3: return launch_network<scalar_t, acc_t, 48>(x, r, mask, n, d, f, rule, o);
      default: return launch_network<scalar_t, acc_t, 64>(x, r, mask, n, d, f, rule, o);
    }
  }
  int64_t padded = 1;
  while (padded < n) padded <<= 1;
  const int64_t per_column = padded * static_cast<int64_t>(sizeof(acc_t) + 1);
  const int64_t tile = std::min<int64_t>(kSharedBytes / per_column, kThreads);
  if (n <= kSharedMaxRows && tile >= 1) {
    const size_t bytes = static_cast<size_t>(tile * per_column);
    shared_sort_kernel<scalar_t, acc_t>
        <<<static_cast<unsigned>(blocks_for(d, tile)), kThreads, bytes, current_stream()>>>(x, r, mask, n, d, f, rule,
                                                                                            padded, tile, o);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  at::Tensor chosen = rows.defined() ? X.index_select(0, rows) : X;
  at::Tensor values = chosen.to(out.scalar_type());
  if (mask != nullptr) {  // rows left out become NaN, sorted last and skipped
    const at::Tensor keep = at::from_blob(const_cast<uint8_t*>(mask), {X.size(0)}, X.options().dtype(at::kByte));
    const at::Tensor kept = (rows.defined() ? keep.index_select(0, rows) : keep).to(at::kBool).unsqueeze(1);
    values = at::where(kept, values, at::full({}, std::numeric_limits<double>::quiet_NaN(), values.options()));
  }
  at::Tensor S = std::get<0>(at::sort(values.t(), /*stable=*/true, /*dim=*/1, /*descending=*/false)).contiguous();
  sorted_columns_kernel<acc_t><<<static_cast<unsigned>(blocks_for(d)), kThreads, 0, current_stream()>>>(
      S.data_ptr<acc_t>(), n, d, f, rule, mask != nullptr, o);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void coordinate_rule_op_into(const at::Tensor& G, int64_t f, CoordinateRule rule, const at::Tensor& result) {
  const char* name = core::coordinate_rule_name(rule);
  check_matrix(G, name);
  check_f_nonnegative(name, G.size(0), f);
  TORCH_CHECK(core::coordinate_rule_accepts(G.size(0), f, rule), name, " requires n > 2f, got n=", G.size(0),
              ", f=", f);
  const at::cuda::CUDAGuard guard(G.device());
  coordinate_rule_into(G.contiguous(), at::Tensor(), f, rule, result);
}

// The functional op and its out= form (csrc/out.h).
at::Tensor coordinate_rule_op(const at::Tensor& G, int64_t f, CoordinateRule rule) {
  return new_vector(G, core::coordinate_rule_name(rule), c10::DeviceType::CUDA,
                    [&](const at::Tensor& result) { coordinate_rule_op_into(G, f, rule, result); });
}
void coordinate_rule_out(const at::Tensor& G, int64_t f, CoordinateRule rule, at::Tensor& out) {
  write_out(G, out, core::coordinate_rule_name(rule), c10::DeviceType::CUDA,
            [&](const at::Tensor& result) { coordinate_rule_op_into(G, f, rule, result); });
}

at::Tensor median_cuda(const at::Tensor& G) { return coordinate_rule_op(G, 0, CoordinateRule::kMedian); }
at::Tensor trimmed_mean_cuda(const at::Tensor& G, int64_t f) {
  return coordinate_rule_op(G, f, CoordinateRule::kTrimmedMean);
}
at::Tensor meamed_cuda(const at::Tensor& G, int64_t f) { return coordinate_rule_op(G, f, CoordinateRule::kMeaMed); }
at::Tensor phocas_cuda(const at::Tensor& G, int64_t f) { return coordinate_rule_op(G, f, CoordinateRule::kPhocas); }
void median_out_cuda(const at::Tensor& G, at::Tensor& out) { coordinate_rule_out(G, 0, CoordinateRule::kMedian, out); }
void trimmed_mean_out_cuda(const at::Tensor& G, int64_t f, at::Tensor& out) {
  coordinate_rule_out(G, f, CoordinateRule::kTrimmedMean, out);
}
void meamed_out_cuda(const at::Tensor& G, int64_t f, at::Tensor& out) {
  coordinate_rule_out(G, f, CoordinateRule::kMeaMed, out);
}
void phocas_out_cuda(const at::Tensor& G, int64_t f, at::Tensor& out) {
  coordinate_rule_out(G, f, CoordinateRule::kPhocas, out);
}

}  // namespace

at::Tensor coordinate_rule(const at::Tensor& X, const at::Tensor& rows, int64_t f, CoordinateRule rule,
                           at::ScalarType acc_dtype, const at::Tensor& mask, const at::Tensor& into) {
  TORCH_CHECK(X.is_contiguous(), "coordinate_rule: X must be contiguous");
  const int64_t n = rows.defined() ? rows.numel() : X.size(0);
  const bool window_fits =
      rule == CoordinateRule::kMedian || (rule == CoordinateRule::kMeaMed ? n - f >= 1 : n - 2 * f >= 1);
  TORCH_CHECK(n >= 1 && f >= 0 && window_fits, core::coordinate_rule_name(rule), ": no window of values left, n=", n,
              ", f=", f);
  TORCH_CHECK(acc_dtype == at::kFloat || acc_dtype == at::kDouble, "coordinate_rule: accumulation in float or double");
  TORCH_CHECK(!mask.defined() || (mask.scalar_type() == at::kByte && mask.numel() == X.size(0) && mask.is_contiguous()),
              "coordinate_rule: mask must be a contiguous uint8 tensor of n values");
  const uint8_t* mask_ptr = mask.defined() ? mask.data_ptr<uint8_t>() : nullptr;
  TORCH_CHECK(!into.defined() || (into.is_contiguous() && into.numel() == X.size(1) &&
                                  into.scalar_type() == acc_dtype && into.device() == X.device()),
              "coordinate_rule: into must be a contiguous (d,) tensor of the accumulation type");
  const at::Tensor out = into.defined() ? into : at::empty({X.size(1)}, X.options().dtype(acc_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_coordinate_rule_cuda", [&] {
    if (acc_dtype == at::kDouble) {
      coordinate_rule_typed<scalar_t, double>(X, rows, mask_ptr, n, f, rule, out);
    } else if constexpr (!std::is_same_v<scalar_t, double>) {
      coordinate_rule_typed<scalar_t, float>(X, rows, mask_ptr, n, f, rule, out);
    } else {
      TORCH_CHECK(false, "coordinate_rule: float64 input accumulates in float64");
    }
  });
  return out;
}

void coordinate_rule_into(const at::Tensor& X, const at::Tensor& rows, int64_t f, CoordinateRule rule,
                          const at::Tensor& result) {
  const at::ScalarType acc = X.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (result.scalar_type() == acc) {
    coordinate_rule(X, rows, f, rule, acc, at::Tensor(), result);
  } else {
    result.copy_(coordinate_rule(X, rows, f, rule, acc));
  }
}

}  // namespace cuda

TORCH_LIBRARY_IMPL(byzagg, CUDA, m) {
  m.impl("median", &cuda::median_cuda);
  m.impl("trimmed_mean", &cuda::trimmed_mean_cuda);
  m.impl("meamed", &cuda::meamed_cuda);
  m.impl("phocas", &cuda::phocas_cuda);
  m.impl("median.out", &cuda::median_out_cuda);
  m.impl("trimmed_mean.out", &cuda::trimmed_mean_out_cuda);
  m.impl("meamed.out", &cuda::meamed_out_cuda);
  m.impl("phocas.out", &cuda::phocas_out_cuda);
}

}  // namespace byzagg
