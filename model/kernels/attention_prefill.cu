/* Causal attention for prompt batches, tiled in the manner of FlashAttention-2.
 *
 * A block of AP_WARPS warps takes AP_BQ consecutive queries of one head; warp w owns queries
 * 16w .. 16w + 15 of the tile. The block walks the keys of the layer's fp16 cache in tiles of
 * AP_BK rows, staged through shared memory (rows past the last key the block needs are zeros, so
 * nothing outside the written cache is ever read into a product). Per tile each warp computes its
 * 16 x AP_BK scores with tensor-core MMAs (m16n8k16: fp16 inputs, fp32 accumulation), masks the
 * keys past each query's position, and folds the tile into a running softmax in fp32 (max, the
 * rescaled sum and the rescaled output, base-2 exponentials of the scaled scores), then adds the
 * tile's P V, again on the tensor cores with fp32 accumulation.
 *
 * Precision: K and V are exact in fp16, but q and the probabilities p are fp32, and rounding them
 * to fp16 costs up to about 1e-3 of sum p |v| (enough to change a greedy decode a few tokens in).
 * So each is split, x = x_hi + x_lo with x_hi = fp16(x) and x_lo = fp16(x - x_hi), and each
 * product is two MMAs into the same fp32 accumulators (x_hi K + x_lo K); what is left of x is
 * below 2^-22 |x| (or 2^-25 absolute, where x_lo is subnormal), so the result is within a few
 * fp32 roundings of the scalar kernel (attention.cu). The running sums add p_hi + p_lo, the
 * probabilities the P V product sees. q is split once, when the warp loads it.
 *
 * Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16" with .f16 inputs): lane l has
 * g = l / 4, c = l % 4; A (16 x 16, row major) a0 = (g, 2c..2c+1), a1 = (g + 8, 2c..), a2 =
 * (g, 2c + 8..), a3 = (g + 8, 2c + 8..); B (16 x 8) b0 = (2c..2c+1, g), b1 = (2c + 8.., g);
 * C (16 x 8, fp32) c0, c1 = (g, 2c..2c+1), c2, c3 = (g + 8, 2c..). Two adjacent score tiles
 * (keys 16j .. 16j + 15) in C layout are exactly the A fragment of P for those keys, so the
 * probabilities never leave registers. The B fragments of K come straight from K's rows (two
 * consecutive head dimensions of one key per register); those of V (two consecutive keys of
 * one dimension) come from ldmatrix.trans over V's rows.
 *
 * Deterministic: every sum has a fixed order (the quad shuffles included), no atomics, and the
 * launch shape depends on n_tok and n_head only. */
#include <errno.h>
#include <math.h>

#include <cuda_fp16.h>

#include "kcommon.cuh"

#define AP_WARPS   4
#define AP_THREADS (32 * AP_WARPS)
#define AP_BQ      (16 * AP_WARPS) /* queries per block */
#define AP_BK      64              /* keys per tile */
/* Batches from this size on take the tiled kernel. */
#define AP_MIN_TOK 16

static __device__ __forceinline__ uint32_t ap_pack(float lo, float hi)
{
    const __half2 h = __floats2half2_rn(lo, hi); /* lo in the low 16 bits */
    return *(const uint32_t *)&h;
}

static __device__ __forceinline__ float ap_round(float x)
{
    return __half2float(__float2half_rn(x));
}

/* The hi and lo fp16 pairs of (x, y): hi = fp16 of each, lo = fp16 of what hi leaves (x - hi is
 * exact in fp32). */
static __device__ __forceinline__ void ap_split(float x, float y, uint32_t *hi, uint32_t *lo)
{
    const float xh = ap_round(x), yh = ap_round(y);
    *hi = ap_pack(xh, yh);
    *lo = ap_pack(x - xh, y - yh);
}

/* c += a b for one m16n8k16 tile. */
static __device__ __forceinline__ void ap_mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
{
#if __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap(); /* the launcher checks the compute capability */
#endif
}

/* Four transposed 8 x 8 fp16 matrices from shared memory; lane l names row l % 8 of matrix
 * l / 8 and receives, of matrix i, elements (2c, g) and (2c + 1, g) in r[i]. The "memory" clobber
 * keeps the load after the barrier that publishes the tile. */
static __device__ __forceinline__ void ap_ldsm_x4_trans(uint32_t *r, const __half *row)
{
#if __CUDA_ARCH__ >= 800
    const unsigned s = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
#else
    r[0] = r[1] = r[2] = r[3] = 0;
    __trap();
#endif
}

/* Grid: (query tiles, n_head); the tile index runs backwards so that the longest tiles (the
 * last queries see the most keys) start first. */
