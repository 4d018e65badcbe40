/* Fused dequantize + matrix-vector product (decode, and batches below the GEMM threshold).
 *
 * Layout: a block of MV_WARPS warps owns 32 consecutive rows, one row per lane, and the warps
 * split the row into units (qblock.cuh): warp j takes units j, j + MV_WARPS, ... of its lane's
 * row. So every activation load is the same address across the warp (a broadcast), each lane
 * streams its own row with 16-byte loads, and the per-warp partial sums are added in warp order
 * through shared memory: a deterministic sum with no atomics. Up to MV_TOK tokens are handled
 * per pass, so a small batch reads each weight once per MV_TOK tokens.
 *
 * Memory parallelism: each lane has one unit (up to 272 bytes) in flight per step; with 8 warps
 * per block and several blocks per SM that is tens of KB in flight per SM, more than HBM needs
 * to stay busy. */
#include <errno.h>

#include "kcommon.cuh"
#include "qblock.cuh"

#define MV_WARPS 8
#define MV_TOK   4

/* Loads UB bytes at p into w (UB even, p 2-byte aligned): 16-byte loads when p is 16-byte
 * aligned and UB a multiple of 16, otherwise aligned 4-byte loads, shifted by a half word when
 * p is not 4-byte aligned. Never reads a 4-byte word that holds none of the unit's bytes. */
template <int UB> static __device__ __forceinline__ void mv_load(const uint8_t *p, uint32_t *w)
{
    constexpr int NW = (UB + 3) / 4;
    const uintptr_t a = (uintptr_t)p;
    if (UB % 16 == 0 && (a & 15) == 0) {
        const uint4 *v = (const uint4 *)p;
#pragma unroll
        for (int i = 0; i < UB / 16; i++) {
            const uint4 t = __ldg(v + i);
            w[4 * i + 0] = t.x;
            w[4 * i + 1] = t.y;
            w[4 * i + 2] = t.z;
            w[4 * i + 3] = t.w;
        }
    } else if ((a & 3) == 0) {
        const uint32_t *v = (const uint32_t *)p;
#pragma unroll
        for (int i = 0; i < NW; i++)
            w[i] = __ldg(v + i);
    } else {
        constexpr int NA = (UB + 2 + 3) / 4;
        const uint32_t *v = (const uint32_t *)(p - 2);
        uint32_t t[NA];
#pragma unroll
        for (int i = 0; i < NA; i++)
            t[i] = __ldg(v + i);
#pragma unroll
        for (int i = 0; i < NW; i++)
            w[i] = __funnelshift_r(t[i], i + 1 < NA ? t[i + 1] : 0u, 16);
    }
}

template <int T, int NB, int NT>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    k_matvec(const uint8_t *__restrict__ wt, uint64_t row_bytes, int64_t rows, int64_t n_units,
             const uint8_t *__restrict__ x, size_t x_stride, float *__restrict__ y, size_t y_stride,
             bool accumulate)
{
    constexpr int UB = NB * k_type<T>::block_bytes;
    constexpr int NW = (UB + 3) / 4;
    constexpr int XU = NB * K_ACT_BLOCK_BYTES(T);
    __shared__ float red[NT][MV_WARPS][32];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int64_t row = (int64_t)blockIdx.x * 32 + lane;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++)
        acc[t] = 0.0f;

    if (row < rows) {
        const uint8_t *wr = wt + (uint64_t)row * row_bytes;
        for (int64_t u = warp; u < n_units; u += nw) {
            uint32_t w[NW];
            mv_load<UB>(wr + (uint64_t)u * UB, w);
#pragma unroll
            for (int t = 0; t < NT; t++)
                k_unit_dot<T, NB>(w, x + (size_t)t * x_stride + (size_t)u * XU, acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++)
        red[t][warp][lane] = acc[t];
    __syncthreads();
    if (warp == 0 && row < rows) {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float s = red[t][0][lane];
            for (int j = 1; j < nw; j++)
                s += red[t][j][lane];
            float *dst = y + (size_t)t * y_stride + row;
            *dst = accumulate ? *dst + s : s;
        }
    }
}

