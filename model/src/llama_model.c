/* Loading a llama-family model from GGUF: hyperparameters, tensor binding and validation. Every
 * shape and type is checked here, once, so the forward pass can trust the descriptors. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "llama_internal.h"
#include "model_fail.h"
#include "nvl_driver/log.h"

#define LLAMA_LOG "llama"
/* Sanity bounds for hyperparameters read from the file: far above any real model, low enough
 * that products of them cannot overflow the sizes computed from them. */
#define LLAMA_MAX_DIM   (1 << 20)
#define LLAMA_MAX_LAYER 4096

struct load_ctx {
    struct nvl_llama_model *m;
    char *err;
    size_t err_len;
};

/* Reads an integer key into *out; a missing key keeps *out (the default) unless required. */
static int get_dim(struct load_ctx *lc, const char *key, bool required, int32_t *out)
{
    int64_t v;
    int rc = nvl_gguf_get_int(lc->m->gguf, key, &v);
    if (rc == -ENOENT && !required)
        return 0;
    if (rc == -ENOENT)
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL, "missing key %s", key);
    if (rc)
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL, "key %s is not an integer",
                               key);
    if (v < 1 || v > LLAMA_MAX_DIM)
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL,
                               "key %s = %lld is out of range", key, (long long)v);
    *out = (int32_t)v;
    return 0;
}

static int get_real(struct load_ctx *lc, const char *key, float *out)
{
    double v;
    int rc = nvl_gguf_get_float(lc->m->gguf, key, &v);
    if (rc == -ENOENT)
        return 0;
    if (rc || !(v > 0.0))
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL,
                               "key %s must be a positive number", key);
    *out = (float)v;
    return 0;
}

static int load_hparams(struct load_ctx *lc)
{
    struct nvl_llama_hparams *hp = &lc->m->hp;
    const struct nvl_gguf *g = lc->m->gguf;
    const char *arch = NULL;
    if (nvl_gguf_get_str(g, "general.architecture", &arch, NULL))
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL,
                               "missing key general.architecture");
    if (strcmp(arch, "llama") != 0)
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -ENOTSUP,
                               "architecture '%s' is not supported: the CPU runtime runs the llama "
                               "family (Llama 2, Llama 3.x, TinyLlama, SmolLM2)",
                               arch);

    *hp = (struct nvl_llama_hparams){
        .n_ctx_train = 2048,
        .rope_freq_base = 10000.0f,
        .rope_freq_scale = 1.0f,
        .rms_eps = 1e-5f,
    };
    int rc;
    if ((rc = get_dim(lc, "llama.embedding_length", true, &hp->n_embd)) ||
        (rc = get_dim(lc, "llama.block_count", true, &hp->n_layer)) ||
        (rc = get_dim(lc, "llama.attention.head_count", true, &hp->n_head)) ||
        (rc = get_dim(lc, "llama.feed_forward_length", true, &hp->n_ff)) ||
        (rc = get_dim(lc, "llama.context_length", false, &hp->n_ctx_train)))
        return rc;
    if (hp->n_layer > LLAMA_MAX_LAYER)
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL,
                               "llama.block_count = %d is out of range", hp->n_layer);
    hp->n_head_kv = hp->n_head;
    hp->head_dim = hp->n_embd / hp->n_head;
    int32_t v_dim = 0;
    if ((rc = get_dim(lc, "llama.attention.head_count_kv", false, &hp->n_head_kv)) ||
        (rc = get_dim(lc, "llama.attention.key_length", false, &hp->head_dim)))
        return rc;
    v_dim = hp->head_dim;
    if ((rc = get_dim(lc, "llama.attention.value_length", false, &v_dim)))
        return rc;
    hp->n_rot = hp->head_dim;
    if ((rc = get_dim(lc, "llama.rope.dimension_count", false, &hp->n_rot)))
        return rc;
    if ((rc = get_real(lc, "llama.rope.freq_base", &hp->rope_freq_base)) ||
        (rc = get_real(lc, "llama.attention.layer_norm_rms_epsilon", &hp->rms_eps)))
        return rc;

    const char *scaling = NULL;
    if (nvl_gguf_get_str(g, "llama.rope.scaling.type", &scaling, NULL) == 0 &&
        strcmp(scaling, "none") != 0) {
        float factor = 1.0f;
        if (strcmp(scaling, "linear") != 0)
            return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -ENOTSUP,
                                   "rope scaling '%s' is not supported (linear is)", scaling);
        if ((rc = get_real(lc, "llama.rope.scaling.factor", &factor)))
            return rc;
        hp->rope_freq_scale = 1.0f / factor;
    }

    if (hp->n_head % hp->n_head_kv)
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL,
                               "head_count %d is not a multiple of head_count_kv %d", hp->n_head,
                               hp->n_head_kv);
    if (v_dim != hp->head_dim)
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -ENOTSUP,
                               "key_length %d != value_length %d is not supported", hp->head_dim,
                               v_dim);
    if (hp->n_head * hp->head_dim > LLAMA_MAX_DIM || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL,
                               "rope.dimension_count %d does not fit head size %d", hp->n_rot,
                               hp->head_dim);
    return 0;
}

