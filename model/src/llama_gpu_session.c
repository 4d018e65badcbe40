/* GPU backend, session side: the forward pass of the llama family on the GPU, kernel for kernel
 * the CPU's (llama_session.c), with the KV cache (fp16) and all activations in VRAM.
 *
 * Per layer: RMSNorm -> Q/K/V products (the normed activations quantized once per format) ->
 * RoPE + KV store -> attention -> output product accumulated into the residual -> RMSNorm ->
 * gate/up products -> SwiGLU -> down product accumulated into the residual. Batches of
 * GPU_GEMM_MIN_TOK tokens or more run the products through cuBLAS, smaller ones through the
 * fused dequantize + matrix-vector kernels, where RMSNorm runs in the products' prologues, RoPE
 * in the attention launch (one token) and SwiGLU in the gate/up launch: five launches a layer,
 * each giving the separate kernels' bits. A single-token pass over a model whose layers are all
 * in VRAM is captured once as a CUDA graph and replayed (the position and the token id live in
 * device memory); with the greedy argmax after it, the graph also drives nvl_session_greedy's
 * loop, in which the GPU feeds each token to the next pass itself. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llama_gpu.h"
#include "nvl_driver/log.h"

#ifdef NVL_HAVE_CUDA

#include "kernels.h"

#define GPU_LOG          "gpu"
#define GPU_GEMM_MIN_TOK 16
#define GPU_LOGITS_ROWS  32            /* output rows per product: bounds the logits buffer */
#define GPU_GEMM_SCRATCH (64ull << 20) /* fp16 weight rows per cuBLAS call */
#define GPU_RING         64            /* tokens the greedy loop's ring holds (a power of two) */
#define GPU_AHEAD        4             /* greedy passes queued ahead of the token read back */

struct nvl_gpu_session {
    struct nvl_gpu_model *gm;
    const struct nvl_llama_hparams *hp;
    int32_t n_ctx;
    int32_t n_batch;
    cudaStream_t stream;
    uint16_t *k_cache; /* [n_layer][n_ctx][kv_dim] */
    uint16_t *v_cache;
    float *x, *xn, *q, *k, *v, *att, *gate, *up; /* [n_batch][...] */
    void *act[3];     /* quantized activations per format (enum nvl_k_act) */
    float *logits;    /* [GPU_LOGITS_ROWS][n_vocab] */
    int32_t *ids;     /* [n_batch] token ids */
    int32_t *pos;     /* the batch's first position */
    int32_t *h_in;    /* pinned staging: [n_batch] ids, then the position */
    float *h_logits;  /* pinned staging: [GPU_LOGITS_ROWS][n_vocab] */
    cudaEvent_t done; /* end of a forward pass's work */
    struct nvl_k_gemm *gemm;
    float theta_scale;
    cudaGraphExec_t graph; /* single-token pass, when every layer is in VRAM */
    bool graph_failed;
    /* Fused decode steps (RoPE in attention, SwiGLU in the gate/up product): the same bits as
     * the separate kernels, fewer launches. NVL_GPU_FUSE=0 takes the separate kernels, for
     * comparison (test_gpu_forward checks both give the same logits). */
    bool fuse;
    /* Decoding with the GPU picking the tokens (nvl__gpu_session_decode): a pass and the argmax
     * or sample that feeds it its next token, as one graph; tokens come back through a
     * host-mapped ring. */
    cudaGraphExec_t step_graph[2]; /* [0] argmax, [1] sampling */
    int32_t *count;                /* device: tokens picked in this run */
    volatile int32_t *ring;        /* host-mapped: [GPU_RING] tokens, then the published count */
    volatile struct nvl_k_sample *sample; /* host-mapped: the sampling loop's parameters */
    volatile double *draws;               /* host-mapped: [GPU_RING] its draws */
};

struct gs_dims {
    size_t e, qd, kvd, ff, max_k;
};

