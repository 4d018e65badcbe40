/* Causal attention over the fp16 KV cache, one block per (query head, token).
 *
 * Scores: thread i takes positions i, i + 256, ...: the dot of q with the key row (16-byte loads
 * when the head size allows), times 1 / sqrt(head_dim). Softmax as the CPU (cpu_ops.c): max,
 * expf(s - max), the sum in double, then p * (float)(1 / sum). Output: the block is split into
 * G = 256 / head_dim groups; group g sums p * v over positions g, g + G, ... for its dimension,
 * and the groups' partials are added in group order. Deterministic, no atomics.
 *
 * nvl__k_rope_attention() also does k_rope_kv's work inside the same launch for a single token
 * (decode): one launch a layer fewer on the path where each launch costs microseconds. */
#include <errno.h>

#include <cuda_fp16.h>

#include "kcommon.cuh"

#define ATT_THREADS 256
/* Shared memory a block may use (the scores need 4 bytes per position); Hopper allows 227 KB. */
#define ATT_MAX_SMEM (200 * 1024)

/* The dot of q (fp32, shared memory) with one fp16 key row: the row's 16-byte loads are all
 * issued before the first product (one load then its products, hd / 8 times, put that many
 * memory latencies in a row on every position), the products then added in the same order. */
static __device__ __forceinline__ float att_dot(const float *q, const __half *k, int hd)
{
    float s = 0.0f;
    if ((hd & 7) == 0) {
        constexpr int CH = 16; /* 16-byte pieces loaded at once: a 128-dimension key */
        const uint4 *kv = (const uint4 *)k;
        for (int c0 = 0; c0 < hd / 8; c0 += CH) {
            uint4 u[CH];
#pragma unroll
            for (int c = 0; c < CH; c++)
                if (c0 + c < hd / 8)
                    u[c] = kv[c0 + c];
#pragma unroll
            for (int c = 0; c < CH; c++) {
                if (c0 + c < hd / 8) {
                    const __half2 *h = (const __half2 *)&u[c];
                    const float *qc = q + 8 * (c0 + c);
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        const float2 f = __half22float2(h[j]);
                        s += qc[2 * j] * f.x + qc[2 * j + 1] * f.y;
                    }
                }
            }
        }
    } else {
        for (int d = 0; d < hd; d++)
            s += q[d] * __half2float(k[d]);
    }
    return s;
}

/* ROPE (one token, the decode step): the block also makes what k_rope_kv would have, through
 * the same k_rope_pair: its query head rotated, and its kv head's new key (rotated) and value
 * rounded to fp16, in shared memory (kv_new); the first query head of each kv head stores them
 * in the caches. Position *pos0 is read from kv_new, never from the cache, so no block waits for
 * another's store: the output and the caches are bit for bit those of the two kernels. */
