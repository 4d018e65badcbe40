/* SwiGLU: g = silu(g) * u, with the CPU's expression (expf, not the fast intrinsic). With an
 * activation format, one warp per activation block also quantizes the result for the down
 * projection (one launch instead of two on the decode path). */
#include <errno.h>

#include "kcommon.cuh"

static __global__ void k_swiglu(float *__restrict__ g, const float *__restrict__ u, int64_t n)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        g[i] = k_silu_mul(g[i], u[i]);
}

/* The same, four elements per thread (n a multiple of 4, 16-byte aligned g and u): the batch
 * case, where the element-wise kernel is bound by memory. */
static __global__ void k_swiglu_x4(float4 *__restrict__ g, const float4 *__restrict__ u, int64_t n4)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4)
        return;
    const float4 a = g[i], b = u[i];
    g[i] = make_float4(k_silu_mul(a.x, b.x), k_silu_mul(a.y, b.y), k_silu_mul(a.z, b.z),
                       k_silu_mul(a.w, b.w));
}

/* Warp w: activation block w of the n_tok rows of n (32 or 256 elements). */
template <int ACT>
static __global__ void k_swiglu_quant(float *__restrict__ g, const float *__restrict__ u, int64_t n,
                                      int32_t n_tok, uint8_t *__restrict__ q, size_t q_row_bytes)
{
    constexpr int BL = ACT == NVL_K_ACT_Q8 ? 32 : NVL_QK_K;
    k_pdl_wait();
    k_pdl_launch();
    const int64_t per_row = n / BL;
    const int64_t wid = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (wid >= (int64_t)n_tok * per_row)
        return;
    const int64_t t = wid / per_row, b = wid % per_row;
    const size_t base = (size_t)t * (size_t)n + (size_t)b * BL;
    uint8_t *qr = q + (size_t)t * q_row_bytes;
    if (ACT == NVL_K_ACT_Q8) {
        const float v = k_silu_mul(g[base + lane], u[base + lane]);
        g[base + lane] = v;
        k_quant_q8_warp(v, (struct nvl_k_block_q8 *)qr + b);
    } else {
        float v[8];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const size_t i = base + 8 * lane + j;
            v[j] = k_silu_mul(g[i], u[i]);
            g[i] = v[j];
        }
        k_quant_q8k_warp(v, (struct nvl_block_q8_K *)qr + b);
    }
}

extern "C" int nvl__k_swiglu_quantize(float *g, const float *u, int64_t n, int32_t n_tok,
                                      enum nvl_k_act act, void *q, cudaStream_t stream)
{
    if (n < 1 || n_tok < 1 || (act == NVL_K_ACT_Q8 && n % 32) ||
        (act == NVL_K_ACT_Q8K && n % NVL_QK_K) || (act != NVL_K_ACT_F32 && !q))
        return -EINVAL;
    const size_t qrb = nvl__k_act_row_bytes(act, n);
    if (act == NVL_K_ACT_Q8)
        return k_launch("swiglu", k_swiglu_quant<NVL_K_ACT_Q8>,
                        dim3(k_blocks(n_tok * (n / 32) * 32, K_THREADS)), dim3(K_THREADS), 0,
                        stream, g, u, n, n_tok, (uint8_t *)q, qrb);
    if (act == NVL_K_ACT_Q8K)
        return k_launch("swiglu", k_swiglu_quant<NVL_K_ACT_Q8K>,
                        dim3(k_blocks(n_tok * (n / NVL_QK_K) * 32, K_THREADS)), dim3(K_THREADS), 0,
                        stream, g, u, n, n_tok, (uint8_t *)q, qrb);
    if ((n * n_tok) % 4 == 0 && !((uintptr_t)g & 15) && !((uintptr_t)u & 15))
        k_swiglu_x4<<<k_blocks(n * n_tok / 4, K_THREADS), K_THREADS, 0, stream>>>(
            (float4 *)g, (const float4 *)u, n * n_tok / 4);
    else
        k_swiglu<<<k_blocks(n * n_tok, K_THREADS), K_THREADS, 0, stream>>>(g, u, n * n_tok);
    return nvl__k_launch_check("swiglu");
}

extern "C" int nvl__k_swiglu(float *g, const float *u, int64_t n, cudaStream_t stream)
{
    return nvl__k_swiglu_quantize(g, u, n, 1, NVL_K_ACT_F32, NULL, stream);
}