template <int HD>
static __global__ void __launch_bounds__(AP_THREADS)
    k_attention_prefill(const float *__restrict__ q, const __half *__restrict__ k_cache,
                        const __half *__restrict__ v_cache, float *__restrict__ out,
                        const int32_t *__restrict__ pos0p, int32_t n_tok, int32_t n_head,
                        int32_t n_head_kv)
{
    constexpr int LD = HD + 8;  /* shared row stride in halves: 16-byte rows, conflict-free */
    constexpr int NC = HD / 16; /* k steps of the score product */
    constexpr int ND = HD / 8;  /* n8 tiles of the output */
    constexpr int NJ = AP_BK / 8;
    __shared__ __align__(16) __half ks[AP_BK * LD];
    __shared__ __align__(16) __half vs[AP_BK * LD];

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c4 = lane & 3;
    const int h = blockIdx.y, kvh = h / (n_head / n_head_kv);
    const int q0 = (int)(gridDim.x - 1 - blockIdx.x) * AP_BQ;
    const int pos0 = *pos0p;
    const size_t qd = (size_t)n_head * HD, kvd = (size_t)n_head_kv * HD;
    /* Keys the block needs: up to the position of its last query. */
    const int n_kv = pos0 + min(q0 + AP_BQ, n_tok);
    const int wq0 = q0 + 16 * warp;
    /* The last key any valid query of this warp sees (a warp without valid queries still runs
     * the first tile, harmlessly, and stores nothing). */
    const int w_last = pos0 + min(wq0 + 15, n_tok - 1);
    const int r0 = wq0 + g, r1 = wq0 + g + 8; /* this lane's two query rows */

    /* The warp's 16 query rows as A fragments, one per 16 head dimensions: hi and lo parts. */
    uint32_t qf[NC][4], ql[NC][4];
    {
        const float *qa = q + (size_t)r0 * qd + (size_t)h * HD + 2 * c4;
        const float *qb = q + (size_t)r1 * qd + (size_t)h * HD + 2 * c4;
        const float2 zero = make_float2(0.0f, 0.0f);
#pragma unroll
        for (int c = 0; c < NC; c++) {
            const float2 a0 = r0 < n_tok ? *(const float2 *)(qa + 16 * c) : zero;
            const float2 a1 = r1 < n_tok ? *(const float2 *)(qb + 16 * c) : zero;
            const float2 a2 = r0 < n_tok ? *(const float2 *)(qa + 16 * c + 8) : zero;
            const float2 a3 = r1 < n_tok ? *(const float2 *)(qb + 16 * c + 8) : zero;
            ap_split(a0.x, a0.y, &qf[c][0], &ql[c][0]);
            ap_split(a1.x, a1.y, &qf[c][1], &ql[c][1]);
            ap_split(a2.x, a2.y, &qf[c][2], &ql[c][2]);
            ap_split(a3.x, a3.y, &qf[c][3], &ql[c][3]);
        }
    }

    float o[ND][4];
#pragma unroll
    for (int d = 0; d < ND; d++)
        o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
    /* Running maxima (log2 domain) of rows r0 and r1, and this lane's part of their sums. */
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    const float scale = 1.0f / sqrtf((float)HD) * 1.4426950408889634f; /* log2(e) */
    const int qp0 = pos0 + r0, qp1 = pos0 + r1;

    const __half *kc = k_cache + (size_t)kvh * HD;
    const __half *vc = v_cache + (size_t)kvh * HD;
    for (int k0 = 0; k0 < n_kv; k0 += AP_BK) {
        __syncthreads(); /* every warp is done with the previous tile */
        for (int i = threadIdx.x; i < AP_BK * HD / 8; i += AP_THREADS) {
            const int r = i / (HD / 8), c = i % (HD / 8);
            uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
            if (k0 + r < n_kv) {
                kv = *(const uint4 *)(kc + (size_t)(k0 + r) * kvd + 8 * c);
                vv = *(const uint4 *)(vc + (size_t)(k0 + r) * kvd + 8 * c);
            }
            *(uint4 *)&ks[r * LD + 8 * c] = kv;
            *(uint4 *)&vs[r * LD + 8 * c] = vv;
        }
        __syncthreads();
        if (k0 > w_last)
            continue; /* warp-uniform: all of this tile is masked for this warp */

        /* Scores of keys k0 + 8j + 2c4 (+1): s[j][0..1] for row r0, s[j][2..3] for row r1. */
        float s[NJ][4];
#pragma unroll
        for (int j = 0; j < NJ; j++)
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int c = 0; c < NC; c++)
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                const __half *kr = ks + (8 * j + g) * LD + 16 * c + 2 * c4;
                const uint32_t b0 = *(const uint32_t *)kr, b1 = *(const uint32_t *)(kr + 8);
                ap_mma(s[j], qf[c], b0, b1);
                ap_mma(s[j], ql[c], b0, b1);
            }

        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int kp = k0 + 8 * j + 2 * c4 + e;
                s[j][e] = kp <= qp0 ? s[j][e] * scale : -INFINITY;
                s[j][2 + e] = kp <= qp1 ? s[j][2 + e] * scale : -INFINITY;
                mx0 = fmaxf(mx0, s[j][e]);
                mx1 = fmaxf(mx1, s[j][2 + e]);
            }
        /* The four lanes of a quad hold one row. */
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        /* Key 0 is in every row's range and the first tile is never skipped, so the new maxima
         * are finite; the first correction is exp2(-inf) = 0. */
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float f0 = exp2f(m0 - mn0), f1 = exp2f(m1 - mn1);
        m0 = mn0;
        m1 = mn1;
        l0 *= f0;
        l1 *= f1;