static struct gs_dims dims(const struct nvl_llama_hparams *hp)
{
    struct gs_dims d = {
        .e = (size_t)hp->n_embd,
        .qd = (size_t)hp->n_head * (size_t)hp->head_dim,
        .kvd = (size_t)hp->n_head_kv * (size_t)hp->head_dim,
        .ff = (size_t)hp->n_ff,
    };
    d.max_k = d.e > d.ff ? (d.e > d.qd ? d.e : d.qd) : (d.ff > d.qd ? d.ff : d.qd);
    return d;
}

/* A switch set to "0" in the environment (NVL_GPU_GRAPHS, NVL_GPU_PDL, NVL_GPU_FUSE). */
static bool env_off(const char *name)
{
    const char *v = getenv(name);
    return v && strcmp(v, "0") == 0;
}

uint64_t nvl__gpu_session_vram_bytes(const struct nvl_llama_hparams *hp, int32_t n_ctx,
                                     int32_t n_batch)
{
    const struct gs_dims d = dims(hp);
    const uint64_t B = (uint64_t)n_batch;
    uint64_t b = 2ull * (uint64_t)hp->n_layer * (uint64_t)n_ctx * d.kvd * sizeof(uint16_t);
    b += B * (2 * d.e + 2 * d.qd + 2 * d.kvd + 2 * d.ff) * sizeof(float);
    b += B * d.max_k * 3; /* the two quantized activation formats (fp32 rows are used as is) */
    b += (uint64_t)GPU_LOGITS_ROWS * (uint64_t)hp->n_vocab * sizeof(float);
    b += nvl__k_gemm_vram_bytes(GPU_GEMM_SCRATCH, (int64_t)d.max_k, n_batch);
    return b;
}

int nvl__gpu_session_create(struct nvl_gpu_model *gm, int32_t n_ctx, int32_t n_batch,
                            struct nvl_gpu_session **out)
{
    *out = NULL;
    const struct nvl_llama_hparams *hp = gm->hp;
    if (n_ctx < 1 || n_ctx > nvl__k_attention_max_ctx() || n_batch < 1)
        return -EINVAL;
    cudaError_t e = cudaSetDevice(gm->p.device);
    if (e != cudaSuccess)
        return nvl__gpu_cuda_err(e, "cudaSetDevice");
    struct nvl_gpu_session *gs = calloc(1, sizeof(*gs));
    if (!gs)
        return -ENOMEM;
    gs->gm = gm;
    gs->hp = hp;
    gs->n_ctx = n_ctx;
    gs->n_batch = n_batch;
    gs->theta_scale = powf(hp->rope_freq_base, -2.0f / (float)hp->n_rot);
    gs->fuse = !env_off("NVL_GPU_FUSE");