template <bool ROPE>
static __global__ void __launch_bounds__(ATT_THREADS)
    k_attention(struct nvl_k_attention a, struct nvl_k_rope r)
{
    extern __shared__ float sm[];
    __shared__ double dscratch[32];
    __shared__ float fscratch[32];
    __shared__ __align__(16) __half kv_new[ROPE ? 2 * ATT_THREADS : 1]; /* key | value */
    k_pdl_wait();
    k_pdl_launch();
    const int h = blockIdx.x, t = blockIdx.y, hd = a.head_dim;
    const int kvd = a.n_head_kv * hd, qd = a.n_head * hd;
    const int kvh = h / (a.n_head / a.n_head_kv);
    const int n_kv = *a.pos0 + t + 1;
    float *part = sm;                /* [4 * ATT_THREADS] output partials (16-byte aligned) */
    float *q = sm + 4 * ATT_THREADS; /* [hd] */
    float *sc = q + hd;              /* [n_kv] scores */

    if (ROPE) {
        const int pos = n_kv - 1, half = hd / 2;
        const bool store = h % (a.n_head / a.n_head_kv) == 0;
        const size_t cache = (size_t)pos * kvd + (size_t)kvh * hd;
        for (int i = threadIdx.x; i < 3 * half; i += blockDim.x) {
            const int part_i = i / half, e = 2 * (i % half); /* q | k | v, dimension e */
            const float *src = part_i == 0   ? r.q + (size_t)h * hd
                               : part_i == 1 ? r.k + (size_t)kvh * hd
                                             : r.v + (size_t)kvh * hd;
            float x0 = src[e], x1 = src[e + 1];
            if (part_i < 2)
                k_rope_pair(x0, x1, e, pos, r);
            if (part_i == 0) {
                q[e] = x0;
                q[e + 1] = x1;
                continue;
            }
            const __half2 v2 = __floats2half2_rn(x0, x1);
            *(__half2 *)(kv_new + (part_i - 1) * hd + e) = v2;
            if (store)
                *(__half2 *)((part_i == 1 ? r.k_cache : r.v_cache) + cache + e) = v2;
        }
    } else {
        for (int d = threadIdx.x; d < hd; d += blockDim.x)
            q[d] = a.q[(size_t)t * qd + (size_t)h * hd + d];
    }
    __syncthreads();

    const float scale = 1.0f / sqrtf((float)hd);
    const __half *kc = (const __half *)a.k_cache + (size_t)kvh * hd;
    float mx = -INFINITY;
    for (int p = threadIdx.x; p < n_kv; p += blockDim.x) {
        const __half *key = ROPE && p == n_kv - 1 ? kv_new : kc + (size_t)p * kvd;
        const float s = scale * att_dot(q, key, hd);
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
         * take other positions (groups), 8 in flight each. */
        const int lanes = hd / 4, groups = ATT_THREADS / lanes;
        const int g = threadIdx.x / lanes, d4 = threadIdx.x % lanes;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (g < groups) {
            const __half *vc = (const __half *)a.v_cache + (size_t)kvh * hd + 4 * d4;
#pragma unroll 8
            for (int p = g; p < n_kv; p += groups) {
                const __half *val =
                    ROPE && p == n_kv - 1 ? kv_new + hd + 4 * d4 : vc + (size_t)p * kvd;
                const uint2 raw = *(const uint2 *)val;
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
#pragma unroll 8
        for (int p = g; p < n_kv; p += groups)
            acc +=
                sc[p] * __half2float(ROPE && p == n_kv - 1 ? kv_new[hd + d] : vc[(size_t)p * kvd]);
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

static bool att_args_ok(const struct nvl_k_attention *a)
{
    return a->n_tok >= 1 && a->n_head >= 1 && a->n_head_kv >= 1 && a->n_head % a->n_head_kv == 0 &&
           a->head_dim >= 1 && a->head_dim <= ATT_THREADS && a->n_ctx >= 1 &&
           a->n_ctx <= nvl__k_attention_max_ctx();
}

template <bool ROPE>
static int att_launch(const struct nvl_k_attention *a, const struct nvl_k_rope *r,
                      cudaStream_t stream)
{
    const size_t smem = att_smem(a->head_dim, a->n_ctx);
    if (smem > 48 * 1024 &&
        cudaFuncSetAttribute(k_attention<ROPE>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)smem) != cudaSuccess)
        return nvl__k_launch_check("attention (shared memory)");
    return k_launch("attention", k_attention<ROPE>, dim3((unsigned)a->n_head, (unsigned)a->n_tok),
                    dim3(ATT_THREADS), smem, stream, *a, *r);
}

extern "C" int nvl__k_attention(const struct nvl_k_attention *a, cudaStream_t stream)
{
    if (!att_args_ok(a))
        return -EINVAL;
    const int prc = nvl__k_attention_prefill(a, stream);
    if (prc != -ENOTSUP)
        return prc;
    const struct nvl_k_rope none = {};
    return att_launch<false>(a, &none, stream);
}

extern "C" int nvl__k_rope_attention(const struct nvl_k_rope *r, const struct nvl_k_attention *a,
                                     cudaStream_t stream)
{
    /* The two must describe one step: the query rotated is the one attended with, into the
     * caches read, at the same positions. */
    if (!att_args_ok(a) || r->n_tok != a->n_tok || r->q != a->q || r->pos0 != a->pos0 ||
        r->k_cache != a->k_cache || r->v_cache != a->v_cache || r->n_head != a->n_head ||
        r->n_head_kv != a->n_head_kv || r->head_dim != a->head_dim)
        return -EINVAL;
    if (a->n_tok > 1 || a->head_dim % 2 || r->n_rot > r->head_dim || r->n_rot % 2) {
        const int rc = nvl__k_rope_kv(r, stream);
        return rc ? rc : nvl__k_attention(a, stream);
    }
    return att_launch<true>(a, r, stream);
}
