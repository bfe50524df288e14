// EMBER_HD marks a function that the CPU and the CUDA backends both compile from one definition:
// under nvcc it is __host__ __device__ (and inlined), in an ordinary C++ build a plain inline
// function. The headers that define math once for every device (core/elementwise.h,
// core/optim_math.h, core/reduce_math.h, ...) put it on every function.
#pragma once

#ifdef __CUDACC__
#define EMBER_HD __host__ __device__ __forceinline__
#else
#define EMBER_HD inline
#endif
