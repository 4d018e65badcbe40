/* Token selection on the GPU: argmax (greedy) and top-k / top-p / min-p / temperature sampling
 * in the CPU sampler's order (sampler.c), one block of 1024 threads.
 *
 * Top-k: a 4-pass radix select on order-preserving 32-bit keys of the logits finds the k-th
 * largest key T; every logit above T is a candidate, and of those equal to T the ones with the
 * smallest ids fill the rest (the CPU's tie order), picked by a block scan in index order. The k
 * candidates are bitonic-sorted by (logit descending, id ascending); the cuts and the draw then
 * follow the CPU's arithmetic (expf per candidate, sums in double, in candidate order). */
#include <errno.h>
#include <limits.h>

#include "kcommon.cuh"

#define SMP_THREADS 1024
#define SMP_MAX_K   1024
/* Logits each thread loads before using the first, in the passes over all n: one block walks
 * 128K logits, so a load-then-use loop would be ~125 memory latencies in a row per pass. */
#define SMP_AHEAD 8

static __device__ __forceinline__ uint32_t smp_key(float f)
{
    const uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* a before b in the CPU's candidate order. */
static __device__ __forceinline__ bool smp_before(float la, int ia, float lb, int ib)
{
    return la > lb || (la == lb && ia < ib);
}

/* The index of the largest of x[0..n) (the first one on ties), for thread 0 of the block. */
static __device__ __forceinline__ int smp_argmax(const float *__restrict__ x, int32_t n)
{
    __shared__ float sv[32];
    __shared__ int si[32];
    float best = -INFINITY;
    int bi = INT_MAX;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = x[i];
        if (bi == INT_MAX || v > best) { /* i only grows: the first of equals stays */
            best = v;
            bi = i;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi != INT_MAX && (bi == INT_MAX || ov > best || (ov == best && oi < bi))) {
            best = ov;
            bi = oi;
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sv[warp] = best;
        si[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++)
            if (si[w] != INT_MAX &&
                (bi == INT_MAX || sv[w] > best || (sv[w] == best && si[w] < bi))) {
                best = sv[w];
                bi = si[w];
            }
    }
    return bi;
}

static __global__ void __launch_bounds__(SMP_THREADS)
    k_argmax(const float *__restrict__ x, int32_t n, int32_t *out)
{
    const int bi = smp_argmax(x, n);
    if (threadIdx.x == 0)
        *out = bi;
}

/* The decode loop's feedback (one thread): the token picked becomes the next pass's input, the
 * position advances, and the token is published to the host (the token first, then, after a
 * system-wide fence, the count that makes it visible). */
static __device__ void smp_feed(const struct nvl_k_feed &f, int token)
{
    const int32_t i = *f.count;
    f.ids[0] = token;
    *f.pos += 1;
    f.ring[i & f.ring_mask] = token;
    __threadfence_system();
    f.ring[f.ring_mask + 1] = i + 1;
    *f.count = i + 1;
}

static __global__ void __launch_bounds__(SMP_THREADS)
    k_argmax_feed(const float *__restrict__ x, int32_t n, struct nvl_k_feed f)
{
    const int bi = smp_argmax(x, n);
    if (threadIdx.x == 0)
        smp_feed(f, bi);
}

struct smp_shared {
    unsigned hist[256];
    float cl[SMP_MAX_K]; /* candidate logits */
    int ci[SMP_MAX_K];   /* candidate ids */
    float cp[SMP_MAX_K]; /* candidate probabilities */
    unsigned warp_cnt[2][32];
    unsigned prefix, remaining;
    double sum;
    int n;
};

/* Fills cp[0..n) with softmax(cl / temp) as the CPU's cand_softmax and returns the maximum
 * probability (to every thread). cl[0] is the largest logit (the list is sorted). */
static __device__ float smp_softmax(struct smp_shared *s, int n, float temp)
{
    const float mx = s->cl[0];
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s->cp[i] = expf((s->cl[i] - mx) / temp);
    __syncthreads();
    if (threadIdx.x == 0) {
        double sum = 0.0;
        for (int i = 0; i < n; i++)
            sum += s->cp[i];
        s->sum = sum;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s->cp[i] = (float)(s->cp[i] / s->sum);
    __syncthreads();
    float pmax = 0.0f;
    for (int i = 0; i < n; i++) /* the CPU's loop; n <= 1024, read by all threads */
        pmax = s->cp[i] > pmax ? s->cp[i] : pmax;
    return pmax;
}

/* FEED: the decode loop's sampling step; the parameters and this token's draw are read from the
 * host-mapped memory f names (so one captured graph serves any parameters), and the token goes
 * to smp_feed instead of *out. */
template <bool FEED>
static __global__ void __launch_bounds__(SMP_THREADS)
    k_sample(const float *__restrict__ logits, int32_t n, struct nvl_k_sample p, int32_t *out,
             struct nvl_k_feed f)
{
    __shared__ struct smp_shared s;
    __shared__ struct nvl_k_sample fp;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    if (FEED) {
        if (tid == 0) {
            fp.top_k = f.sample->top_k;
            fp.top_p = f.sample->top_p;
            fp.min_p = f.sample->min_p;
            fp.temperature = f.sample->temperature;
            fp.u = f.draws[*f.count & f.ring_mask];
        }
        __syncthreads();
        p = fp;
    }
    const int k = p.top_k;

    /* 1. Radix select of the k-th largest key, 8 bits per pass from the top. */
    uint32_t prefix = 0, mask = 0;
    if (tid == 0)
        s.remaining = (unsigned)k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = tid; i < 256; i += blockDim.x)
            s.hist[i] = 0;
        __syncthreads();
        /* Logits cluster in a few bins of the top byte: the lanes of a warp that share a bin
         * add once, their count (one shared atomic per bin per warp, not per lane). */
        for (int base = warp * 32; base < n; base += SMP_AHEAD * blockDim.x) {
            uint32_t key[SMP_AHEAD];
#pragma unroll
            for (int j = 0; j < SMP_AHEAD; j++) {
                const int i = base + j * blockDim.x + lane;
                key[j] = i < n ? smp_key(logits[i]) : 0u;
            }
#pragma unroll
            for (int j = 0; j < SMP_AHEAD; j++) {
                const int i = base + j * blockDim.x + lane;
                const bool live = i < n && (key[j] & mask) == prefix;
                const unsigned bin = live ? (key[j] >> shift) & 255u : 256u;
                const unsigned peers = __match_any_sync(0xffffffffu, bin);
                if (live && lane == __ffs(peers) - 1)
                    atomicAdd(&s.hist[bin], (unsigned)__popc(peers));
            }
        }
        __syncthreads();
        if (tid == 0) {
            unsigned cum = 0, need = s.remaining;
            int d = 255;
            for (; d > 0; d--) {
                if (cum + s.hist[d] >= need)
                    break;
                cum += s.hist[d];
            }
            s.remaining = need - cum;
            s.prefix = prefix | ((uint32_t)d << shift);
        }
        __syncthreads();
        prefix = s.prefix;
        mask |= 255u << shift;
    }
    const uint32_t T = prefix;
    const unsigned need_eq = s.remaining; /* equal keys to take, smallest ids first */

    /* 2. Gather in index order: all keys > T, and the first need_eq keys == T. Warp w takes
     * the w-th contiguous stretch of the logits: it counts its candidates, a prefix over the
     * warps' counts places each stretch's after the earlier ones, and a second walk writes them
     * (ranks within a warp from ballots), so the order is the index order with two barriers in
     * all rather than a few per 1024 logits. */
    {
        const int nw = (int)(blockDim.x >> 5);
        const int seg = (n + nw - 1) / nw;
        const int b0 = warp * seg, b1 = min(n, b0 + seg);
        unsigned c_gt = 0, c_eq = 0;
        for (int base = b0; base < b1; base += 32 * SMP_AHEAD) {
            uint32_t key[SMP_AHEAD];
#pragma unroll
            for (int j = 0; j < SMP_AHEAD; j++) {
                const int i = base + 32 * j + lane;
                key[j] = i < b1 ? smp_key(logits[i]) : 0u;
            }
#pragma unroll
            for (int j = 0; j < SMP_AHEAD; j++) {
                const int i = base + 32 * j + lane;
                c_gt += __popc(__ballot_sync(0xffffffffu, i < b1 && key[j] > T));
                c_eq += __popc(__ballot_sync(0xffffffffu, i < b1 && key[j] == T));
            }
        }
        if (lane == 0) {
            s.warp_cnt[0][warp] = c_gt;
            s.warp_cnt[1][warp] = c_eq;
        }
        __syncthreads();
        unsigned off_gt = 0, off_eq = 0;
        for (int w = 0; w < warp; w++) {
            off_gt += s.warp_cnt[0][w];
            off_eq += s.warp_cnt[1][w];
        }
        const unsigned below = (1u << lane) - 1u;
        for (int base = b0; base < b1; base += 32 * SMP_AHEAD) {
            float v[SMP_AHEAD];
#pragma unroll
            for (int j = 0; j < SMP_AHEAD; j++) {
                const int i = base + 32 * j + lane;
                v[j] = i < b1 ? logits[i] : 0.0f;
            }
#pragma unroll
            for (int j = 0; j < SMP_AHEAD; j++) { /* in index order */
                const int i = base + 32 * j + lane;
                const uint32_t key = smp_key(v[j]);
                const bool gt = i < b1 && key > T, eq = i < b1 && key == T;
                const unsigned bgt = __ballot_sync(0xffffffffu, gt),
                               beq = __ballot_sync(0xffffffffu, eq);
                const unsigned r_gt = off_gt + __popc(bgt & below),
                               r_eq = off_eq + __popc(beq & below);
                /* Slots: the > T candidates take [0, k - need_eq); the == T ones follow. */
                if (gt) {
                    s.cl[r_gt] = v[j];
                    s.ci[r_gt] = i;
                } else if (eq && r_eq < need_eq) {
                    s.cl[(unsigned)k - need_eq + r_eq] = v[j];
                    s.ci[(unsigned)k - need_eq + r_eq] = i;
                }
                off_gt += __popc(bgt);
                off_eq += __popc(beq);
            }
        }
        __syncthreads();
    }

    /* 3. Bitonic sort of the k candidates, padded to a power of two. */
    int m = 1;
    while (m < k)
        m <<= 1;
    for (int i = k + tid; i < m; i += blockDim.x) {
        s.cl[i] = -INFINITY;
        s.ci[i] = INT_MAX;
    }
    __syncthreads();
    for (int size = 2; size <= m; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = tid; i < m; i += blockDim.x) {
                const int j = i ^ stride;
                if (j > i) {
                    const bool asc = (i & size) == 0;
                    const bool swap = asc ? smp_before(s.cl[j], s.ci[j], s.cl[i], s.ci[i])
                                          : smp_before(s.cl[i], s.ci[i], s.cl[j], s.ci[j]);
                    if (swap) {
                        const float tl = s.cl[i];
                        const int ti = s.ci[i];
                        s.cl[i] = s.cl[j];
                        s.ci[i] = s.ci[j];
                        s.cl[j] = tl;
                        s.ci[j] = ti;
                    }
                }
            }
            __syncthreads();
        }
    }

    /* 4. The CPU sampler's stages on the sorted list. */
    if (p.temperature <= 0.0f || k == 1 || s.cl[0] == -INFINITY) {
        if (tid == 0) {
            if (FEED)
                smp_feed(f, s.ci[0]);
            else
                *out = s.ci[0];
        }
        return;
    }
    int cnt = k;
    if (p.top_p < 1.0f) {
        smp_softmax(&s, cnt, 1.0f);
        if (tid == 0) {
            double cum = 0.0;
            int keep = cnt;
            for (int i = 0; i < cnt; i++) {
                cum += s.cp[i];
                if (cum >= p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            s.n = keep;
        }
        __syncthreads();
        cnt = s.n;
    }
    if (p.min_p > 0.0f) {
        const float pmax = smp_softmax(&s, cnt, 1.0f);
        const float cut = p.min_p * pmax;
        if (tid == 0) {
            int keep = 0;
            for (int i = 0; i < cnt; i++)
                if (s.cp[i] >= cut) {
                    s.cl[keep] = s.cl[i];
                    s.ci[keep] = s.ci[i];
                    keep++;
                }
            s.n = keep;
        }
        __syncthreads();
        cnt = s.n;
    }
    smp_softmax(&s, cnt, p.temperature);
    if (tid == 0) {
        double cum = 0.0;
        int pick = s.ci[cnt - 1];
        for (int i = 0; i < cnt; i++) {
            cum += s.cp[i];
            if (p.u < cum) {
                pick = s.ci[i];
                break;
            }
        }
        if (FEED)
            smp_feed(f, pick);
        else
            *out = pick;
    }
}

extern "C" int nvl__k_argmax(const float *x, int32_t n, int32_t *out, cudaStream_t stream)
{
    if (n < 1)
        return -EINVAL;
    k_argmax<<<1, SMP_THREADS, 0, stream>>>(x, n, out);
    return nvl__k_launch_check("argmax");
}

extern "C" int nvl__k_argmax_feed(const float *logits, int32_t n, const struct nvl_k_feed *f,
                                  cudaStream_t stream)
{
    if (n < 1 || !f->ids || !f->pos || !f->count || !f->ring || (f->ring_mask & (f->ring_mask + 1)))
        return -EINVAL;
    if (f->sample) {
        /* The parameters are read when the kernel runs: the caller checks top_k with
         * nvl__k_sample_supports first. */
        if (n < 2 || !f->draws)
            return -EINVAL;
        const struct nvl_k_sample unused = {};
        k_sample<true><<<1, SMP_THREADS, 0, stream>>>(logits, n, unused, NULL, *f);
        return nvl__k_launch_check("sample_feed");
    }
    k_argmax_feed<<<1, SMP_THREADS, 0, stream>>>(logits, n, *f);
    return nvl__k_launch_check("argmax_feed");
}

extern "C" bool nvl__k_sample_supports(int32_t top_k, int32_t n)
{
    return top_k >= 1 && top_k <= SMP_MAX_K && top_k < n;
}

extern "C" int nvl__k_sample(const float *logits, int32_t n, const struct nvl_k_sample *p,
                             int32_t *out, cudaStream_t stream)
{
    if (n < 2 || !(p->top_p >= 0.0f) || !(p->min_p >= 0.0f) || !(p->u >= 0.0) || !(p->u < 1.0))
        return -EINVAL;
    if (!nvl__k_sample_supports(p->top_k, n))
        return -ENOTSUP;
    const struct nvl_k_feed none = {};
    k_sample<false><<<1, SMP_THREADS, 0, stream>>>(logits, n, *p, out, none);
    return nvl__k_launch_check("sample");
}
