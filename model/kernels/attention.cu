/* Causal attention over the fp16 KV cache, one block per (query head, token).
 *
 * Scores: thread i takes positions i, i + 256, ...: the dot of q with the key row (16-byte loads
 * when the head size allows), times 1 / sqrt(head_dim). Softmax as the CPU (cpu_ops.c): max,
 * expf(s - max), the sum in double, then p * (float)(1 / sum). Output: the block is split into
 * G = 256 / head_dim groups; group g sums p * v over positions g, g + G, ... for its dimension,
 * and the groups' partials are added in group order. Deterministic, no atomics. */
#include <errno.h>

#include <cuda_fp16.h>

#include "kcommon.cuh"

#define ATT_THREADS 256
/* Shared memory a block may use (the scores need 4 bytes per position); Hopper allows 227 KB. */
#define ATT_MAX_SMEM (200 * 1024)

static __device__ __forceinline__ float att_dot(const float *q, const __half *k, int hd)
{
    float s = 0.0f;
    if ((hd & 7) == 0) {
        const uint4 *kv = (const uint4 *)k;
        for (int c = 0; c < hd / 8; c++) {
            const uint4 u = kv[c];
            const __half2 *h = (const __half2 *)&u;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const float2 f = __half22float2(h[j]);
                s += q[8 * c + 2 * j] * f.x + q[8 * c + 2 * j + 1] * f.y;
            }
        }
    } else {
        for (int d = 0; d < hd; d++)
            s += q[d] * __half2float(k[d]);
    }
    return s;
}

static __global__ void __launch_bounds__(ATT_THREADS) k_attention(struct nvl_k_attention a)
{
    extern __shared__ float sm[];
    __shared__ double dscratch[32];
    __shared__ float fscratch[32];
    k_pdl_wait();
    k_pdl_launch();
    const int h = blockIdx.x, t = blockIdx.y, hd = a.head_dim;
    const int kvd = a.n_head_kv * hd, qd = a.n_head * hd;
    const int kvh = h / (a.n_head / a.n_head_kv);
    const int n_kv = *a.pos0 + t + 1;
    float *part = sm;                /* [4 * ATT_THREADS] output partials (16-byte aligned) */
    float *q = sm + 4 * ATT_THREADS; /* [hd] */
    float *sc = q + hd;              /* [n_kv] scores */

    for (int d = threadIdx.x; d < hd; d += blockDim.x)
        q[d] = a.q[(size_t)t * qd + (size_t)h * hd + d];
    __syncthreads();

    const float scale = 1.0f / sqrtf((float)hd);
    const __half *kc = (const __half *)a.k_cache + (size_t)kvh * hd;
    float mx = -INFINITY;
    for (int p = threadIdx.x; p < n_kv; p += blockDim.x) {
        const float s = scale * att_dot(q, kc + (size_t)p * kvd, hd);
        sc[p] = s;
        mx = fmaxf(mx, s);
    }
    mx = k_block_max(mx, fscratch);
    double sum = 0.0;
    for (int p = threadIdx.x; p < n_kv; p += blockDim.x) {
        const float e = expf(sc[p] - mx);
        sc[p] = e;
        sum += e;
    }
    sum = k_block_sum_double(sum, dscratch);
    const float inv = (float)(1.0 / sum);
    for (int p = threadIdx.x; p < n_kv; p += blockDim.x)
        sc[p] *= inv;
    __syncthreads();

    if ((hd & 3) == 0) {
        /* hd / 4 threads cover a value row with 8-byte loads; the other threads of the block
         * take other positions (groups), 4 in flight each. */
        const int lanes = hd / 4, groups = ATT_THREADS / lanes;
        const int g = threadIdx.x / lanes, d4 = threadIdx.x % lanes;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (g < groups) {
            const __half *vc = (const __half *)a.v_cache + (size_t)kvh * hd + 4 * d4;
#pragma unroll 4
            for (int p = g; p < n_kv; p += groups) {
                const uint2 raw = *(const uint2 *)(vc + (size_t)p * kvd);
                const float2 v01 = __half22float2(*(const __half2 *)&raw.x);
                const float2 v23 = __half22float2(*(const __half2 *)&raw.y);
                const float s = sc[p];
                acc.x += s * v01.x;
                acc.y += s * v01.y;
                acc.z += s * v23.x;
                acc.w += s * v23.y;
            }
        }
        ((float4 *)part)[threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.x < hd) {
            const int d = threadIdx.x;
            float o = part[(d / 4) * 4 + (d & 3)];
            for (int j = 1; j < groups; j++)
                o += part[(j * lanes + d / 4) * 4 + (d & 3)];
            a.out[(size_t)t * qd + (size_t)h * hd + d] = o;
        }
        return;
    }
    const int groups = ATT_THREADS / hd;
    const int g = threadIdx.x / hd, d = threadIdx.x % hd;
    float acc = 0.0f;
    if (g < groups) {
        const __half *vc = (const __half *)a.v_cache + (size_t)kvh * hd + d;
#pragma unroll 4
        for (int p = g; p < n_kv; p += groups)
            acc += sc[p] * __half2float(vc[(size_t)p * kvd]);
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.x < hd) {
        float o = part[threadIdx.x];
        for (int j = 1; j < groups; j++)
            o += part[j * hd + threadIdx.x];
        a.out[(size_t)t * qd + (size_t)h * hd + threadIdx.x] = o;
    }
}

static size_t att_smem(int32_t head_dim, int32_t n_ctx)
{
    return ((size_t)head_dim + 4 * ATT_THREADS + (size_t)n_ctx) * sizeof(float);
}

extern "C" int32_t nvl__k_attention_max_ctx(void)
{
    return (int32_t)(ATT_MAX_SMEM / sizeof(float)) - 5 * ATT_THREADS;
}

extern "C" int nvl__k_attention(const struct nvl_k_attention *a, cudaStream_t stream)
{
    if (a->n_tok < 1 || a->n_head < 1 || a->n_head_kv < 1 || a->n_head % a->n_head_kv ||
        a->head_dim < 1 || a->head_dim > ATT_THREADS || a->n_ctx < 1 ||
        a->n_ctx > nvl__k_attention_max_ctx())
        return -EINVAL;
    const int prc = nvl__k_attention_prefill(a, stream);
    if (prc != -ENOTSUP)
        return prc;
    const size_t smem = att_smem(a->head_dim, a->n_ctx);
    if (smem > 48 * 1024 &&
        cudaFuncSetAttribute(k_attention, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) !=
            cudaSuccess)
        return nvl__k_launch_check("attention (shared memory)");
    return k_launch("attention", k_attention, dim3((unsigned)a->n_head, (unsigned)a->n_tok),
                    dim3(ATT_THREADS), smem, stream, *a);
}
