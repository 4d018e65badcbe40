/* CUDA kernels of the llama forward pass (private to nvl_model). One op per .cu file; each file
 * keeps its kernels static and exports C-linkage launchers declared here. A launcher takes the
 * stream it enqueues on, checks its arguments (-EINVAL), and returns 0, or -EIO after a launch
 * error (logged with CUDA's message). Nothing here synchronises; every launcher can be captured
 * into a CUDA graph.
 *
 * Numerics follow the CPU backend (cpu_ops.h) so that GPU and CPU logits differ only by float
 * summation order:
 *   - Quantized weights meet activations quantized the same way as on the CPU: 32-element blocks
 *     with an fp32 scale and the integer sum (struct nvl_k_block_q8 below) for Q4_0,
 *     Q4_1, Q5_0, Q5_1 and Q8_0, and Q8_K blocks (fp32 scale, per-16 sums) for the K-quants. The
 *     integer dot products are exact (dp4a); each block is scaled with the CPU's expression.
 *   - F32, F16 and BF16 weights are dotted with fp32 activations in fp32.
 *   - Batches of 16 tokens or more (prompt processing) dequantize the weights to fp16 tiles and
 *     multiply with cuBLAS (fp16 inputs, fp32 accumulation and output).
 * Kernels are deterministic: no atomics in any sum, and launch shapes depend only on tensor
 * shapes, never on where the bytes live, so a layer computes bit-identical results from VRAM
 * that it was uploaded to and from a buffer it was streamed into. */
#ifndef NVL_MODEL_KERNELS_H
#define NVL_MODEL_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "nvl_model/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Activation formats of the matrix-vector kernels. */
enum nvl_k_act {
    NVL_K_ACT_F32 = 0, /* fp32 rows, for F32/F16/BF16 weights */
    NVL_K_ACT_Q8 = 1,  /* struct nvl_k_block_q8 (32 elements), for the legacy formats */
    NVL_K_ACT_Q8K = 2, /* struct nvl_block_q8_K (256 elements), for the K-quants */
};

/* A 32-element activation block: x[i] ~= d * qs[i], sum = the sum of qs (which turns Q4_0's
 * offset and Q4_1's min into one multiply per block). The values are the CPU's (cpu_ops.c
 * quantizes the same way); the layout is the GPU's own. */
struct nvl_k_block_q8 {
    float d;
    int32_t sum;
    int8_t qs[32];
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_k_block_q8) == 40, "nvl_k_block_q8");

/* True when the GPU kernels can multiply with weights of this type: F32, F16, BF16, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. */
bool nvl__k_type_supported(enum nvl_ggml_type type);
/* The activation format a weight type is multiplied with. */
enum nvl_k_act nvl__k_act_for(enum nvl_ggml_type type);
/* Bytes of one activation row of k elements in format act (k a multiple of its block). */
size_t nvl__k_act_row_bytes(enum nvl_k_act act, int64_t k);

/* Quantizes n_tok rows of k floats (x_stride floats apart) into format act, rows
 * nvl__k_act_row_bytes() apart at dst. F32 copies. Same rounding as the CPU (round to nearest
 * even of x / (amax / 127)). */
int nvl__k_quantize(enum nvl_k_act act, const float *x, size_t x_stride, int32_t n_tok, int64_t k,
                    void *dst, cudaStream_t stream);

/* Where the matrix-vector kernel takes its activations from (decode fusions: a kernel that only
 * normalizes or quantizes a 4096-element row costs a launch and a trip through memory, ~4-10 us,
 * as long as a small product). With NVL_K_MV_IN_F32 or NVL_K_MV_IN_RMSNORM every block makes the
 * quantized rows itself from fp32 x in its prologue, bit for bit what nvl__k_quantize() and
 * nvl__k_rmsnorm_quantize() (run with 8 warps per block) would have written. Only for weight
 * types whose activations are quantized (nvl__k_act_for() != NVL_K_ACT_F32). */
enum nvl_k_mv_in {
    NVL_K_MV_IN_READY = 0, /* x: rows already in nvl__k_act_for(type) format */
    NVL_K_MV_IN_F32,       /* x: fp32 rows, quantized in the prologue */
    NVL_K_MV_IN_RMSNORM,   /* x: fp32 rows, RMS-normalized (norm, eps) and quantized */
};

/* One product y = W x (or y += W x) for n_tok activation rows. */
struct nvl_k_matmul {
    const void *w; /* rows of the weight, row_bytes apart, in device-visible memory */
    enum nvl_ggml_type type;
    uint64_t row_bytes;
    int64_t k;       /* elements per row */
    int64_t rows;    /* outputs per token */
    const void *x;   /* n_tok activation rows in nvl__k_act_for(type) format, */
    size_t x_stride; /*   x_stride bytes apart */
    float *y;        /* [n_tok][y_stride] outputs */
    size_t y_stride; /* floats */
    int32_t n_tok;
    bool accumulate;     /* y += W x */
    enum nvl_k_mv_in in; /* matrix-vector kernels only; zero: x is ready */
    const float *norm;   /* NVL_K_MV_IN_RMSNORM: the gain, k floats */
    float eps;           /* NVL_K_MV_IN_RMSNORM */
};