    const struct gs_dims d = dims(hp);
    const size_t B = (size_t)n_batch;
    const size_t kv = (size_t)hp->n_layer * (size_t)n_ctx * d.kvd * sizeof(uint16_t);
    struct {
        void **p;
        size_t bytes;
    } bufs[] = {
        {(void **)&gs->k_cache, kv},
        {(void **)&gs->v_cache, kv},
        {(void **)&gs->x, B * d.e * sizeof(float)},
        {(void **)&gs->xn, B * d.e * sizeof(float)},
        {(void **)&gs->q, B * d.qd * sizeof(float)},
        {(void **)&gs->k, B * d.kvd * sizeof(float)},
        {(void **)&gs->v, B * d.kvd * sizeof(float)},
        {(void **)&gs->att, B * d.qd * sizeof(float)},
        {(void **)&gs->gate, B * d.ff * sizeof(float)},
        {(void **)&gs->up, B * d.ff * sizeof(float)},
        {&gs->act[NVL_K_ACT_Q8], B * nvl__k_act_row_bytes(NVL_K_ACT_Q8, (int64_t)d.max_k)},
        {&gs->act[NVL_K_ACT_Q8K],
         B * nvl__k_act_row_bytes(NVL_K_ACT_Q8K, (int64_t)((d.max_k + 255) / 256 * 256))},
        {(void **)&gs->logits, (size_t)GPU_LOGITS_ROWS * (size_t)hp->n_vocab * sizeof(float)},
        {(void **)&gs->ids, B * sizeof(int32_t)},
        {(void **)&gs->pos, sizeof(int32_t)},
        {(void **)&gs->count, sizeof(int32_t)},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
        if ((e = cudaMalloc(bufs[i].p, bufs[i].bytes)) != cudaSuccess) {
            rc = nvl__gpu_cuda_err(e, "session VRAM");
            goto err_destroy;
        }
    }
    if ((e = cudaHostAlloc((void **)&gs->h_in, (B + 1) * sizeof(int32_t), cudaHostAllocDefault)) !=
            cudaSuccess ||
        (e = cudaHostAlloc((void **)&gs->h_logits,
                           (size_t)GPU_LOGITS_ROWS * (size_t)hp->n_vocab * sizeof(float),
                           cudaHostAllocDefault)) != cudaSuccess ||
        (e = cudaHostAlloc((void **)&gs->ring, (GPU_RING + 1) * sizeof(int32_t),
                           cudaHostAllocMapped)) != cudaSuccess ||
        (e = cudaHostAlloc((void **)&gs->sample, sizeof(struct nvl_k_sample),
                           cudaHostAllocMapped)) != cudaSuccess ||
        (e = cudaHostAlloc((void **)&gs->draws, GPU_RING * sizeof(double), cudaHostAllocMapped)) !=
            cudaSuccess ||
        (e = cudaEventCreateWithFlags(&gs->done, cudaEventDisableTiming)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&gs->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        rc = nvl__gpu_cuda_err(e, "session stream");
        goto err_destroy;
    }
    /* Without cuBLAS, batches go through the matrix-vector kernels. */
    if ((rc = nvl__k_gemm_create(GPU_GEMM_SCRATCH, &gs->gemm)) && rc != -ENOTSUP)
        goto err_destroy;
    rc = 0;
    *out = gs;
    return 0;

err_destroy:
    nvl__gpu_session_destroy(gs);
    return rc;
}

void nvl__gpu_session_destroy(struct nvl_gpu_session *gs)
{
    if (!gs)
        return;
    if (gs->stream)
        cudaStreamSynchronize(gs->stream);
    if (gs->graph)
        cudaGraphExecDestroy(gs->graph);
    for (int i = 0; i < 2; i++)
        if (gs->step_graph[i])
            cudaGraphExecDestroy(gs->step_graph[i]);
    nvl__k_gemm_destroy(gs->gemm);
    void *bufs[] = {gs->k_cache, gs->v_cache, gs->x,    gs->xn,  gs->q,      gs->k,
                    gs->v,       gs->att,     gs->gate, gs->up,  gs->act[0], gs->act[1],
                    gs->act[2],  gs->logits,  gs->ids,  gs->pos, gs->count};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        cudaFree(bufs[i]);
    if (gs->h_in)
        cudaFreeHost(gs->h_in);
    if (gs->h_logits)
        cudaFreeHost(gs->h_logits);
    if (gs->ring)
        cudaFreeHost((void *)gs->ring);
    if (gs->sample)
        cudaFreeHost((void *)gs->sample);
    if (gs->draws)
        cudaFreeHost((void *)gs->draws);
    if (gs->done)
        cudaEventDestroy(gs->done);
    if (gs->stream)
        cudaStreamDestroy(gs->stream);
    free(gs);
}

/* ------------------------------------------------------------------------------------------ */
/* Forward pass */

static bool gs_gemm(const struct nvl_gpu_session *gs, int32_t n_tok)
{
    return n_tok >= GPU_GEMM_MIN_TOK && gs->gemm;
}

/* The input of a set of products: fp32 rows of x (k floats each), RMS-normalized by norm first
 * when norm is set; bit a of ready says x is already quantized in format a in gs->act[a]. */
struct gs_input {
    const float *x;
    const float *norm;
    unsigned ready;
};

/* Products y_i = W_i x (i < n) for n_tok rows of the input, which they share. On the matrix-
 * vector path a product whose activations are quantized makes them from x in its own prologue
 * (no normalization or quantization kernel), unless they are ready; fp32-activation products get
 * the normalized rows from one RMSNorm kernel. Products of one type go out as one launch.
 * swiglu (gate and up on the matrix-vector path, gs_fuse_swiglu()): y[0] = silu(y[0]) * y[1]
 * made in the same launch, y[1] not written. */
static int gs_products(struct nvl_gpu_session *gs, const struct nvl_llama_tensor *const *w,
                       float *const *y, const size_t *y_stride, int n, struct gs_input in,
                       int32_t n_tok, bool accumulate, bool swiglu)
{
    const struct nvl_llama_hparams *hp = gs->hp;
    const int64_t k = w[0]->ne0;
    struct nvl_k_matmul mm[NVL_K_MV_GROUP];
    bool same = true, need_f32 = false;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        mm[i] = (struct nvl_k_matmul){
            .w = w[i]->data,
            .type = w[i]->type,
            .row_bytes = w[i]->row_bytes,
            .k = k,
            .rows = w[i]->ne1,
            .x = in.x,
            .x_stride = (size_t)k * sizeof(float),
            .y = y[i],
            .y_stride = y_stride[i],
            .n_tok = n_tok,
            .accumulate = accumulate,
        };
        same = same && w[i]->type == w[0]->type;
        need_f32 = need_f32 || nvl__k_act_for(w[i]->type) == NVL_K_ACT_F32;
    }
    const bool gemm = gs_gemm(gs, n_tok);
    const float *xf = in.x; /* fp32 rows the GEMM and fp32-activation products take */
    if (in.norm && (gemm || need_f32)) {
        if ((rc = nvl__k_rmsnorm(in.x, in.norm, gs->xn, k, n_tok, hp->rms_eps, gs->stream)))
            return rc;
        xf = gs->xn;
    }
    if (gemm) {
        /* One fp16 conversion of x for the whole group. */
        for (int i = 0; i < n; i++)
            mm[i].x = xf;
        return nvl__k_gemm_group(gs->gemm, mm, n, gs->stream);
    }
    for (int i = 0; i < n; i++) {
        const enum nvl_k_act act = nvl__k_act_for(mm[i].type);
        if (act == NVL_K_ACT_F32) {
            mm[i].x = xf;
        } else if (in.ready & (1u << act)) {
            mm[i].x = gs->act[act];
            mm[i].x_stride = nvl__k_act_row_bytes(act, k);
        } else {
            mm[i].in = in.norm ? NVL_K_MV_IN_RMSNORM : NVL_K_MV_IN_F32;
            mm[i].norm = in.norm;
            mm[i].eps = in.norm ? hp->rms_eps : 0.0f;
        }
    }
    if (swiglu)
        return nvl__k_matvec_swiglu(mm, gs->stream);
    if (same)
        return nvl__k_matvec_group(mm, n, gs->stream);
    for (int i = 0; i < n && !rc; i++)
        rc = nvl__k_matvec(&mm[i], gs->stream);
    return rc;
}