/* Binds tensor `name` with shape [ne0] or [ne0 rows of ne0, ne1] (ne1 = 0: a vector). A tensor
 * with ne1 < 0 takes the row count from the file and reports it in *t. */
static int bind(struct load_ctx *lc, struct nvl_llama_tensor *t, const char *name, int64_t ne0,
                int64_t ne1, bool optional)
{
    const struct nvl_gguf *g = lc->m->gguf;
    const struct nvl_gguf_tensor *gt = nvl_gguf_get_tensor(g, name);
    memset(t, 0, sizeof(*t));
    if (!gt)
        return optional ? 0
                        : nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL,
                                          "missing tensor %s", name);

    const uint64_t rows = gt->n_dims >= 2 ? gt->ne[1] : 1;
    const bool vector = ne1 == 0;
    if (gt->ne[2] != 1 || gt->ne[3] != 1 || gt->ne[0] != (uint64_t)ne0 ||
        (vector && gt->n_dims != 1) || (!vector && ne1 > 0 && rows != (uint64_t)ne1) ||
        rows > LLAMA_MAX_DIM * 4ull) {
        char rows_want[32] = "any";
        if (ne1 >= 0)
            snprintf(rows_want, sizeof(rows_want), "%lld", (long long)(vector ? 1 : ne1));
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL,
                               "tensor %s has shape [%llu, %llu, %llu, %llu], expected [%lld, %s]",
                               name, (unsigned long long)gt->ne[0], (unsigned long long)gt->ne[1],
                               (unsigned long long)gt->ne[2], (unsigned long long)gt->ne[3],
                               (long long)ne0, rows_want);
    }
    if (vector && gt->type != NVL_GGML_TYPE_F32)
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -ENOTSUP,
                               "tensor %s has type %s; norm weights must be f32", name,
                               nvl_ggml_type_name(gt->type));
    if (!nvl__cpu_type_ops(gt->type))
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -ENOTSUP,
                               "tensor %s has type %s, which the CPU backend cannot run", name,
                               nvl_ggml_type_name(gt->type));
    uint64_t row_bytes;
    if (nvl_ggml_row_size(gt->type, gt->ne[0], &row_bytes))
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL,
                               "tensor %s: rows of %llu elements are not whole %s blocks", name,
                               (unsigned long long)gt->ne[0], nvl_ggml_type_name(gt->type));
    const void *data = nvl_gguf_tensor_data(g, gt);
    if (!data)
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -EINVAL,
                               "tensor %s: data is not in the file", name);

    *t = (struct nvl_llama_tensor){
        .data = data,
        .type = gt->type,
        .ne0 = (int64_t)gt->ne[0],
        .ne1 = (int64_t)rows,
        .row_bytes = row_bytes,
        .nbytes = gt->size,
        .file_offset = nvl_gguf_tensor_file_offset(g, gt),
    };
    lc->m->weight_bytes += gt->size;
    return 0;
}

static void layer_extent(struct nvl_llama_layer *l)
{
    const struct nvl_llama_tensor *ts[] = {&l->attn_norm, &l->wq,     &l->wk,
                                           &l->wv,        &l->wo,     &l->ffn_norm,
                                           &l->ffn_gate,  &l->ffn_up, &l->ffn_down};
    l->file_begin = UINT64_MAX;
    l->file_end = 0;
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
        if (ts[i]->file_offset < l->file_begin)
            l->file_begin = ts[i]->file_offset;
        if (ts[i]->file_offset + ts[i]->nbytes > l->file_end)
            l->file_end = ts[i]->file_offset + ts[i]->nbytes;
    }
}