/* Fused dequantize + matrix-vector product (decode, and batches too small for a GEMM). The
 * weight is read once per group of up to 4 tokens. */
int nvl__k_matvec(const struct nvl_k_matmul *mm, cudaStream_t stream);
/* Up to NVL_K_MV_GROUP products in one launch (Q/K/V, gate/up): the same type, row length,
 * input and token count, each with its own weight, rows and output. */
#define NVL_K_MV_GROUP 3
int nvl__k_matvec_group(const struct nvl_k_matmul *mm, int n, cudaStream_t stream);
/* The gate and up products of a feed-forward block (a group of two, equal row counts, not
 * accumulating) with SwiGLU in the same launch: gate_up[0].y receives silu(gate) * up, bit for
 * bit what nvl__k_matvec_group() then nvl__k_swiglu() would leave there; gate_up[1].y is not
 * written. One warp makes both products of a row, so no other launch is needed between them. */
int nvl__k_matvec_swiglu(const struct nvl_k_matmul *gate_up, cudaStream_t stream);

/* Dequantizes rows [0, rows) of k elements (row_bytes apart) to fp16 (dst_f16) or fp32, rows of k
 * elements back to back at dst. */
int nvl__k_dequant(enum nvl_ggml_type type, const void *src, uint64_t row_bytes, int64_t rows,
                   int64_t k, void *dst, bool dst_f16, cudaStream_t stream);

/* Embedding lookup: dst[t] = dequantized row ids[t] of table, for t < n (ids in device memory,
 * checked by the caller). */
int nvl__k_get_rows(enum nvl_ggml_type type, const void *table, uint64_t row_bytes, int64_t k,
                    const int32_t *ids, int32_t n, float *dst, cudaStream_t stream);

/* Batched products through cuBLAS: W is dequantized to fp16 in row chunks (at most
 * scratch_bytes of them at a time) and multiplied with x converted to fp16. */
struct nvl_k_gemm;
int nvl__k_gemm_create(size_t scratch_bytes, struct nvl_k_gemm **out);
void nvl__k_gemm_destroy(struct nvl_k_gemm *g);
/* Bytes of VRAM the GEMM context holds for a model whose widest row has max_k elements and
 * whose batches hold up to max_tok tokens (for placement budgets). */
size_t nvl__k_gemm_vram_bytes(size_t scratch_bytes, int64_t max_k, int32_t max_tok);
/* mm->x is n_tok rows of fp32 (x_stride bytes apart), not quantized. */
int nvl__k_gemm(struct nvl_k_gemm *g, const struct nvl_k_matmul *mm, cudaStream_t stream);
/* n products that share their activations (the same x, x_stride, n_tok and k; each its own weight,
 * type, rows and output): x is converted to fp16 once for all of them. */
int nvl__k_gemm_group(struct nvl_k_gemm *g, const struct nvl_k_matmul *mm, int n,
                      cudaStream_t stream);

/* y = x / sqrt(mean(x^2) + eps) * g for n_tok rows of n (rows n apart); the sum of squares is
 * accumulated in double, as on the CPU. */
int nvl__k_rmsnorm(const float *x, const float *g, float *y, int64_t n, int32_t n_tok, float eps,
                   cudaStream_t stream);
/* The same, and with act != NVL_K_ACT_F32 the output also quantized into q (rows
 * nvl__k_act_row_bytes(act, n) apart), bit-identical to nvl__k_quantize() of y. */
int nvl__k_rmsnorm_quantize(const float *x, const float *g, float *y, int64_t n, int32_t n_tok,
                            float eps, enum nvl_k_act act, void *q, cudaStream_t stream);

/* RoPE and the KV cache store for a batch at positions *pos0 .. *pos0 + n_tok - 1 (pos0 in device
 * memory, so a captured graph runs at any position). Rotates q ([n_tok][n_head * head_dim]) in
 * place, rotates k ([n_tok][kv_dim]) and writes k and v as fp16 into k_cache and v_cache rows
 * *pos0 + t ([n_ctx][kv_dim], one layer). The angles are the CPU's: theta = pos * freq_scale,
 * multiplied by theta_scale from pair to pair, divided by freq_factors[i] when given. */
struct nvl_k_rope {
    float *q;
    const float *k;
    const float *v;
    uint16_t *k_cache;
    uint16_t *v_cache;
    const int32_t *pos0;
    int32_t n_tok;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t n_rot;
    float freq_scale;
    float theta_scale;         /* powf(freq_base, -2 / n_rot), computed by the caller */
    const float *freq_factors; /* [n_rot / 2] or NULL */
};
int nvl__k_rope_kv(const struct nvl_k_rope *r, cudaStream_t stream);

/* Causal attention for n_tok queries at positions *pos0 + t over the fp16 cache of one layer:
 * out[t][h] = softmax(q[t][h] . K[0..pos]^T / sqrt(head_dim)) V[0..pos], with query head h
 * reading kv head h / (n_head / n_head_kv). n_ctx bounds the positions (and the shared memory
 * of the scores). */