/* Launches the kernel for type T over tokens [t0, t0 + NT). */
template <int T, int NB, int NT>
static void mv_launch(const struct nvl_k_matmul *mm, int32_t t0, cudaStream_t stream)
{
    const int64_t n_units = mm->k / ((int64_t)NB * k_type<T>::block_elems);
    int warps = n_units < MV_WARPS ? (int)n_units : MV_WARPS;
    if (warps < 1)
        warps = 1;
    const uint8_t *x = (const uint8_t *)mm->x + (size_t)t0 * mm->x_stride;
    k_matvec<T, NB, NT><<<k_blocks(mm->rows, 32), warps * 32, 0, stream>>>(
        (const uint8_t *)mm->w, mm->row_bytes, mm->rows, n_units, x, mm->x_stride,
        mm->y + (size_t)t0 * mm->y_stride, mm->y_stride, mm->accumulate);
}

template <int T> static void mv_type(const struct nvl_k_matmul *mm, cudaStream_t stream)
{
    constexpr int FB = k_type<T>::fast_blocks;
    const bool fast = mm->k % ((int64_t)FB * k_type<T>::block_elems) == 0;
    int32_t t = 0;
    for (; t + MV_TOK <= mm->n_tok; t += MV_TOK) {
        if (fast)
            mv_launch<T, FB, MV_TOK>(mm, t, stream);
        else
            mv_launch<T, 1, MV_TOK>(mm, t, stream);
    }
    for (; t < mm->n_tok; t++) {
        if (fast)
            mv_launch<T, FB, 1>(mm, t, stream);
        else
            mv_launch<T, 1, 1>(mm, t, stream);
    }
}

extern "C" int nvl__k_matvec(const struct nvl_k_matmul *mm, cudaStream_t stream)
{
    if (!nvl__k_type_supported(mm->type) || mm->n_tok < 1 || mm->rows < 1 || mm->k < 1 ||
        mm->k % nvl_ggml_block_size(mm->type) != 0)
        return -EINVAL;
    switch (mm->type) {
    case NVL_GGML_TYPE_F32:
        mv_type<NVL_GGML_TYPE_F32>(mm, stream);
        break;
    case NVL_GGML_TYPE_F16:
        mv_type<NVL_GGML_TYPE_F16>(mm, stream);
        break;
    case NVL_GGML_TYPE_BF16:
        mv_type<NVL_GGML_TYPE_BF16>(mm, stream);
        break;
    case NVL_GGML_TYPE_Q4_0:
        mv_type<NVL_GGML_TYPE_Q4_0>(mm, stream);
        break;
    case NVL_GGML_TYPE_Q4_1:
        mv_type<NVL_GGML_TYPE_Q4_1>(mm, stream);
        break;
    case NVL_GGML_TYPE_Q5_0:
        mv_type<NVL_GGML_TYPE_Q5_0>(mm, stream);
        break;
    case NVL_GGML_TYPE_Q5_1:
        mv_type<NVL_GGML_TYPE_Q5_1>(mm, stream);
        break;
    case NVL_GGML_TYPE_Q8_0:
        mv_type<NVL_GGML_TYPE_Q8_0>(mm, stream);
        break;
    case NVL_GGML_TYPE_Q4_K:
        mv_type<NVL_GGML_TYPE_Q4_K>(mm, stream);
        break;
    case NVL_GGML_TYPE_Q5_K:
        mv_type<NVL_GGML_TYPE_Q5_K>(mm, stream);
        break;
    case NVL_GGML_TYPE_Q6_K:
        mv_type<NVL_GGML_TYPE_Q6_K>(mm, stream);
        break;
    default:
        return -EINVAL;
    }
    return nvl__k_launch_check("matvec");
}
