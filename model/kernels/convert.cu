/* fp32 -> fp16 (round to nearest even), for the GEMM path's activations and the tests. */
#include <errno.h>

#include <cuda_fp16.h>

#include "kcommon.cuh"

static __global__ void k_f32_to_f16(const float *__restrict__ x, __half *__restrict__ y, int64_t n)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = __float2half_rn(x[i]);
}

extern "C" int nvl__k_f32_to_f16(const float *x, uint16_t *y, int64_t n, cudaStream_t stream)
{
    if (n < 1)
        return -EINVAL;
    k_f32_to_f16<<<k_blocks(n, K_THREADS), K_THREADS, 0, stream>>>(x, (__half *)y, n);
    return nvl__k_launch_check("f32_to_f16");
}