static int load_tensors(struct load_ctx *lc)
{
    struct nvl_llama_model *m = lc->m;
    struct nvl_llama_hparams *hp = &m->hp;
    struct nvl_llama_weights *w = &m->w;
    const int64_t e = hp->n_embd, q_dim = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    int rc;

    if ((rc = bind(lc, &w->token_embd, "token_embd.weight", e, -1, false)))
        return rc;
    hp->n_vocab = (int32_t)w->token_embd.ne1;
    if ((rc = bind(lc, &w->output_norm, "output_norm.weight", e, 0, false)) ||
        (rc = bind(lc, &w->output, "output.weight", e, hp->n_vocab, true)) ||
        (rc = bind(lc, &w->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, 0, true)))
        return rc;
    if (!w->output.data) {
        w->output = w->token_embd;
        w->output_tied = true;
    }

    w->layers = calloc((size_t)hp->n_layer, sizeof(*w->layers));
    if (!w->layers)
        return nvl__model_fail(LLAMA_LOG, lc->err, lc->err_len, -ENOMEM, "out of memory");
    for (int32_t il = 0; il < hp->n_layer; il++) {
        struct nvl_llama_layer *l = &w->layers[il];
        char name[64];
#define BIND(field, suffix, ne0, ne1)                                                              \
    do {                                                                                           \
        snprintf(name, sizeof(name), "blk.%d." suffix ".weight", (int)il);                         \
        if ((rc = bind(lc, &l->field, name, (ne0), (ne1), false)))                                 \
            return rc;                                                                             \
    } while (0)
        BIND(attn_norm, "attn_norm", e, 0);
        BIND(wq, "attn_q", e, q_dim);
        BIND(wk, "attn_k", e, kv_dim);
        BIND(wv, "attn_v", e, kv_dim);
        BIND(wo, "attn_output", q_dim, e);
        BIND(ffn_norm, "ffn_norm", e, 0);
        BIND(ffn_gate, "ffn_gate", e, hp->n_ff);
        BIND(ffn_up, "ffn_up", e, hp->n_ff);
        BIND(ffn_down, "ffn_down", hp->n_ff, e);
#undef BIND
        layer_extent(l);
        m->bytes_per_token += l->attn_norm.nbytes + l->wq.nbytes + l->wk.nbytes + l->wv.nbytes +
                              l->wo.nbytes + l->ffn_norm.nbytes + l->ffn_gate.nbytes +
                              l->ffn_up.nbytes + l->ffn_down.nbytes;
    }
    m->bytes_per_token += w->output_norm.nbytes + w->output.nbytes + w->token_embd.row_bytes;
    return 0;
}

int nvl_llama_load(const char *path, struct nvl_llama_model **out, char *err, size_t err_len)
{
    struct nvl_gguf *g;
    *out = NULL;
    int rc = nvl_gguf_open(path, &g, err, err_len);
    if (rc)
        return rc;
    return nvl_llama_load_gguf(g, NULL, out, err, err_len);
}

int nvl_llama_load_gguf(struct nvl_gguf *g, void *owned_data, struct nvl_llama_model **out,
                        char *err, size_t err_len)
{
    *out = NULL;
    struct nvl_llama_model *m = calloc(1, sizeof(*m));
    if (!m) {
        nvl_gguf_close(g);
        free(owned_data);
        return -ENOMEM;
    }
    m->gguf = g;
    m->owned_data = owned_data;
    struct load_ctx lc = {.m = m, .err = err, .err_len = err_len};
    int rc;
    if ((rc = load_hparams(&lc)) || (rc = load_tensors(&lc))) {
        nvl_llama_destroy(m);
        return rc;
    }
    *out = m;
    return 0;
}

void nvl_llama_destroy(struct nvl_llama_model *model)
{
    if (!model)
        return;
    free(model->w.layers);
    nvl_gguf_close(model->gguf);
    free(model->owned_data);
    free(model);
}

const struct nvl_llama_hparams *nvl_llama_hparams(const struct nvl_llama_model *model)
{
    return &model->hp;
}

struct nvl_llama_weights *nvl_llama_weights(struct nvl_llama_model *model)
{
    return &model->w;
}

const struct nvl_gguf *nvl_llama_gguf(const struct nvl_llama_model *model)
{
    return model->gguf;
}

uint64_t nvl_llama_bytes_per_token(const struct nvl_llama_model *model)
{
    return model->bytes_per_token;
}

uint64_t nvl_llama_weight_bytes(const struct nvl_llama_model *model)
{
    return model->weight_bytes;
}

const char *nvl_llama_cpu_kernels(void)
{
    return nvl__cpu_ops_kernels();
}
