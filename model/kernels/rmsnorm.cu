/* RMSNorm: one block per token; the sum of squares in double, as the CPU (cpu_ops.c). */
#include <errno.h>

#include "kcommon.cuh"

static __global__ void k_rmsnorm(const float *__restrict__ x, const float *__restrict__ g,
                                 float *__restrict__ y, int64_t n, float eps)
{
    __shared__ double scratch[32];
    const float *xr = x + (size_t)blockIdx.x * (size_t)n;
    float *yr = y + (size_t)blockIdx.x * (size_t)n;
    double ss = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        ss += (double)xr[i] * xr[i];
    ss = k_block_sum_double(ss, scratch);
    const float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        yr[i] = xr[i] * scale * g[i];
}

extern "C" int nvl__k_rmsnorm(const float *x, const float *g, float *y, int64_t n, int32_t n_tok,
                              float eps, cudaStream_t stream)
{
    if (n < 1 || n_tok < 1)
        return -EINVAL;
    k_rmsnorm<<<n_tok, K_THREADS, 0, stream>>>(x, g, y, n, eps);
    return nvl__k_launch_check("rmsnorm");
}