static int gs_matmul(struct nvl_gpu_session *gs, const struct nvl_llama_tensor *w,
                     struct gs_input in, int32_t n_tok, float *y, size_t y_stride, bool accumulate)
{
    return gs_products(gs, &w, &y, &y_stride, 1, in, n_tok, accumulate, false);
}

/* Whether the gate/up launch also makes SwiGLU (nvl__k_matvec_swiglu): matrix-vector path,
 * same type and shape. */
static bool gs_fuse_swiglu(const struct nvl_gpu_session *gs, const struct nvl_llama_layer *l,
                           int32_t n_tok)
{
    return gs->fuse && !gs_gemm(gs, n_tok) && l->ffn_gate.type == l->ffn_up.type &&
           l->ffn_gate.ne1 == l->ffn_up.ne1;
}

/* The activation format the next products take (what a fused kernel should quantize to). */
static enum nvl_k_act gs_next_act(const struct nvl_gpu_session *gs,
                                  const struct nvl_llama_tensor *w, int32_t n_tok)
{
    return gs_gemm(gs, n_tok) ? NVL_K_ACT_F32 : nvl__k_act_for(w->type);
}

static int layer_forward(struct nvl_gpu_session *gs, const struct nvl_llama_layer *l, int32_t il,
                         int32_t n_tok)
{
    const struct nvl_llama_hparams *hp = gs->hp;
    const struct gs_dims d = dims(hp);
    const cudaStream_t st = gs->stream;
    const size_t cache_off = (size_t)il * (size_t)gs->n_ctx * d.kvd;
    int rc;

    /* RMSNorm inside the Q/K/V products (or one kernel ahead of the GEMMs). */
    {
        const struct nvl_llama_tensor *w[3] = {&l->wq, &l->wk, &l->wv};
        float *y[3] = {gs->q, gs->k, gs->v};
        const size_t ys[3] = {d.qd, d.kvd, d.kvd};
        const struct gs_input in = {.x = gs->x, .norm = l->attn_norm.data};
        if ((rc = gs_products(gs, w, y, ys, 3, in, n_tok, false, false)))
            return rc;
    }

    const struct nvl_k_rope rope = {
        .q = gs->q,
        .k = gs->k,
        .v = gs->v,
        .k_cache = gs->k_cache + cache_off,
        .v_cache = gs->v_cache + cache_off,
        .pos0 = gs->pos,
        .n_tok = n_tok,
        .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv,
        .head_dim = hp->head_dim,
        .n_rot = hp->n_rot,
        .freq_scale = hp->rope_freq_scale,
        .theta_scale = gs->theta_scale,
        .freq_factors = gs->gm->rope_freqs.data,
    };
    const struct nvl_k_attention att = {
        .q = gs->q,
        .k_cache = gs->k_cache + cache_off,
        .v_cache = gs->v_cache + cache_off,
        .out = gs->att,
        .pos0 = gs->pos,
        .n_tok = n_tok,
        .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv,
        .head_dim = hp->head_dim,
        .n_ctx = gs->n_ctx,
    };
    if (gs->fuse)
        rc = nvl__k_rope_attention(&rope, &att, st);
    else if (!(rc = nvl__k_rope_kv(&rope, st)))
        rc = nvl__k_attention(&att, st);
    if (rc)
        return rc;
    if ((rc = gs_matmul(gs, &l->wo, (struct gs_input){.x = gs->att}, n_tok, gs->x, d.e, true)))
        return rc;

    const bool fused = gs_fuse_swiglu(gs, l, n_tok);
    {
        const struct nvl_llama_tensor *w[2] = {&l->ffn_gate, &l->ffn_up};
        float *y[2] = {gs->gate, gs->up};
        const size_t ys[2] = {d.ff, d.ff};
        const struct gs_input in = {.x = gs->x, .norm = l->ffn_norm.data};
        if ((rc = gs_products(gs, w, y, ys, 2, in, n_tok, false, fused)))
            return rc;
    }
    /* SwiGLU came out of the gate/up launch: the down product quantizes it in its prologue. */
    if (fused)
        return gs_matmul(gs, &l->ffn_down, (struct gs_input){.x = gs->gate}, n_tok, gs->x, d.e,
                         true);
    /* SwiGLU quantizes for the down product in the same launch. */
    const enum nvl_k_act act = gs_next_act(gs, &l->ffn_down, n_tok);
    if ((rc =
             nvl__k_swiglu_quantize(gs->gate, gs->up, (int64_t)d.ff, n_tok, act, gs->act[act], st)))
        return rc;
    const struct gs_input in = {.x = gs->gate, .ready = act == NVL_K_ACT_F32 ? 0 : 1u << act};
    return gs_matmul(gs, &l->ffn_down, in, n_tok, gs->x, d.e, true);
}

