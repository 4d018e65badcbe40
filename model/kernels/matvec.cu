/* Fused dequantize + matrix-vector product (decode, and batches below the GEMM threshold).
 *
 * Layout: a block of up to MV_WARPS warps owns 32 / LPR consecutive rows; LPR lanes of a warp
 * share a row, and the (warp, lane group) slots deal the row's units (qblock.cuh) among them.
 * Every activation load is then the same address for the lanes of one slot column (a
 * broadcast), each lane streams its own units with 16-byte loads, and the partial sums are added
 * across lanes (a fixed butterfly) and across warps (in warp order, through shared memory): a
 * deterministic sum with no atomics. LPR grows for small matrices so that every launch spreads
 * over several hundred blocks. Up to MV_TOK tokens are handled per pass, so a small batch reads
 * each weight once per MV_TOK tokens. Q/K/V and gate/up go out as one launch (a group).
 *
 * Memory parallelism: each lane has one unit (up to 272 bytes) in flight per step; with 8 warps
 * per block and several blocks per SM that is tens of KB in flight per SM, more than HBM needs
 * to stay busy. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* The matrices of one launch: up to NVL_K_MV_GROUP products with the same type, row length and
 * input. Block b belongs to matrix g when block_end[g - 1] <= b < block_end[g]. */
struct mv_group {
    const uint8_t *w[NVL_K_MV_GROUP];
    uint64_t row_bytes[NVL_K_MV_GROUP];
    int64_t rows[NVL_K_MV_GROUP];
    float *y[NVL_K_MV_GROUP];
    size_t y_stride[NVL_K_MV_GROUP];
    int64_t block_end[NVL_K_MV_GROUP];
};

/* LPR lanes share a row: a warp covers 32 / LPR rows, and the row's units are dealt to the
 * nw * LPR (warp, lane group) slots of the block. Small matrices get more lanes per row, so that
 * every matrix spreads over several hundred blocks. */
template <int T, int NB, int NT, int LPR>
static __global__ void __launch_bounds__(MV_WARPS * 32)
    k_matvec(const struct mv_group g, int64_t n_units, const uint8_t *__restrict__ x,
             size_t x_stride, bool accumulate)
{
    constexpr int UB = NB * k_type<T>::block_bytes;
    constexpr int NW = (UB + 3) / 4;
    constexpr int XU = NB * K_ACT_BLOCK_BYTES(T);
    constexpr int RPW = 32 / LPR; /* rows per block */
    __shared__ float red[NT][MV_WARPS][RPW];

    int m = 0;
    while (m < NVL_K_MV_GROUP - 1 && (int64_t)blockIdx.x >= g.block_end[m])
        m++;
    const int64_t blk = (int64_t)blockIdx.x - (m ? g.block_end[m - 1] : 0);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int r_in = lane % RPW, sub = lane / RPW;
    const int64_t row = blk * RPW + r_in;
    const int64_t slots = (int64_t)nw * LPR;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++)
        acc[t] = 0.0f;

    if (row < g.rows[m]) {
        const uint8_t *wr = g.w[m] + (uint64_t)row * g.row_bytes[m];
        for (int64_t u = (int64_t)warp * LPR + sub; u < n_units; u += slots) {
            uint32_t w[NW];
            mv_load<UB>(wr + (uint64_t)u * UB, w);
#pragma unroll
            for (int t = 0; t < NT; t++)
                k_unit_dot<T, NB>(w, x + (size_t)t * x_stride + (size_t)u * XU, acc[t]);
        }
    }
    /* The lanes of a row, then the warps, each in a fixed order. */
#pragma unroll
    for (int t = 0; t < NT; t++) {
#pragma unroll
        for (int o = RPW; o < 32; o <<= 1)
            acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
        if (sub == 0)
            red[t][warp][r_in] = acc[t];
    }
    __syncthreads();
    if (warp == 0 && sub == 0 && row < g.rows[m]) {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float s = red[t][0][r_in];
            for (int j = 1; j < nw; j++)
                s += red[t][j][r_in];
            float *dst = g.y[m] + (size_t)t * g.y_stride[m] + row;
            *dst = accumulate ? *dst + s : s;
        }
    }
}

/* Blocks the launch should spread over, whatever the matrix: several per SM
 * (NVL_MV_TARGET_BLOCKS overrides it, for tuning). */
#define MV_TARGET_BLOCKS 512

static int64_t mv_target_blocks(void)
{
    static int64_t target;
    if (!target) {
        const char *v = getenv("NVL_MV_TARGET_BLOCKS");
        const long n = v ? atol(v) : 0;
        target = n > 0 ? n : MV_TARGET_BLOCKS;
    }
    return target;
}

/* Launches the group for type T over tokens [t0, t0 + NT). The shape (lanes per row, warps)
 * depends only on the matrices' shapes. */
