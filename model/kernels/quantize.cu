/* Activation quantization for the matrix-vector kernels, bit for bit the CPU's
 * (cpu_ops.c act_quantize_q8 / act_quantize_q8k): d = amax / 127, q = round-to-nearest-even of
 * x * (1 / d), plus the integer sums. One warp per block. */
#include <errno.h>

#include "kcommon.cuh"

/* Warp w of the grid quantizes 32-element block w (over all tokens). */
static __global__ void k_quant_q8(const float *__restrict__ x, size_t x_stride, int32_t n_tok,
                                  int64_t blocks_per_row, uint8_t *__restrict__ dst,
                                  size_t row_bytes)
{
    const int64_t wid = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (wid >= (int64_t)n_tok * blocks_per_row)
        return;
    const int64_t t = wid / blocks_per_row, b = wid % blocks_per_row;
    const float v = x[(size_t)t * x_stride + (size_t)b * 32 + lane];
    k_quant_q8_warp(v, (struct nvl_k_block_q8 *)(dst + (size_t)t * row_bytes) + (size_t)b);
}

/* Warp w quantizes 256-element block w: lane l holds elements 8l .. 8l + 7, and lanes 2g, 2g + 1
 * make bsums[g]. */
static __global__ void k_quant_q8k(const float *__restrict__ x, size_t x_stride, int32_t n_tok,
                                   int64_t blocks_per_row, uint8_t *__restrict__ dst,
                                   size_t row_bytes)
{
    const int64_t wid = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (wid >= (int64_t)n_tok * blocks_per_row)
        return;
    const int64_t t = wid / blocks_per_row, b = wid % blocks_per_row;
    const float *src = x + (size_t)t * x_stride + (size_t)b * NVL_QK_K + 8 * lane;
    const float4 a0 = *(const float4 *)src, a1 = *(const float4 *)(src + 4);
    const float v[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
    k_quant_q8k_warp(v, (struct nvl_block_q8_K *)(dst + (size_t)t * row_bytes) + (size_t)b);
}

static __global__ void k_copy_rows(const float *__restrict__ x, size_t x_stride, int32_t n_tok,
                                   int64_t k, float *__restrict__ dst)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n_tok * k)
        return;
    dst[i] = x[(size_t)(i / k) * x_stride + (size_t)(i % k)];
}

extern "C" int nvl__k_quantize(enum nvl_k_act act, const float *x, size_t x_stride, int32_t n_tok,
                               int64_t k, void *dst, cudaStream_t stream)
{
    if (n_tok < 1 || k < 1)
        return -EINVAL;
    const size_t row_bytes = nvl__k_act_row_bytes(act, k);
    switch (act) {
    case NVL_K_ACT_Q8: {
        if (k % 32)
            return -EINVAL;
        const int64_t nb = k / 32;
        k_quant_q8<<<k_blocks(n_tok * nb * 32, K_THREADS), K_THREADS, 0, stream>>>(
            x, x_stride, n_tok, nb, (uint8_t *)dst, row_bytes);
        break;
    }
    case NVL_K_ACT_Q8K: {
        /* float4 loads: rows must start on 16 bytes. */
        if (k % NVL_QK_K || x_stride % 4 || ((uintptr_t)x & 15))
            return -EINVAL;
        const int64_t nb = k / NVL_QK_K;
        k_quant_q8k<<<k_blocks(n_tok * nb * 32, K_THREADS), K_THREADS, 0, stream>>>(
            x, x_stride, n_tok, nb, (uint8_t *)dst, row_bytes);
        break;
    }
    default:
        k_copy_rows<<<k_blocks(n_tok * k, K_THREADS), K_THREADS, 0, stream>>>(x, x_stride, n_tok, k,
                                                                              (float *)dst);
        break;
    }
    return nvl__k_launch_check("quantize");
}