/* Embedding, the layers, and the logits of tokens [out_first, out_first + n_out) into
 * gs->logits (n_out <= GPU_LOGITS_ROWS; 0: none). */
static int run_pass(struct nvl_gpu_session *gs, int32_t n_tok, int32_t out_first, int32_t n_out)
{
    struct nvl_gpu_model *gm = gs->gm;
    const struct nvl_llama_hparams *hp = gs->hp;
    const size_t e = (size_t)hp->n_embd;
    int rc = nvl__k_get_rows(gm->tok_embd.type, gm->tok_embd.data, gm->tok_embd.row_bytes,
                             hp->n_embd, gs->ids, n_tok, gs->x, gs->stream);
    for (int32_t il = 0; il < hp->n_layer && !rc; il++) {
        const uint8_t *base;
        int32_t ring;
        if ((rc = nvl__gpu_layer_acquire(gm, il, gs->stream, &base, &ring)))
            break;
        struct nvl_llama_layer l;
        nvl__gpu_layer_bind(gm, il, base, &l);
        rc = layer_forward(gs, &l, il, n_tok);
        const int rc2 = nvl__gpu_layer_release(gm, ring, gs->stream);
        rc = rc ? rc : rc2;
    }
    if (rc || n_out == 0)
        return rc;
    const struct gs_input in = {.x = gs->x + (size_t)out_first * e, .norm = gm->output_norm.data};
    return gs_matmul(gs, &gm->output, in, n_out, gs->logits, (size_t)hp->n_vocab, false);
}

