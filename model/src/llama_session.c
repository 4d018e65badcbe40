/* CPU forward pass of the llama family and the session that holds its KV cache.
 *
 * One batch of tokens goes through the layers together, so each weight row is read once per
 * batch (matrix-matrix) rather than once per token. Work is split over the thread pool by rows of
 * the weight matrices (matmuls) and by (token, head) pairs (attention); every output value is
 * computed by exactly one thread in a fixed order, so results do not depend on the thread count.
 *
 * Layout of the KV cache: [n_layer][n_ctx][n_head_kv * head_dim], fp16 by default (as llama.cpp)
 * or fp32. Row `pos` of layer l holds the roped key (value) of the token at position pos. */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_ops.h"
#include "llama_gpu.h"
#include "llama_internal.h"
#include "threadpool.h"

/* Largest default context when the caller gives none: the model's own can be 128k tokens, whose
 * cache a CPU session rarely wants. */
#define SESSION_DEFAULT_CTX   4096
#define SESSION_DEFAULT_BATCH 64
/* A GPU pass costs little more for 512 tokens than for 64 (the products run on tensor cores). */
#define SESSION_DEFAULT_GPU_BATCH 512

struct nvl_session {
    struct nvl_llama_model *model;
    const struct nvl_llama_hparams *hp;
    struct nvl_threadpool *pool;
    int32_t n_ctx;
    int32_t n_batch;
    int32_t n_threads;

    bool kv_f32;
    bool f32_act;    /* see nvl_session_params.f32_activations */
    size_t kv_elem;  /* bytes per cache element: 2 (fp16) or 4 */
    void *k_cache;   /* [n_layer][n_ctx][kv_dim] */
    void *v_cache;   /* [n_layer][n_ctx][kv_dim] */
    int32_t n_past;  /* positions filled */
    int32_t *tokens; /* [n_ctx] the tokens at those positions */

    /* Scratch for one batch of at most n_batch tokens. */
    float *x;                 /* [n_batch][n_embd] residual stream */
    float *xn;                /* [n_batch][n_embd] normed input of the current block */
    float *q;                 /* [n_batch][n_head * head_dim] */
    float *k;                 /* [n_batch][kv_dim] */
    float *v;                 /* [n_batch][kv_dim] */
    float *att;               /* [n_batch][n_head * head_dim] attention output */
    float *gate;              /* [n_batch][n_ff] */
    float *up;                /* [n_batch][n_ff] */
    float *rope;              /* [n_batch][n_rot / 2][2] cos and sin per rotated pair */
    void *act[CPU_ACT_COUNT]; /* [n_batch] quantized activation rows, widest row */
    float *scores;            /* [n_threads][n_ctx] attention scores per thread */
    float *dequant;           /* [n_threads][max_k] dequantized weight row per thread */
    int64_t max_k;

    struct nvl_gpu_session *gpu; /* the GPU half of a GPU session (llama_gpu_session.c) */

    float *logits; /* [logits_cap][n_vocab] */
    int32_t logits_cap;
    int32_t logits_first; /* index (in the last eval) of the first token with logits */
    int32_t n_logits;     /* rows of logits that are valid */
};

void nvl_session_params_default(struct nvl_session_params *params)
{
    *params = (struct nvl_session_params){0};
}

static int32_t online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > 256 ? 256 : (int32_t)n);
}

int nvl_session_create(struct nvl_llama_model *model, const struct nvl_session_params *params,
                       struct nvl_session **out)
{
    *out = NULL;
    const struct nvl_llama_hparams *hp = &model->hp;
    struct nvl_session_params p = *params;
    if (p.n_ctx < 0 || p.n_threads < 0 || p.n_batch < 0 || p.n_threads > 1024)
        return -EINVAL;
    if (p.n_ctx == 0)
        p.n_ctx = hp->n_ctx_train < SESSION_DEFAULT_CTX ? hp->n_ctx_train : SESSION_DEFAULT_CTX;
    if (p.n_threads == 0)
        p.n_threads = online_cpus();
    if (p.n_batch == 0)
        p.n_batch = p.gpu ? SESSION_DEFAULT_GPU_BATCH : SESSION_DEFAULT_BATCH;
    if (p.n_batch > p.n_ctx)
        p.n_batch = p.n_ctx;