#pragma unroll
        for (int d = 0; d < ND; d++) {
            o[d][0] *= f0;
            o[d][1] *= f0;
            o[d][2] *= f1;
            o[d][3] *= f1;
        }
        /* The probabilities, in fp32; the P V product splits them below. */
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            s[j][0] = exp2f(s[j][0] - mn0);
            s[j][1] = exp2f(s[j][1] - mn0);
            s[j][2] = exp2f(s[j][2] - mn1);
            s[j][3] = exp2f(s[j][3] - mn1);
        }

        /* o += P V, 16 keys per step. */
        const int lm = lane >> 3, lr = lane & 7;
#pragma unroll
        for (int kk = 0; kk < AP_BK / 16; kk++) {
            /* A fragments of P's hi and lo parts. The sums add p_hi + p_lo, what the product
             * sees, so that a dominant term's leftover rounding cancels in the quotient. */
            uint32_t pa[4], pl[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float *sp = &s[2 * kk + (i >> 1)][2 * (i & 1)];
                const float xh = ap_round(sp[0]), yh = ap_round(sp[1]);
                const float xl = ap_round(sp[0] - xh), yl = ap_round(sp[1] - yh);
                pa[i] = ap_pack(xh, yh);
                pl[i] = ap_pack(xl, yl);
                if (i & 1)
                    l1 += (xh + xl) + (yh + yl);
                else
                    l0 += (xh + xl) + (yh + yl);
            }
            /* Matrices: keys 16kk + (0..7 | 8..15) x dims 16dp + (0..7 | 8..7): b0 and b1 of the
             * n8 tile 2dp, then of 2dp + 1. */
            const __half *vrow = vs + (16 * kk + lr + 8 * (lm & 1)) * LD + 8 * (lm >> 1);
#pragma unroll
            for (int dp = 0; dp < HD / 16; dp++) {
                uint32_t b[4];
                ap_ldsm_x4_trans(b, vrow + 16 * dp);
                ap_mma(o[2 * dp], pa, b[0], b[1]);
                ap_mma(o[2 * dp], pl, b[0], b[1]);
                ap_mma(o[2 * dp + 1], pa, b[2], b[3]);
                ap_mma(o[2 * dp + 1], pl, b[2], b[3]);
            }
        }
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = 1.0f / l0, i1 = 1.0f / l1;
    float *oa = out + (size_t)r0 * qd + (size_t)h * HD + 2 * c4;
    float *ob = out + (size_t)r1 * qd + (size_t)h * HD + 2 * c4;
#pragma unroll
    for (int d = 0; d < ND; d++) {
        if (r0 < n_tok)
            *(float2 *)(oa + 8 * d) = make_float2(o[d][0] * i0, o[d][1] * i0);
        if (r1 < n_tok)
            *(float2 *)(ob + 8 * d) = make_float2(o[d][2] * i1, o[d][3] * i1);
    }
}

/* Compute capability 8.0 or later (mma.sync m16n8k16 and ldmatrix) on the current device. */
static bool ap_device_ok(void)
{
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return major >= 8;
}

extern "C" int nvl__k_attention_prefill(const struct nvl_k_attention *a, cudaStream_t stream)
{
    if (a->n_tok < 1 || a->n_head < 1 || a->n_head_kv < 1 || a->n_head % a->n_head_kv ||
        a->n_ctx < 1)
        return -EINVAL;
    /* 16-byte cache rows (uint4 loads) and 8-byte q/out pairs (float2). */
    if (a->n_tok < AP_MIN_TOK || (a->head_dim != 64 && a->head_dim != 128) ||
        ((uintptr_t)a->k_cache & 15) || ((uintptr_t)a->v_cache & 15) || ((uintptr_t)a->q & 7) ||
        ((uintptr_t)a->out & 7) || !ap_device_ok())
        return -ENOTSUP;
    const dim3 grid((unsigned)((a->n_tok + AP_BQ - 1) / AP_BQ), (unsigned)a->n_head);
    const __half *kc = (const __half *)a->k_cache, *vc = (const __half *)a->v_cache;
    if (a->head_dim == 64)
        k_attention_prefill<64><<<grid, AP_THREADS, 0, stream>>>(a->q, kc, vc, a->out, a->pos0,
                                                                 a->n_tok, a->n_head, a->n_head_kv);
    else
        k_attention_prefill<128><<<grid, AP_THREADS, 0, stream>>>(
            a->q, kc, vc, a->out, a->pos0, a->n_tok, a->n_head, a->n_head_kv);
    return nvl__k_launch_check("attention (prefill)");
}