/* Queues the batch's token ids and first position for the pass (through pinned staging). */
static int upload_batch(struct nvl_gpu_session *gs, const int32_t *tokens, int32_t n_tok,
                        int32_t pos0)
{
    cudaError_t e;
    memcpy(gs->h_in, tokens, (size_t)n_tok * sizeof(int32_t));
    gs->h_in[gs->n_batch] = pos0;
    if ((e = cudaMemcpyAsync(gs->ids, gs->h_in, (size_t)n_tok * sizeof(int32_t),
                             cudaMemcpyHostToDevice, gs->stream)) != cudaSuccess ||
        (e = cudaMemcpyAsync(gs->pos, gs->h_in + gs->n_batch, sizeof(int32_t),
                             cudaMemcpyHostToDevice, gs->stream)) != cudaSuccess)
        return nvl__gpu_cuda_err(e, "token upload");
    return 0;
}

/* Waits for the pass (sleeping, not spinning) and hands rows of logits to the caller through
 * pinned memory (a pageable copy would spin the CPU for the whole pass). */
static int fetch_logits(struct nvl_gpu_session *gs, int32_t rows, float *dst)
{
    const size_t bytes = (size_t)rows * (size_t)gs->hp->n_vocab * sizeof(float);
    cudaError_t e;
    if ((rows > 0 && (e = cudaMemcpyAsync(gs->h_logits, gs->logits, bytes, cudaMemcpyDeviceToHost,
                                          gs->stream)) != cudaSuccess) ||
        (e = cudaEventRecord(gs->done, gs->stream)) != cudaSuccess)
        return nvl__gpu_cuda_err(e, "logits copy");
    const int rc = nvl__gpu_event_wait(gs->done);
    if (rc == 0 && rows > 0)
        memcpy(dst, gs->h_logits, bytes);
    return rc;
}

/* The logits of tokens [first, first + n) of the pass, computed from gs->x (after run_pass). */
static int extra_logits(struct nvl_gpu_session *gs, int32_t first, int32_t n, float *dst)
{
    struct nvl_gpu_model *gm = gs->gm;
    const struct nvl_llama_hparams *hp = gs->hp;
    const size_t e = (size_t)hp->n_embd, nv = (size_t)hp->n_vocab;
    const struct gs_input in = {.x = gs->x + (size_t)first * e, .norm = gm->output_norm.data};
    const int rc = gs_matmul(gs, &gm->output, in, n, gs->logits, nv, false);
    return rc ? rc : fetch_logits(gs, n, dst);
}

static bool graphs_enabled(void)
{
    return !env_off("NVL_GPU_GRAPHS");
}

static bool pdl_enabled(void)
{
    return !env_off("NVL_GPU_PDL");
}

/* Captures the single-token pass (and with feed, the greedy argmax after it) into *out.
 * 1: graphs unavailable here (logged; the session stops trying). */
