/* RMSNorm, with an activation format also the output quantized for the matrix-vector kernels
 * (one launch instead of two on the decode path; the quantized values are those of the written
 * y). The sum of squares is accumulated in double, as the CPU does (cpu_ops.c).
 *
 * Grid: (slices, tokens). A slice is what one block of 8 warps writes: 8 quantization blocks
 * (256 elements for Q8, 2048 for Q8_K) or 2048 plain elements. Every block of a token computes
 * the row's sum of squares itself, in the same order, so the slices agree on the scale; a single
 * token's row thus spreads over several SMs instead of one block working through it serially
 * (which measured 22 us per call on an H100 for a 4096 row). */
#include <errno.h>

#include "kcommon.cuh"

#define RMS_WARPS 8

static __global__ void __launch_bounds__(RMS_WARPS * 32)
    k_rmsnorm(const float *__restrict__ x, const float *__restrict__ g, float *__restrict__ y,
              int64_t n, float eps, int act, uint8_t *__restrict__ q, size_t q_row_bytes)
{
    __shared__ double scratch[8];
    k_pdl_wait();
    k_pdl_launch();
    const float *xr = x + (size_t)blockIdx.y * (size_t)n;
    float *yr = y + (size_t)blockIdx.y * (size_t)n;
    const float scale = k_rms_scale(xr, n, eps, scratch);

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint8_t *qr = q ? q + (size_t)blockIdx.y * q_row_bytes : NULL;
    if (act == NVL_K_ACT_Q8) {
        const int64_t b = (int64_t)blockIdx.x * RMS_WARPS + warp;
        if (b < n / 32) {
            const int64_t i = b * 32 + lane;
            const float v = xr[i] * scale * g[i];
            yr[i] = v;
            k_quant_q8_warp(v, (struct nvl_k_block_q8 *)qr + b);
        }
    } else if (act == NVL_K_ACT_Q8K) {
        const int64_t b = (int64_t)blockIdx.x * RMS_WARPS + warp;
        if (b < n / NVL_QK_K) {
            float v[8];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const int64_t i = b * NVL_QK_K + 8 * lane + j;
                v[j] = xr[i] * scale * g[i];
                yr[i] = v[j];
            }
            k_quant_q8k_warp(v, (struct nvl_block_q8_K *)qr + b);
        }
    } else {
        const int64_t lo = (int64_t)blockIdx.x * RMS_WARPS * 256;
        const int64_t hi = lo + RMS_WARPS * 256 < n ? lo + RMS_WARPS * 256 : n;
        for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
            yr[i] = xr[i] * scale * g[i];
    }
}

extern "C" int nvl__k_rmsnorm_quantize(const float *x, const float *g, float *y, int64_t n,
                                       int32_t n_tok, float eps, enum nvl_k_act act, void *q,
                                       cudaStream_t stream)
{
    if (n < 1 || n_tok < 1 || n_tok > 65535 || (act == NVL_K_ACT_Q8 && n % 32) ||
        (act == NVL_K_ACT_Q8K && n % NVL_QK_K) || (act != NVL_K_ACT_F32 && !q))
        return -EINVAL;
    const int64_t per_slice = act == NVL_K_ACT_Q8 ? RMS_WARPS * 32 : RMS_WARPS * 256;
    const dim3 grid((unsigned)((n + per_slice - 1) / per_slice), (unsigned)n_tok);
    return k_launch("rmsnorm", k_rmsnorm, grid, dim3(RMS_WARPS * 32), 0, stream, x, g, y, n, eps,
                    (int)act, (uint8_t *)q, nvl__k_act_row_bytes(act, n));
}

extern "C" int nvl__k_rmsnorm(const float *x, const float *g, float *y, int64_t n, int32_t n_tok,
                              float eps, cudaStream_t stream)
{
    return nvl__k_rmsnorm_quantize(x, g, y, n, n_tok, eps, NVL_K_ACT_F32, NULL, stream);
}
