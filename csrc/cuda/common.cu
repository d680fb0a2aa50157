// The shared CUDA pieces declared in common.cuh: ranking rows on the device and averaging
// sets of rows.
#include "common.cuh"

namespace byzagg {
namespace cuda {
namespace {

__global__ void rank_rows_kernel(const double* __restrict__ keys, const uint8_t* __restrict__ finite, int64_t rankings,
                                 int64_t n, bool skip_self, int64_t* __restrict__ order) {
  const int64_t r = blockIdx.y;
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= rankings || j >= n || (skip_self && j == r)) return;
  const int64_t rank = core::rank_position(keys + r * n, finite, n, j, skip_self, r);
  const int64_t width = skip_self ? n - 1 : n;
  order[r * width + rank] = j;
}

template <typename scalar_t>
__global__ void row_set_means_kernel(const scalar_t* __restrict__ X, int64_t d, const int64_t* __restrict__ sets,
                                     int64_t stride, int64_t count, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t o = blockIdx.y;
  const int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= d) return;
  const int64_t* set = sets + o * stride;
  acc_t sum = acc_t(0);
  for (int64_t k = 0; k < count; ++k) sum = sum + static_cast<acc_t>(X[set[k] * d + c]);
  out[o * d + c] = static_cast<scalar_t>(sum / static_cast<acc_t>(count));
}

}  // namespace

void rank_rows(const double* keys, const uint8_t* finite, int64_t rankings, int64_t n, bool skip_self, int64_t* order) {
  TORCH_CHECK(rankings <= 65535, "byzagg: too many rows for the CUDA ranking kernel: ", rankings);
  const dim3 grid(static_cast<unsigned>(blocks_for(n)), static_cast<unsigned>(rankings));
  rank_rows_kernel<<<grid, kThreads, 0, current_stream()>>>(keys, finite, rankings, n, skip_self, order);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor row_set_means(const at::Tensor& X, const at::Tensor& sets, int64_t outputs, int64_t count, int64_t stride,
                         const at::Tensor& into) {
  const int64_t d = X.size(1);
  TORCH_CHECK(outputs <= 65535, "byzagg: too many outputs for the CUDA mean kernel: ", outputs);
  TORCH_CHECK(!into.defined() || (into.is_contiguous() && into.numel() == outputs * d &&
                                  into.scalar_type() == X.scalar_type() && into.device() == X.device()),
              "row_set_means: into must be a contiguous tensor of X's dtype with outputs * d elements");
  const at::Tensor out = into.defined() ? into : at::empty({outputs, d}, X.options());
  const dim3 grid(static_cast<unsigned>(blocks_for(d)), static_cast<unsigned>(outputs));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, X.scalar_type(), "byzagg_row_set_means_cuda", [&] {
    row_set_means_kernel<scalar_t><<<grid, kThreads, 0, current_stream()>>>(
        X.data_ptr<scalar_t>(), d, sets.data_ptr<int64_t>(), stride, count, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace cuda
}  // namespace byzagg