template <int T, int NB, int NT>
static void mv_launch(const struct nvl_k_matmul *mm, int n, int32_t t0, cudaStream_t stream)
{
    const int64_t n_units = mm[0].k / ((int64_t)NB * k_type<T>::block_elems);
    int64_t total_rows = 0;
    for (int i = 0; i < n; i++)
        total_rows += mm[i].rows;
    int lpr = 1;
    if (NT == 1)
        while (lpr < 8 && lpr * 2 <= n_units && (total_rows * lpr + 31) / 32 < mv_target_blocks())
            lpr *= 2;
    int warps = (int)(n_units / lpr);
    warps = warps < 1 ? 1 : (warps > MV_WARPS ? MV_WARPS : warps);
    const int rpw = 32 / lpr;
    struct mv_group g;
    memset(&g, 0, sizeof(g));
    int64_t end = 0;
    for (int i = 0; i < NVL_K_MV_GROUP; i++) {
        if (i < n) {
            g.w[i] = (const uint8_t *)mm[i].w;
            g.row_bytes[i] = mm[i].row_bytes;
            g.rows[i] = mm[i].rows;
            g.y[i] = mm[i].y + (size_t)t0 * mm[i].y_stride;
            g.y_stride[i] = mm[i].y_stride;
            end += (mm[i].rows + rpw - 1) / rpw;
        }
        g.block_end[i] = end;
    }
    const uint8_t *x = (const uint8_t *)mm[0].x + (size_t)t0 * mm[0].x_stride;
    const dim3 grid((unsigned)end), block((unsigned)(warps * 32));
    switch (lpr) {
    case 1:
        k_matvec<T, NB, NT, 1>
            <<<grid, block, 0, stream>>>(g, n_units, x, mm[0].x_stride, mm[0].accumulate);
        break;
    case 2:
        k_matvec<T, NB, 1, 2>
            <<<grid, block, 0, stream>>>(g, n_units, x, mm[0].x_stride, mm[0].accumulate);
        break;
    case 4:
        k_matvec<T, NB, 1, 4>
            <<<grid, block, 0, stream>>>(g, n_units, x, mm[0].x_stride, mm[0].accumulate);
        break;
    default:
        k_matvec<T, NB, 1, 8>
            <<<grid, block, 0, stream>>>(g, n_units, x, mm[0].x_stride, mm[0].accumulate);
        break;
    }
}

template <int T> static void mv_type(const struct nvl_k_matmul *mm, int n, cudaStream_t stream)
{
    constexpr int FB = k_type<T>::fast_blocks;
    const bool fast = mm[0].k % ((int64_t)FB * k_type<T>::block_elems) == 0;
    int32_t t = 0;
    for (; t + MV_TOK <= mm[0].n_tok; t += MV_TOK) {
        if (fast)
            mv_launch<T, FB, MV_TOK>(mm, n, t, stream);
        else
            mv_launch<T, 1, MV_TOK>(mm, n, t, stream);
    }
    for (; t < mm[0].n_tok; t++) {
        if (fast)
            mv_launch<T, FB, 1>(mm, n, t, stream);
        else
            mv_launch<T, 1, 1>(mm, n, t, stream);
    }
}

extern "C" int nvl__k_matvec_group(const struct nvl_k_matmul *mm, int n, cudaStream_t stream)
{
    if (n < 1 || n > NVL_K_MV_GROUP)
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if (!nvl__k_type_supported(mm[i].type) || mm[i].n_tok < 1 || mm[i].rows < 1 ||
            mm[i].k < 1 || mm[i].k % nvl_ggml_block_size(mm[i].type) != 0 ||
            mm[i].type != mm[0].type || mm[i].k != mm[0].k || mm[i].x != mm[0].x ||
            mm[i].x_stride != mm[0].x_stride || mm[i].n_tok != mm[0].n_tok ||
            mm[i].accumulate != mm[0].accumulate)
            return -EINVAL;
    switch (mm[0].type) {
    case NVL_GGML_TYPE_F32:
        mv_type<NVL_GGML_TYPE_F32>(mm, n, stream);
        break;
    case NVL_GGML_TYPE_F16:
        mv_type<NVL_GGML_TYPE_F16>(mm, n, stream);
        break;
    case NVL_GGML_TYPE_BF16:
        mv_type<NVL_GGML_TYPE_BF16>(mm, n, stream);
        break;
    case NVL_GGML_TYPE_Q4_0:
        mv_type<NVL_GGML_TYPE_Q4_0>(mm, n, stream);
        break;
    case NVL_GGML_TYPE_Q4_1:
        mv_type<NVL_GGML_TYPE_Q4_1>(mm, n, stream);
        break;
    case NVL_GGML_TYPE_Q5_0:
        mv_type<NVL_GGML_TYPE_Q5_0>(mm, n, stream);
        break;
    case NVL_GGML_TYPE_Q5_1:
        mv_type<NVL_GGML_TYPE_Q5_1>(mm, n, stream);
        break;
    case NVL_GGML_TYPE_Q8_0:
        mv_type<NVL_GGML_TYPE_Q8_0>(mm, n, stream);
        break;
    case NVL_GGML_TYPE_Q4_K:
        mv_type<NVL_GGML_TYPE_Q4_K>(mm, n, stream);
        break;
    case NVL_GGML_TYPE_Q5_K:
        mv_type<NVL_GGML_TYPE_Q5_K>(mm, n, stream);
        break;
    case NVL_GGML_TYPE_Q6_K:
        mv_type<NVL_GGML_TYPE_Q6_K>(mm, n, stream);
        break;
    default:
        return -EINVAL;
    }
    return nvl__k_launch_check("matvec");
}

extern "C" int nvl__k_matvec(const struct nvl_k_matmul *mm, cudaStream_t stream)
{
    return nvl__k_matvec_group(mm, 1, stream);
}
