// The CPU distance matrix, shared by the distance-based kernels (Krum, Bulyan, NNM, medoid,
// MDA) and pairwise_distances.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace byzagg {
namespace cpu {

struct SquaredDistances {
  int64_t n = 0;
  std::vector<double> D2;       // row-major n x n, exact sums of squared differences
  std::vector<uint8_t> finite;  // whether each row is all finite
};

// The squared distances of the rows of the 2-D floating tensor G (csrc/core/distances.h):
// +inf for every pair with a non-finite row, zero diagonal. Same bits for any number of
// threads and on the vector kernel (cpu_isa(), isa.h).
SquaredDistances squared_distances(const at::Tensor& G);

// Raises torch.OutOfMemoryError naming the rule, n and the sizes when the rule's O(n^2)
// temporaries (bytes_per_pair * n * n bytes) exceed the memory available now
// (MemAvailable of /proc/meminfo, or the free physical pages; BYZAGG_MEMORY_LIMIT_BYTES
// overrides it), instead of letting the allocation succeed on overcommit and the kernel's
// OOM killer end the process later. Checked only above 256 MiB unless the limit is set.
void check_square_temporaries(const char* rule, int64_t n, double bytes_per_pair);

}  // namespace cpu
}  // namespace byzagg