    struct nvl_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->model = model;
    s->hp = hp;
    s->n_ctx = p.n_ctx;
    s->n_batch = p.n_batch;
    s->n_threads = p.n_threads;
    s->kv_f32 = p.kv_f32;
    s->f32_act = p.f32_activations;
    s->kv_elem = p.kv_f32 ? sizeof(float) : sizeof(uint16_t);

    if (p.gpu) {
        /* The GPU session keeps its cache and scratch in VRAM; the CPU side keeps only the token
         * list and the logits. */
        int rc = -EINVAL;
        if (p.kv_f32 || p.f32_activations)
            goto err_destroy_gpu_session;
        rc = -ENOMEM;
        s->tokens = malloc((size_t)p.n_ctx * sizeof(*s->tokens));
        if (!s->tokens)
            goto err_destroy_gpu_session;
        rc = nvl__gpu_session_create(p.gpu, p.n_ctx, p.n_batch, &s->gpu);
        if (rc)
            goto err_destroy_gpu_session;
        *out = s;
        return 0;
    err_destroy_gpu_session:
        nvl_session_destroy(s);
        return rc;
    }

    const size_t B = (size_t)p.n_batch;
    const size_t e = (size_t)hp->n_embd, qd = (size_t)hp->n_head * (size_t)hp->head_dim;
    const size_t kvd = (size_t)hp->n_head_kv * (size_t)hp->head_dim, ff = (size_t)hp->n_ff;
    const size_t kv_bytes = (size_t)hp->n_layer * (size_t)p.n_ctx * kvd * s->kv_elem;
    s->max_k = (int64_t)(e > ff ? (e > qd ? e : qd) : (ff > qd ? ff : qd));

    int rc = -ENOMEM;
    s->k_cache = malloc(kv_bytes);
    s->v_cache = malloc(kv_bytes);
    s->tokens = malloc((size_t)p.n_ctx * sizeof(*s->tokens));
    s->x = malloc(B * e * sizeof(float));
    s->xn = malloc(B * e * sizeof(float));
    s->q = malloc(B * qd * sizeof(float));
    s->k = malloc(B * kvd * sizeof(float));
    s->v = malloc(B * kvd * sizeof(float));
    s->att = malloc(B * qd * sizeof(float));
    s->gate = malloc(B * ff * sizeof(float));
    s->up = malloc(B * ff * sizeof(float));
    s->rope = malloc(B * (size_t)hp->n_rot * sizeof(float));
    s->scores = malloc((size_t)p.n_threads * (size_t)p.n_ctx * sizeof(float));
    s->dequant = malloc((size_t)p.n_threads * (size_t)s->max_k * sizeof(float));
    for (int a = 0; a < CPU_ACT_COUNT; a++)
        s->act[a] = malloc(B * nvl__cpu_act_row_bytes((enum cpu_act)a, s->max_k));
    if (!s->k_cache || !s->v_cache || !s->tokens || !s->x || !s->xn || !s->q || !s->k || !s->v ||
        !s->att || !s->gate || !s->up || !s->rope || !s->scores || !s->dequant ||
        !s->act[CPU_ACT_F32] || !s->act[CPU_ACT_Q8] || !s->act[CPU_ACT_Q8K])
        goto err_destroy_session;
    rc = nvl_threadpool_create(p.n_threads, &s->pool);
    if (rc)
        goto err_destroy_session;
    *out = s;
    return 0;

err_destroy_session:
    nvl_session_destroy(s);
    return rc;
}

void nvl_session_destroy(struct nvl_session *s)
{
    if (!s)
        return;
    nvl__gpu_session_destroy(s->gpu);
    nvl_threadpool_destroy(s->pool);
    free(s->k_cache);
    free(s->v_cache);
    free(s->tokens);
    free(s->x);
    free(s->xn);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->gate);
    free(s->up);
    free(s->rope);
    free(s->scores);
    free(s->dequant);
    for (int a = 0; a < CPU_ACT_COUNT; a++)
        free(s->act[a]);
    free(s->logits);
    free(s);
}

int32_t nvl_session_n_past(const struct nvl_session *s)
{
    return s->n_past;
}

