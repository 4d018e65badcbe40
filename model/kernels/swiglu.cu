/* SwiGLU: g = silu(g) * u, with the CPU's expression (expf, not the fast intrinsic). */
#include <errno.h>

#include "kcommon.cuh"

static __global__ void k_swiglu(float *__restrict__ g, const float *__restrict__ u, int64_t n)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

extern "C" int nvl__k_swiglu(float *g, const float *u, int64_t n, cudaStream_t stream)
{
    if (n < 1)
        return -EINVAL;
    k_swiglu<<<k_blocks(n, K_THREADS), K_THREADS, 0, stream>>>(g, u, n);
    return nvl__k_launch_check("swiglu");
}
