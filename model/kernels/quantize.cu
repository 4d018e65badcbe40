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
    const float amax = k_warp_max(fabsf(v));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const int q = __float2int_rn(v * id);
    const int sum = k_warp_sum_int(q);
    struct nvl_k_block_q8 *blk = (struct nvl_k_block_q8 *)(dst + (size_t)t * row_bytes) + (size_t)b;
    blk->qs[lane] = (int8_t)q;
    if (lane == 0) {
        blk->d = d;
        blk->sum = sum;
    }
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
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; j++)
        amax = fmaxf(amax, fabsf(v[j]));
    amax = k_warp_max(amax);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint32_t packed[2] = {0, 0};
    int sum = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int q = __float2int_rn(v[j] * id);
        sum += q;
        packed[j >> 2] |= ((uint32_t)q & 0xffu) << (8 * (j & 3));
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    struct nvl_block_q8_K *blk = (struct nvl_block_q8_K *)(dst + (size_t)t * row_bytes) + (size_t)b;
    uint32_t *qs = (uint32_t *)blk->qs;
    qs[2 * lane] = packed[0];
    qs[2 * lane + 1] = packed[1];
    if ((lane & 1) == 0)
        blk->bsums[lane >> 1] = (int16_t)sum;
    if (lane == 0)
        blk->d = d;
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