int32_t nvl_session_n_ctx(const struct nvl_session *s)
{
    return s->n_ctx;
}

int32_t nvl_session_n_threads(const struct nvl_session *s)
{
    return s->n_threads;
}

const int32_t *nvl_session_tokens(const struct nvl_session *s)
{
    return s->tokens;
}

int nvl_session_truncate(struct nvl_session *s, int32_t n_past)
{
    if (n_past < 0 || n_past > s->n_past)
        return -EINVAL;
    if (n_past != s->n_past)
        s->n_logits = 0; /* the logits belonged to a token that is gone */
    s->n_past = n_past;
    return 0;
}

/* Records each token nvl_session_greedy() picks where it will sit if evaluated, and asks the
 * caller's callback. */
struct greedy_ctx {
    struct nvl_session *s;
    int32_t picked;
    nvl_greedy_fn next;
    void *ctx;
};

static bool greedy_next(void *ctx, int32_t token)
{
    struct greedy_ctx *g = ctx;
    const int32_t at = g->s->n_past + 1 + g->picked++;
    if (at < g->s->n_ctx)
        g->s->tokens[at] = token;
    return g->next(g->ctx, token);
}

/* nvl_session_greedy and nvl_session_sample_gpu: sampling NULL picks by argmax. */
static int session_decode_gpu(struct nvl_session *s, const struct nvl_gpu_sampling *sampling,
                              int32_t token, int32_t steps, nvl_greedy_fn next, void *ctx,
                              int32_t *n_picked)
{
    *n_picked = 0;
    if (!s->gpu)
        return -ENOTSUP;
    if (token < 0 || token >= s->hp->n_vocab || steps < 1 || !next)
        return -EINVAL;
    if (s->n_past >= s->n_ctx)
        return -ENOSPC;
    if (steps > s->n_ctx - s->n_past)
        steps = s->n_ctx - s->n_past;
    if (s->logits_cap < 1) {
        float *l = realloc(s->logits, (size_t)s->hp->n_vocab * sizeof(float));
        if (!l)
            return -ENOMEM;
        s->logits = l;
        s->logits_cap = 1;
    }
    struct greedy_ctx g = {.s = s, .next = next, .ctx = ctx};
    int32_t n_eval = 0;
    bool kept = false;
    const int rc = nvl__gpu_session_decode(s->gpu, token, s->n_past, steps, sampling, greedy_next,
                                           &g, &n_eval, &kept, s->logits);
    if (rc)
        return rc;
    s->tokens[s->n_past] = token;
    s->n_past += n_eval;
    s->logits_first = 0;
    s->n_logits = kept ? 1 : 0;
    *n_picked = g.picked;
    return 0;
}

int nvl_session_greedy(struct nvl_session *s, int32_t token, int32_t steps, nvl_greedy_fn next,
                       void *ctx)
{
    int32_t picked;
    return session_decode_gpu(s, NULL, token, steps, next, ctx, &picked);
}

int nvl_session_sample_gpu(struct nvl_session *s, struct nvl_sampler *sampler, int32_t token,
                           int32_t steps, nvl_greedy_fn next, void *ctx)
{
    if (nvl_sampler_is_argmax(sampler))
        return nvl_session_greedy(s, token, steps, next, ctx);
    const struct nvl_sampler_params *p = nvl_sampler_get_params(sampler);
    if (p->repeat_penalty != 1.0f && p->repeat_last_n > 0)
        return -ENOTSUP; /* the penalty edits the logits with the CPU's history */
    const struct nvl_gpu_sampling sampling = {
        .top_k = p->top_k,
        .top_p = p->top_p,
        .min_p = p->min_p,
        .temperature = p->temperature,
        .sampler = sampler,
    };
    int32_t picked;
    const int rc = session_decode_gpu(s, &sampling, token, steps, next, ctx, &picked);
    if (rc == 0)
        nvl_sampler_skip_draws(sampler, picked); /* one draw per token, as on the CPU */
    return rc;
}

const float *nvl_session_logits(const struct nvl_session *s, int32_t i)
{
    if (s->n_logits == 0)
        return NULL;
    if (i < 0)
        i = s->logits_first + s->n_logits - 1;
    if (i < s->logits_first || i >= s->logits_first + s->n_logits)
        return NULL;
    return s->logits + (size_t)(i - s->logits_first) * (size_t)s->hp->n_vocab;
}

