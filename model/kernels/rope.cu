/* RoPE (adjacent pairs, the layout llama GGUF files hold) and the fp16 KV cache store. One thread
 * per pair of q, k or v elements of one token; the angles are k_rope_pair's (the CPU's). A
 * single-token decode step takes the fused kernel in attention.cu instead. */
#include <errno.h>

#include <cuda_fp16.h>

#include "kcommon.cuh"

static __global__ void k_rope_kv(struct nvl_k_rope r)
{
    k_pdl_wait();
    k_pdl_launch();
    const int qd = r.n_head * r.head_dim, kvd = r.n_head_kv * r.head_dim;
    const int pairs = (qd + 2 * kvd) / 2;
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= (int64_t)r.n_tok * pairs)
        return;
    const int t = (int)(gid / pairs);
    int e = 2 * (int)(gid % pairs); /* element index in q | k | v */
    const int pos = *r.pos0 + t;
    const size_t cache_row = (size_t)pos * (size_t)kvd;

    if (e >= qd + kvd) { /* v: stored as is */
        e -= qd + kvd;
        const float *v = r.v + (size_t)t * kvd + e;
        *(__half2 *)(r.v_cache + cache_row + e) = __floats2half2_rn(v[0], v[1]);
        return;
    }
    const bool is_q = e < qd;
    if (!is_q)
        e -= qd;
    const int i = e % r.head_dim; /* dimension within the head */
    const float *src = is_q ? r.q + (size_t)t * qd + e : r.k + (size_t)t * kvd + e;
    float x0 = src[0], x1 = src[1];
    k_rope_pair(x0, x1, i, pos, r);
    if (is_q) {
        float *q = r.q + (size_t)t * qd + e;
        q[0] = x0;
        q[1] = x1;
    } else {
        *(__half2 *)(r.k_cache + cache_row + e) = __floats2half2_rn(x0, x1);
    }
}

extern "C" int nvl__k_rope_kv(const struct nvl_k_rope *r, cudaStream_t stream)
{
    if (r->n_tok < 1 || r->n_head < 1 || r->n_head_kv < 1 || r->head_dim < 2 || r->head_dim % 2 ||
        r->n_rot > r->head_dim || r->n_rot % 2)
        return -EINVAL;
    const int64_t pairs =
        (int64_t)r->n_tok * ((int64_t)(r->n_head + 2 * r->n_head_kv) * r->head_dim / 2);
    return k_launch("rope_kv", k_rope_kv, dim3(k_blocks(pairs, K_THREADS)), dim3(K_THREADS), 0,
                    stream, *r);
}