static int capture_pass(struct nvl_gpu_session *gs, const struct nvl_k_feed *feed,
                        cudaGraphExec_t *out)
{
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamBeginCapture(gs->stream, cudaStreamCaptureModeRelaxed);
    if (e == cudaSuccess) {
        /* Every weight is resident and immutable here: each kernel may start as the one ahead
         * of it drains (programmatic dependent launch), prefetching its weights meanwhile. */
        nvl__k_set_pdl(pdl_enabled());
        int rc = run_pass(gs, 1, 0, 1);
        nvl__k_set_pdl(false);
        if (!rc && feed)
            rc = nvl__k_argmax_feed(gs->logits, gs->hp->n_vocab, feed, gs->stream);
        e = cudaStreamEndCapture(gs->stream, &g);
        if (!rc && e == cudaSuccess && g) {
            e = cudaGraphInstantiate(out, g, 0);
            cudaGraphDestroy(g);
            if (e == cudaSuccess) {
                gs->gm->st.graphs = true;
                return 0;
            }
        } else if (g) {
            cudaGraphDestroy(g);
        }
        if (e == cudaSuccess)
            e = cudaErrorStreamCaptureInvalidated; /* a kernel launch failed under capture */
    }
    *out = NULL;
    nvl_log_info(GPU_LOG, "CUDA graph capture failed (%s); running without graphs",
                 cudaGetErrorString(e));
    cudaGetLastError();
    gs->graph_failed = true;
    return 1;
}

/* Replays (capturing it the first time) the single-token pass. 1: graphs unavailable here. */
static int run_graph(struct nvl_gpu_session *gs)
{
    if (!gs->graph && capture_pass(gs, NULL, &gs->graph))
        return 1;
    const cudaError_t e = cudaGraphLaunch(gs->graph, gs->stream);
    return e == cudaSuccess ? 0 : nvl__gpu_cuda_err(e, "graph launch");
}

/* Waits until the greedy loop has published more than `have` tokens: 0, or -EIO when the
 * stream failed or finished without publishing (polls, then sleeps between polls as
 * nvl__gpu_event_wait does; the passes queued ahead keep the GPU busy meanwhile). */