/* ------------------------------------------------------------------------------------------ */
/* Matrix products over the thread pool */

#define MM_GROUP_MAX 3

/* Up to three products that share their input (Q/K/V, gate/up), split into row chunks that the
 * threads claim one at a time, so a thread that was descheduled does not hold up the others. */
struct mm_group {
    struct cpu_matmul mm[MM_GROUP_MAX];
    int n;
    int64_t chunk_rows[MM_GROUP_MAX];
    int64_t chunk_end[MM_GROUP_MAX]; /* cumulative chunk counts */
    atomic_llong next;
    float *dequant;
    int64_t dequant_stride;
};

static void mm_group_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    struct mm_group *g = ctx;
    float *scratch = g->dequant + (size_t)ith * (size_t)g->dequant_stride;
    for (;;) {
        long long c = atomic_fetch_add_explicit(&g->next, 1, memory_order_relaxed);
        int i = 0;
        while (i < g->n && c >= g->chunk_end[i])
            i++;
        if (i == g->n)
            return;
        const long long first = i ? g->chunk_end[i - 1] : 0;
        const int64_t r0 = (c - first) * g->chunk_rows[i];
        int64_t r1 = r0 + g->chunk_rows[i];
        if (r1 > g->mm[i].rows)
            r1 = g->mm[i].rows;
        nvl__cpu_matmul_rows(&g->mm[i], r0, r1, scratch);
    }
}

static void mm_group_run(struct nvl_session *s, struct mm_group *g)
{
    int64_t total_rows = 0;
    for (int i = 0; i < g->n; i++)
        total_rows += g->mm[i].rows;
    /* About eight chunks per thread balance the load; at least 8 rows keep the claim cost (one
     * atomic add) small next to the work. */
    int64_t chunk = total_rows / ((int64_t)s->n_threads * 8);
    if (chunk < 8)
        chunk = 8;
    long long end = 0;
    for (int i = 0; i < g->n; i++) {
        g->chunk_rows[i] = chunk;
        end += (g->mm[i].rows + chunk - 1) / chunk;
        g->chunk_end[i] = end;
    }
    atomic_init(&g->next, 0);
    g->dequant = s->dequant;
    g->dequant_stride = s->max_k;
    nvl_threadpool_run(s->pool, mm_group_worker, g);
}

/* Quantizes n_tok rows of k floats (src_stride apart) into the activation format `act`, and
 * returns the rows and their stride. F32 activations are used in place. */
static const void *act_prepare(struct nvl_session *s, enum cpu_act act, const float *src,
                               size_t src_stride, int32_t n_tok, int64_t k, size_t *stride)
{
    if (act == CPU_ACT_F32) {
        *stride = src_stride * sizeof(float);
        return src;
    }
    const size_t row = nvl__cpu_act_row_bytes(act, k);
    uint8_t *dst = s->act[act];
    for (int32_t t = 0; t < n_tok; t++)
        nvl__cpu_act_quantize(act, src + (size_t)t * src_stride, dst + (size_t)t * row, k);
    *stride = row;
    return dst;
}

/* Adds y = W · x to a group; x is n_tok fp32 rows that are quantized for W's type, once per
 * format (the products of a group share their input). */
static void mm_add(struct nvl_session *s, struct mm_group *g, const struct nvl_llama_tensor *w,
                   const float *x, size_t x_stride, int32_t n_tok, float *y, size_t y_stride,
                   bool accumulate, unsigned *prepared)
{
    const enum cpu_act act = s->f32_act ? CPU_ACT_F32 : nvl__cpu_type_ops(w->type)->act;
    size_t stride;
    const void *xa;
    if (act != CPU_ACT_F32 && (*prepared & (1u << act))) {
        stride = nvl__cpu_act_row_bytes(act, w->ne0);
        xa = s->act[act];
    } else {
        xa = act_prepare(s, act, x, x_stride, n_tok, w->ne0, &stride);
        *prepared |= 1u << act;
    }
    g->mm[g->n++] = (struct cpu_matmul){
        .w = w->data,
        .w_type = w->type,
        .w_row_bytes = w->row_bytes,
        .k = w->ne0,
        .rows = w->ne1,
        .x = xa,
        .x_stride = stride,
        .y = y,
        .y_stride = y_stride,
        .n_tok = n_tok,
        .accumulate = accumulate,
        .dequantize = s->f32_act,
    };
}