struct nvl_k_attention {
    const float *q;
    const uint16_t *k_cache;
    const uint16_t *v_cache;
    float *out;
    const int32_t *pos0;
    int32_t n_tok;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t n_ctx;
};
int nvl__k_attention(const struct nvl_k_attention *a, cudaStream_t stream);
/* The same for batches (attention_prefill.cu; nvl__k_attention() dispatches to it): query tiles
 * against key tiles in shared memory on the tensor cores, q and the probabilities rounded to fp16
 * (an error of about 1e-3 of sum p |v|), softmax in fp32. -ENOTSUP where it does not apply
 * (n_tok < 16, head_dim not 64 or 128, misaligned rows, compute capability below 8.0). */
int nvl__k_attention_prefill(const struct nvl_k_attention *a, cudaStream_t stream);
/* RoPE, the KV store and attention of one step: nvl__k_rope_kv(r) then nvl__k_attention(a), in
 * one launch for a single token (bit for bit the same output and caches). r and a must name the
 * same q, caches, positions and heads (-EINVAL otherwise). */
int nvl__k_rope_attention(const struct nvl_k_rope *r, const struct nvl_k_attention *a,
                          cudaStream_t stream);
/* Largest n_ctx nvl__k_attention() supports on this device (shared memory for the scores). */
int32_t nvl__k_attention_max_ctx(void);

/* g[i] = silu(g[i]) * u[i] for n elements. */
int nvl__k_swiglu(float *g, const float *u, int64_t n, cudaStream_t stream);
/* SwiGLU over n_tok rows of n, and with act != NVL_K_ACT_F32 the result also quantized into q
 * (as nvl__k_quantize() of g would). */
int nvl__k_swiglu_quantize(float *g, const float *u, int64_t n, int32_t n_tok, enum nvl_k_act act,
                           void *q, cudaStream_t stream);

/* Index of the largest of n values (the first one on ties) into *out. */
int nvl__k_argmax(const float *x, int32_t n, int32_t *out, cudaStream_t stream);

/* Top-k / top-p / min-p / temperature sampling of n logits, the CPU sampler's stages and order
 * (sampler.h) without the repetition penalty: the top_k candidates (1 <= top_k <= 1024, ties to
 * the smaller id) sorted by logit, cut by top_p and min_p at temperature 1, softmax at
 * `temperature`, then the first candidate whose cumulative probability exceeds u (the uniform
 * number in [0, 1) the CPU sampler would draw). top_k must be below n: the CPU sampler keeps
 * index order, not logit order, when top-k cuts nothing. -ENOTSUP for what this kernel does not
 * do (top_k outside [1, min(1024, n - 1)]). */
struct nvl_k_sample {
    int32_t top_k;
    float top_p;
    float min_p;
    float temperature;
    double u;
};
int nvl__k_sample(const float *logits, int32_t n, const struct nvl_k_sample *p, int32_t *out,
                  cudaStream_t stream);
/* Whether the sampling kernel does top_k over n logits (what nvl__k_sample refuses with
 * -ENOTSUP otherwise; the decode loop's caller checks it before its parameters go to the GPU). */
bool nvl__k_sample_supports(int32_t top_k, int32_t n);

/* Decoding on the GPU (nvl__k_argmax_feed): the argmax (or the sample) of the pass's logits goes to
 * ids[0] as the next pass's token, *pos advances by one, and the token is published to the host
 * in ring (host-mapped memory: ring[count & ring_mask] = token, then ring[ring_mask + 1] = the
 * new count, after a system-wide fence), so the CPU can queue passes ahead of the GPU and read
 * the tokens as they come. ring_mask + 1 is a power of two. */
struct nvl_k_feed {
    int32_t *ids;
    int32_t *pos;
    int32_t *count; /* tokens chosen so far (device memory) */
    volatile int32_t *ring;
    int32_t ring_mask;
    /* Sampling instead of argmax (nvl__k_sample's stages): the parameters (u unused) and the
     * draws, draws[count & ring_mask] for the token being picked, both host-mapped and read when
     * the kernel runs, so one captured graph serves any parameters. NULL: argmax. */
    const volatile struct nvl_k_sample *sample;
    const volatile double *draws;
};
int nvl__k_argmax_feed(const float *logits, int32_t n, const struct nvl_k_feed *f,
                       cudaStream_t stream);

/* Programmatic dependent launch (Hopper): while on for the calling thread, the decode kernels
 * are launched so that each may start before the one ahead of it in the stream has finished. A
 * kernel so launched touches nothing its predecessors write before griddepcontrol.wait; the
 * matrix-vector kernels prefetch their (immutable) weights before it. For a stream whose weights
 * do not change under it, i.e. a captured pass over resident layers; off by default. */
void nvl__k_set_pdl(bool on);
bool nvl__k_pdl(void);

/* Element-wise y = x (fp32 -> fp16), for tests and the GEMM's activations. */
int nvl__k_f32_to_f16(const float *x, uint16_t *y, int64_t n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