static int wait_token(struct nvl_gpu_session *gs, int32_t have)
{
    for (int spins = 0;; spins++) {
        if (gs->ring[GPU_RING] > have)
            return 0;
        if ((spins & 63) == 63) {
            const cudaError_t q = cudaStreamQuery(gs->stream);
            if (q == cudaSuccess && gs->ring[GPU_RING] <= have)
                return -EIO; /* nothing left to run, and no token */
            if (q != cudaSuccess && q != cudaErrorNotReady)
                return nvl__gpu_cuda_err(q, "greedy loop");
            const struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
}

int nvl__gpu_session_decode(struct nvl_gpu_session *gs, int32_t token, int32_t pos0, int32_t steps,
                            const struct nvl_gpu_sampling *sampling, nvl_greedy_fn next, void *ctx,
                            int32_t *n_eval, bool *logits_kept, float *logits)
{
    struct nvl_gpu_model *gm = gs->gm;
    const struct nvl_llama_hparams *hp = gs->hp;
    *n_eval = 0;
    *logits_kept = false;
    if (gm->st.layers[NVL_GPU_TIER_VRAM] != hp->n_layer || gs->graph_failed || !graphs_enabled())
        return -ENOTSUP;
    if (steps < 1 || pos0 < 0 || pos0 + steps > gs->n_ctx || token < 0 || token >= hp->n_vocab)
        return -EINVAL;
    if (sampling && (!nvl__k_sample_supports(sampling->top_k, hp->n_vocab) || !sampling->sampler))
        return -ENOTSUP;
    cudaSetDevice(gm->p.device);
    int rc = 0;
    cudaError_t e;
    const struct nvl_k_feed feed = {
        .ids = gs->ids,
        .pos = gs->pos,
        .count = gs->count,
        .ring = gs->ring,
        .ring_mask = GPU_RING - 1,
        .sample = sampling ? gs->sample : NULL,
        .draws = sampling ? gs->draws : NULL,
    };
    const int g = sampling ? 1 : 0;
    /* The model lock only for the capture (it walks the placement and the kernels' launch
     * setup). The replays touch this session's buffers and stream and the resident weights,
     * which nothing changes, so other sessions' passes go on meanwhile. */
    pthread_mutex_lock(&gm->lock);
    if (!gs->step_graph[g] && capture_pass(gs, &feed, &gs->step_graph[g]))
        rc = -ENOTSUP;
    pthread_mutex_unlock(&gm->lock);
    if (rc)
        return rc;
    gs->ring[GPU_RING] = 0;
    if (sampling) {
        gs->sample->top_k = sampling->top_k;
        gs->sample->top_p = sampling->top_p;
        gs->sample->min_p = sampling->min_p;
        gs->sample->temperature = sampling->temperature;
    }
    if ((rc = upload_batch(gs, &token, 1, pos0)))
        return rc;
    if ((e = cudaMemsetAsync(gs->count, 0, sizeof(int32_t), gs->stream)) != cudaSuccess)
        return nvl__gpu_cuda_err(e, "greedy loop start");
    /* Passes go out GPU_AHEAD ahead of the token read back, so the GPU never waits for the CPU;
     * a stop costs the passes already queued (their KV rows lie past the kept ones). */
    int32_t launched = 0, seen = 0;
    bool go = true;
    while (go && !rc) {
        while (launched < steps && launched < seen + GPU_AHEAD) {
            if (sampling) { /* the draw the CPU sampler would take for this token */
                gs->draws[launched & (GPU_RING - 1)] =
                    nvl_sampler_peek_draw(sampling->sampler, launched);
                __atomic_thread_fence(__ATOMIC_RELEASE);
            }
            if ((e = cudaGraphLaunch(gs->step_graph[g], gs->stream)) != cudaSuccess) {
                rc = nvl__gpu_cuda_err(e, "graph launch");
                break;
            }
            launched++;
        }
        if (rc || (rc = wait_token(gs, seen)))
            break;
        __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the count before the token it publishes */
        const int32_t tok = gs->ring[seen & (GPU_RING - 1)];
        seen++;
        go = next(ctx, tok) && seen < steps;
    }
    /* The passes still queued (after a stop) finish before the session moves on; where none ran
     * past the last kept token, its logits (row 0) come back too. */
    const bool keep = !rc && launched == seen;
    const int rc2 = fetch_logits(gs, keep ? 1 : 0, logits);
    rc = rc ? rc : rc2;
    if (!rc) {
        *n_eval = seen;
        *logits_kept = keep;
    }
    return rc;
}

int nvl__gpu_session_forward(struct nvl_gpu_session *gs, const int32_t *tokens, int32_t n_tok,
                             int32_t pos0, int32_t out_first, float *logits)
{
    struct nvl_gpu_model *gm = gs->gm;
    const struct nvl_llama_hparams *hp = gs->hp;
    const size_t nv = (size_t)hp->n_vocab;
    if (n_tok < 1 || n_tok > gs->n_batch || pos0 < 0 || pos0 + n_tok > gs->n_ctx)
        return -EINVAL;
    const int32_t n_out = n_tok - out_first;
    cudaSetDevice(gm->p.device);
    pthread_mutex_lock(&gm->lock);

    int rc = upload_batch(gs, tokens, n_tok, pos0);
    if (rc)
        goto out;

    const int32_t first_rows = n_out > GPU_LOGITS_ROWS ? GPU_LOGITS_ROWS : (n_out > 0 ? n_out : 0);
    const bool resident = gm->st.layers[NVL_GPU_TIER_VRAM] == hp->n_layer;
    rc = 1;
    if (n_tok == 1 && n_out == 1 && resident && !gs->graph_failed && graphs_enabled())
        rc = run_graph(gs);
    if (rc == 1)
        rc = run_pass(gs, n_tok, out_first, first_rows);
    if (rc)
        goto out;
    rc = fetch_logits(gs, first_rows, logits);
    for (int32_t r = first_rows; r < n_out && !rc; r += GPU_LOGITS_ROWS) {
        const int32_t n = n_out - r < GPU_LOGITS_ROWS ? n_out - r : GPU_LOGITS_ROWS;
        rc = extra_logits(gs, out_first + r, n, logits + (size_t)r * nv);
    }
    if (!rc && gm->stream_err) {
        rc = gm->stream_err;
        nvl_log_error(GPU_LOG, "a streamed layer's read failed: %s", nvl_strerror(rc));
        gm->stream_err = 0;
    }
out:
    pthread_mutex_unlock(&gm->lock);
    return rc;
}

#endif /* NVL_HAVE_CUDA */