/* ------------------------------------------------------------------------------------------ */
/* Attention */

struct attn_job {
    struct nvl_session *s;
    int32_t layer;
    int32_t n_tok;
    int32_t pos0;
    atomic_int next; /* next (token, head) item */
};

static void attn_worker(void *ctx, int ith, int nth)
{
    (void)nth;
    struct attn_job *j = ctx;
    struct nvl_session *s = j->s;
    const struct nvl_llama_hparams *hp = s->hp;
    const int32_t hd = hp->head_dim, n_head = hp->n_head;
    const int32_t group = hp->n_head / hp->n_head_kv;
    const size_t kvd = (size_t)hp->n_head_kv * (size_t)hd, qd = (size_t)n_head * (size_t)hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float *sc = s->scores + (size_t)ith * (size_t)s->n_ctx;
    const size_t layer_off = (size_t)j->layer * (size_t)s->n_ctx * kvd;

    for (;;) {
        const int item = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (item >= j->n_tok * n_head)
            return;
        const int32_t t = item / n_head, h = item % n_head, kvh = h / group;
        const int32_t n_kv = j->pos0 + t + 1; /* causal: positions 0 .. pos0 + t */
        const float *q = s->q + (size_t)t * qd + (size_t)h * (size_t)hd;
        float *out = s->att + (size_t)t * qd + (size_t)h * (size_t)hd;

        for (int32_t p = 0; p < n_kv; p++) {
            const size_t off = layer_off + (size_t)p * kvd + (size_t)kvh * (size_t)hd;
            sc[p] =
                scale * (s->kv_f32 ? nvl__cpu_dot_f32(q, (const float *)s->k_cache + off, hd)
                                   : nvl__cpu_dot_f16(q, (const uint16_t *)s->k_cache + off, hd));
        }
        nvl__cpu_softmax(sc, n_kv);
        memset(out, 0, (size_t)hd * sizeof(float));
        for (int32_t p = 0; p < n_kv; p++) {
            const size_t off = layer_off + (size_t)p * kvd + (size_t)kvh * (size_t)hd;
            if (s->kv_f32)
                nvl__cpu_axpy_f32(out, sc[p], (const float *)s->v_cache + off, hd);
            else
                nvl__cpu_axpy_f16(out, sc[p], (const uint16_t *)s->v_cache + off, hd);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Forward pass of one batch */

/* cos and sin of every rotated pair of every token. Computed as ggml's rope: theta starts at the
 * position (times the linear scale) and is multiplied by base^(-2/n_rot) from pair to pair, then
 * divided by the Llama 3.1 frequency factor of the pair when the model has them. */
static void rope_prepare(struct nvl_session *s, int32_t n_tok, int32_t pos0)
{
    const struct nvl_llama_hparams *hp = s->hp;
    const float *ff = s->model->w.rope_freqs.data;
    const float theta_scale = powf(hp->rope_freq_base, -2.0f / (float)hp->n_rot);
    for (int32_t t = 0; t < n_tok; t++) {
        float *cs = s->rope + (size_t)t * (size_t)hp->n_rot;
        float theta = (float)(pos0 + t) * hp->rope_freq_scale;
        for (int32_t i = 0; i < hp->n_rot / 2; i++) {
            const float th = ff ? theta / ff[i] : theta;
            cs[2 * i] = cosf(th);
            cs[2 * i + 1] = sinf(th);
            theta *= theta_scale;
        }
    }
}

/* Rotates the first n_rot dimensions of each head in adjacent pairs (x[2i], x[2i+1]). */
static void rope_apply(const struct nvl_session *s, float *x, int32_t n_heads, const float *cs)
{
    const int32_t hd = s->hp->head_dim, n_rot = s->hp->n_rot;
    for (int32_t h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)hd;
        for (int32_t i = 0; i < n_rot; i += 2) {
            const float c = cs[i], sn = cs[i + 1];
            const float x0 = v[i], x1 = v[i + 1];
            v[i] = x0 * c - x1 * sn;
            v[i + 1] = x0 * sn + x1 * c;
        }
    }
}

struct swiglu_job {
    struct nvl_session *s;
    int32_t n_tok;
    enum cpu_act act; /* format of the down projection's input */
};

/* gate = silu(gate) * up, then the quantization for the down projection, one token per step. */
static void swiglu_worker(void *ctx, int ith, int nth)
{
    struct swiglu_job *j = ctx;
    struct nvl_session *s = j->s;
    const int64_t ff = s->hp->n_ff;
    const size_t row = nvl__cpu_act_row_bytes(j->act, ff);
    for (int32_t t = ith; t < j->n_tok; t += nth) {
        float *g = s->gate + (size_t)t * (size_t)ff;
        nvl__cpu_swiglu(g, s->up + (size_t)t * (size_t)ff, ff);
        if (j->act != CPU_ACT_F32)
            nvl__cpu_act_quantize(j->act, g, (uint8_t *)s->act[j->act] + (size_t)t * row, ff);
    }
}

static void layer_forward(struct nvl_session *s, int32_t il, int32_t n_tok, int32_t pos0)
{
    const struct nvl_llama_hparams *hp = s->hp;
    const struct nvl_llama_layer *l = &s->model->w.layers[il];
    const size_t e = (size_t)hp->n_embd, qd = (size_t)hp->n_head * (size_t)hp->head_dim;
    const size_t kvd = (size_t)hp->n_head_kv * (size_t)hp->head_dim, ff = (size_t)hp->n_ff;
    struct mm_group g;
    unsigned prepared;

    /* Attention block: xn = rms(x) * attn_norm; q, k, v = W · xn. */
    for (int32_t t = 0; t < n_tok; t++)
        nvl__cpu_rmsnorm(s->xn + t * e, s->x + t * e, l->attn_norm.data, hp->n_embd, hp->rms_eps);
    g.n = 0;
    prepared = 0;
    mm_add(s, &g, &l->wq, s->xn, e, n_tok, s->q, qd, false, &prepared);
    mm_add(s, &g, &l->wk, s->xn, e, n_tok, s->k, kvd, false, &prepared);
    mm_add(s, &g, &l->wv, s->xn, e, n_tok, s->v, kvd, false, &prepared);
    mm_group_run(s, &g);

    /* RoPE on q and k, then k and v into the cache at their positions. */
    const size_t layer_off = (size_t)il * (size_t)s->n_ctx * kvd;
    for (int32_t t = 0; t < n_tok; t++) {
        const float *cs = s->rope + (size_t)t * (size_t)hp->n_rot;
        rope_apply(s, s->q + t * qd, hp->n_head, cs);
        rope_apply(s, s->k + t * kvd, hp->n_head_kv, cs);
        const size_t off = layer_off + (size_t)(pos0 + t) * kvd;
        if (s->kv_f32) {
            memcpy((float *)s->k_cache + off, s->k + t * kvd, kvd * sizeof(float));
            memcpy((float *)s->v_cache + off, s->v + t * kvd, kvd * sizeof(float));
        } else {
            nvl__cpu_f32_to_f16(s->k + t * kvd, (uint16_t *)s->k_cache + off, (int64_t)kvd);
            nvl__cpu_f32_to_f16(s->v + t * kvd, (uint16_t *)s->v_cache + off, (int64_t)kvd);
        }
    }

    struct attn_job aj = {.s = s, .layer = il, .n_tok = n_tok, .pos0 = pos0};
    atomic_init(&aj.next, 0);
    nvl_threadpool_run(s->pool, attn_worker, &aj);

    /* x += Wo · att */
    g.n = 0;
    prepared = 0;
    mm_add(s, &g, &l->wo, s->att, qd, n_tok, s->x, e, true, &prepared);
    mm_group_run(s, &g);

    /* Feed-forward block: x += Wdown · (silu(Wgate · xn) * (Wup · xn)), xn = rms(x) * ffn_norm. */
    for (int32_t t = 0; t < n_tok; t++)
        nvl__cpu_rmsnorm(s->xn + t * e, s->x + t * e, l->ffn_norm.data, hp->n_embd, hp->rms_eps);
    g.n = 0;
    prepared = 0;
    mm_add(s, &g, &l->ffn_gate, s->xn, e, n_tok, s->gate, ff, false, &prepared);
    mm_add(s, &g, &l->ffn_up, s->xn, e, n_tok, s->up, ff, false, &prepared);
    mm_group_run(s, &g);

    struct swiglu_job sj = {
        .s = s,
        .n_tok = n_tok,
        .act = s->f32_act ? CPU_ACT_F32 : nvl__cpu_type_ops(l->ffn_down.type)->act,
    };
    nvl_threadpool_run(s->pool, swiglu_worker, &sj);
    g.n = 0;
    /* swiglu_worker already quantized the gate rows for this format. */
    prepared = 1u << sj.act;
    mm_add(s, &g, &l->ffn_down, s->gate, ff, n_tok, s->x, e, true, &prepared);
    mm_group_run(s, &g);
}

/* Runs one batch; the logits of tokens [out_first, n_tok) go to `logits` (n_vocab apart). */
static void batch_forward(struct nvl_session *s, const int32_t *tokens, int32_t n_tok, int32_t pos0,
                          int32_t out_first, float *logits)
{
    const struct nvl_llama_hparams *hp = s->hp;
    const struct nvl_llama_weights *w = &s->model->w;
    const size_t e = (size_t)hp->n_embd;

    for (int32_t t = 0; t < n_tok; t++) {
        const uint8_t *row =
            (const uint8_t *)w->token_embd.data + (uint64_t)tokens[t] * w->token_embd.row_bytes;
        /* Cannot fail: the type and row length were checked at load. */
        nvl_dequantize_row(w->token_embd.type, row, s->x + t * e, hp->n_embd);
    }
    rope_prepare(s, n_tok, pos0);
    for (int32_t il = 0; il < hp->n_layer; il++)
        layer_forward(s, il, n_tok, pos0);

    const int32_t n_out = n_tok - out_first;
    if (n_out <= 0)
        return;
    for (int32_t t = 0; t < n_out; t++)
        nvl__cpu_rmsnorm(s->xn + t * e, s->x + (size_t)(out_first + t) * e, w->output_norm.data,
                         hp->n_embd, hp->rms_eps);
    struct mm_group g = {.n = 0};
    unsigned prepared = 0;
    mm_add(s, &g, &w->output, s->xn, e, n_out, logits, (size_t)hp->n_vocab, false, &prepared);
    mm_group_run(s, &g);
}

int nvl_session_eval(struct nvl_session *s, const int32_t *tokens, int32_t n, bool logits_all)
{
    const struct nvl_llama_hparams *hp = s->hp;
    if (n < 1)
        return -EINVAL;
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return -EINVAL;
    if (n > s->n_ctx - s->n_past)
        return -ENOSPC;

    const int32_t rows = logits_all ? n : 1;
    if (rows > s->logits_cap) {
        float *l = realloc(s->logits, (size_t)rows * (size_t)hp->n_vocab * sizeof(float));
        if (!l)
            return -ENOMEM;
        s->logits = l;
        s->logits_cap = rows;
    }

    for (int32_t b = 0; b < n; b += s->n_batch) {
        const int32_t nb = n - b < s->n_batch ? n - b : s->n_batch;
        const bool last = b + nb == n;
        int32_t out_first = nb;
        float *out = s->logits;
        if (logits_all) {
            out_first = 0;
            out = s->logits + (size_t)b * (size_t)hp->n_vocab;
        } else if (last) {
            out_first = nb - 1;
        }
        if (s->gpu) {
            const int rc =
                nvl__gpu_session_forward(s->gpu, tokens + b, nb, s->n_past, out_first, out);
            if (rc)
                return rc;
        } else {
            batch_forward(s, tokens + b, nb, s->n_past, out_first, out);
        }
        memcpy(s->tokens + s->n_past, tokens + b, (size_t)nb * sizeof(*tokens));
        s->n_past += nb;
    }
    s->logits_first = logits_all ? 0 : n - 1;
    s->n_logits = rows;
    return 0;
}
