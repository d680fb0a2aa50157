// Shared by CPU and CUDA code: torch-free.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define BYZAGG_HD __host__ __device__ __forceinline__
#else
#define BYZAGG_HD inline
#endif
