/* RMSNorm: one block per token; the sum of squares in double, as the CPU (cpu_ops.c). With an
 * activation format, the block also quantizes its output for the matrix-vector kernels (one
 * launch instead of two on the decode path); the quantized values are those of the written y. */
#include <errno.h>

#include "kcommon.cuh"

static __global__ void k_rmsnorm(const float *__restrict__ x, const float *__restrict__ g,
                                 float *__restrict__ y, int64_t n, float eps, int act,
                                 uint8_t *__restrict__ q, size_t q_row_bytes)
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

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    uint8_t *qr = q ? q + (size_t)blockIdx.x * q_row_bytes : NULL;
    if (act == NVL_K_ACT_Q8) {
        for (int64_t b = warp; b < n / 32; b += nw) {
            const int64_t i = b * 32 + lane;
            k_quant_q8_warp(xr[i] * scale * g[i], (struct nvl_k_block_q8 *)qr + b);
        }
    } else if (act == NVL_K_ACT_Q8K) {
        for (int64_t b = warp; b < n / NVL_QK_K; b += nw) {
            float v[8];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const int64_t i = b * NVL_QK_K + 8 * lane + j;
                v[j] = xr[i] * scale * g[i];
            }
            k_quant_q8k_warp(v, (struct nvl_block_q8_K *)qr + b);
        }
    }
}

extern "C" int nvl__k_rmsnorm_quantize(const float *x, const float *g, float *y, int64_t n,
                                       int32_t n_tok, float eps, enum nvl_k_act act, void *q,
                                       cudaStream_t stream)
{
    if (n < 1 || n_tok < 1 || (act == NVL_K_ACT_Q8 && n % 32) ||
        (act == NVL_K_ACT_Q8K && n % NVL_QK_K) || (act != NVL_K_ACT_F32 && !q))
        return -EINVAL;
    k_rmsnorm<<<n_tok, K_THREADS, 0, stream>>>(x, g, y, n, eps, (int)act, (uint8_t *)q,
                                               nvl__k_act_row_bytes(act, n));
    return nvl__k_launch_check("rmsnorm");
}

extern "C" int nvl__k_rmsnorm(const float *x, const float *g, float *y, int64_t n, int32_t n_tok,
                              float eps, cudaStream_t stream)
{
    return nvl__k_rmsnorm_quantize(x, g, y, n, n_tok, eps, NVL_K_ACT_F32, NULL, stream);
}
