/* nvgguf synth: writes a llama-family GGUF of a real model's shape with random weights, for
 * benchmarks of models that are not at hand (an 8B in three quant types, a 70B).
 *
 * The weights are generated directly in quantized form: random quants and small positive fp16
 * scales (so activations keep a sane size through the layers), block by block from a splitmix64
 * stream seeded by (seed, tensor, block), so the file is the same for any thread count. Norm
 * weights are ones. The vocabulary is a placeholder SentencePiece ("llama") vocab of the shape's
 * size: <unk>, <s>, </s>, the 256 byte tokens, then "tok<N>". Generation runs on all CPUs in
 * chunks and streams through the GGUF writer, so the speed is the disk's. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "nvl_model.h"

#define SYNTH_CHUNK       (64u << 20) /* bytes generated per round of threads */
#define SYNTH_MAX_THREADS 64

struct synth_shape {
    const char *name;
    int32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    float rope_base;
};

static const struct synth_shape shapes[] = {
    {"llama3-8b", 4096, 32, 32, 8, 14336, 128256, 8192, 500000.0f},
    {"llama3-70b", 8192, 80, 64, 8, 28672, 128256, 8192, 500000.0f},
    {"llama2-7b", 4096, 32, 32, 32, 11008, 32000, 4096, 10000.0f},
    {"llama2-13b", 5120, 40, 40, 40, 13824, 32000, 4096, 10000.0f},
    {"llama2-70b", 8192, 80, 64, 8, 28672, 32000, 4096, 10000.0f},
    {"tiny", 256, 4, 8, 4, 768, 1024, 2048, 10000.0f}, /* tests */
};

struct synth_ctx;

struct synth_job {
    struct synth_ctx *sc;
    enum nvl_ggml_type type;
    uint64_t seed;
    uint64_t tensor; /* index, part of the seed */
    bool ones;       /* norm weights */
};

struct fill_part {
    const struct synth_job *job;
    uint8_t *dst;
    uint64_t first_block; /* index in the tensor */
    uint64_t n_blocks;
};

static void *fill_thread(void *arg)
{
    const struct fill_part *fp = arg;
    const struct synth_job *j = fp->job;
    const uint32_t bs = nvl_ggml_type_size(j->type);
    for (uint64_t b = 0; b < fp->n_blocks; b++) {
        uint8_t *p = fp->dst + b * bs;
        if (j->ones) {
            const float one = 1.0f;
            memcpy(p, &one, 4);
            continue;
        }
        const uint64_t blk = fp->first_block + b;
        nvl_quant_random_block(j->type, p,
                               j->seed ^ (j->tensor << 40) ^ (blk * 0xd1b54a32d192ed03ull));
    }
    return NULL;
}

struct synth_ctx {
    int n_threads;
    uint8_t *buf; /* SYNTH_CHUNK bytes */
    uint64_t seed;
    uint64_t written, total;
    double t0;
    bool progress;
    struct synth_job jobs[4096];
    size_t n_jobs;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The writer's callback: the tensor's blocks, a chunk at a time, all threads on each chunk. */
static int produce(void *ctx, const struct nvl_gguf_tensor *t, struct nvl_gguf_sink *sink)
{
    const struct synth_job *j = ctx;
    struct synth_ctx *sc = j->sc;
    const uint32_t bs = nvl_ggml_type_size(j->type);
    const uint64_t n_blocks = t->size / bs, per_chunk = SYNTH_CHUNK / bs;
    for (uint64_t b0 = 0; b0 < n_blocks; b0 += per_chunk) {
        const uint64_t nb = n_blocks - b0 < per_chunk ? n_blocks - b0 : per_chunk;
        struct fill_part parts[SYNTH_MAX_THREADS];
        pthread_t th[SYNTH_MAX_THREADS];
        bool started[SYNTH_MAX_THREADS] = {false};
        const int nt = nb < 4096 ? 1 : sc->n_threads;
        for (int i = 0; i < nt; i++) {
            const uint64_t lo = nb * (uint64_t)i / (uint64_t)nt;
            const uint64_t hi = nb * (uint64_t)(i + 1) / (uint64_t)nt;
            parts[i] = (struct fill_part){j, sc->buf + lo * bs, b0 + lo, hi - lo};
            started[i] = i > 0 && pthread_create(&th[i], NULL, fill_thread, &parts[i]) == 0;
        }
        /* The caller's share, and the share of any thread that did not start. */
        for (int i = 0; i < nt; i++)
            if (!started[i])
                fill_thread(&parts[i]);
        for (int i = 0; i < nt; i++)
            if (started[i])
                pthread_join(th[i], NULL);
        const int rc = nvl_gguf_sink_write(sink, sc->buf, nb * bs);
        if (rc)
            return rc;
        sc->written += nb * bs;
        if (sc->progress) {
            const double dt = now_s() - sc->t0;
            fprintf(stderr, "\rnvgguf synth: %.2f / %.2f GB, %.2f GB/s", sc->written / 1e9,
                    sc->total / 1e9, dt > 0 ? sc->written / dt / 1e9 : 0.0);
        }
    }
    return 0;
}

static void synth_usage(FILE *f)
{
    fprintf(f, "usage: nvgguf synth --shape SHAPE --type TYPE -o OUT.gguf [--layers N] [--seed S] "
               "[--threads N]\n  shapes:");
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        fprintf(f, " %s", shapes[i].name);
    fprintf(f, "\n  types: q4_0 q4_1 q5_0 q5_1 q8_0 q4_K q5_K q6_K f16 bf16 f32\n");
}

/* The placeholder vocabulary. */
static int add_vocab(struct nvl_gguf_writer *w, int32_t n_vocab)
{
    char **strs = calloc((size_t)n_vocab, sizeof(*strs));
    float *scores = calloc((size_t)n_vocab, sizeof(*scores));
    int32_t *types = calloc((size_t)n_vocab, sizeof(*types));
    int rc = -ENOMEM;
    if (!strs || !scores || !types)
        goto out;
    for (int32_t i = 0; i < n_vocab; i++) {
        char tmp[32];
        if (i == 0)
            snprintf(tmp, sizeof(tmp), "<unk>");
        else if (i == 1)
            snprintf(tmp, sizeof(tmp), "<s>");
        else if (i == 2)
            snprintf(tmp, sizeof(tmp), "</s>");
        else if (i < 3 + 256)
            snprintf(tmp, sizeof(tmp), "<0x%02X>", i - 3);
        else
            snprintf(tmp, sizeof(tmp), "tok%d", i);
        strs[i] = strdup(tmp);
        if (!strs[i])
            goto out;
        scores[i] = -(float)i;
        types[i] = i == 0 ? 2 : (i < 3 ? 3 : (i < 3 + 256 ? 6 : 1));
    }
    if ((rc = nvl_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) ||
        (rc = nvl_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs,
                                          NULL, (uint64_t)n_vocab)) ||
        (rc = nvl_gguf_writer_set_arr(w, "tokenizer.ggml.scores", NVL_GGUF_TYPE_FLOAT32, scores,
                                      (uint64_t)n_vocab)) ||
        (rc = nvl_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", NVL_GGUF_TYPE_INT32, types,
                                      (uint64_t)n_vocab)) ||
        (rc = nvl_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) ||
        (rc = nvl_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
        (rc = nvl_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2)))
        goto out;
out:
    if (strs)
        for (int32_t i = 0; i < n_vocab; i++)
            free(strs[i]);
    free(strs);
    free(scores);
    free(types);
    return rc;
}

static int add_tensor(struct nvl_gguf_writer *w, struct synth_ctx *sc, const char *name,
                      enum nvl_ggml_type type, int64_t ne0, int64_t ne1)
{
    if (sc->n_jobs >= sizeof(sc->jobs) / sizeof(sc->jobs[0]))
        return -E2BIG;
    struct synth_job *j = &sc->jobs[sc->n_jobs];
    *j = (struct synth_job){.sc = sc,
                            .type = type,
                            .seed = sc->seed,
                            .tensor = sc->n_jobs,
                            .ones = type == NVL_GGML_TYPE_F32 && ne1 == 0};
    sc->n_jobs++;
    const uint64_t ne[2] = {(uint64_t)ne0, (uint64_t)ne1};
    uint64_t rb = 0;
    nvl_ggml_row_size(type, (uint64_t)ne0, &rb);
    sc->total += rb * (uint64_t)(ne1 ? ne1 : 1);
    return nvl_gguf_writer_add_tensor_fn(w, name, type, ne1 ? 2 : 1, ne, produce, j);
}

int nvgguf_cmd_synth(int argc, char **argv)
{
    const char *shape_name = NULL, *type_name = NULL, *out = NULL;
    int32_t layers = -1;
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            synth_usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "nvgguf synth: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--shape"))
            shape_name = v;
        else if (!strcmp(a, "--type"))
            type_name = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            out = v;
        else if (!strcmp(a, "--layers"))
            layers = (int32_t)atoi(v);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--threads"))
            threads = atol(v);
        else {
            fprintf(stderr, "nvgguf synth: unknown option '%s'\n", a);
            synth_usage(stderr);
            return 2;
        }
        i++;
    }
    const struct synth_shape *sh = NULL;
    for (size_t i = 0; shape_name && i < sizeof(shapes) / sizeof(shapes[0]); i++)
        if (!strcmp(shapes[i].name, shape_name))
            sh = &shapes[i];
    enum nvl_ggml_type type;
    if (!sh || !type_name || !out || nvl_ggml_type_from_name(type_name, &type) ||
        !nvl_ggml_type_traits(type) || !nvl_ggml_type_traits(type)->can_dequantize ||
        type == NVL_GGML_TYPE_Q8_K || type == NVL_GGML_TYPE_Q8_1 || layers == 0 || layers < -1 ||
        threads < 1) {
        fprintf(stderr, "nvgguf synth: %s\n",
                !sh ? "unknown or missing --shape"
                    : (!type_name || !out ? "--type and -o are required"
                                          : "bad --type, --layers or --threads"));
        synth_usage(stderr);
        return 2;
    }
    const int32_t n_layer = layers > 0 ? layers : sh->n_layer;
    const int32_t head_dim = sh->n_embd / sh->n_head, kv_dim = sh->n_head_kv * head_dim;
    const uint32_t bsz = nvl_ggml_block_size(type);
    if (sh->n_embd % (int32_t)bsz || sh->n_ff % (int32_t)bsz) {
        fprintf(stderr, "nvgguf synth: %s rows are not whole %s blocks\n", sh->name, type_name);
        return 2;
    }

    struct synth_ctx *sc = calloc(1, sizeof(*sc));
    struct nvl_gguf_writer *w = NULL;
    int rc = -ENOMEM;
    if (!sc || !(sc->buf = malloc(SYNTH_CHUNK)))
        goto out;
    sc->n_threads = threads > SYNTH_MAX_THREADS ? SYNTH_MAX_THREADS : (int)threads;
    sc->seed = seed;
    sc->progress = isatty(STDERR_FILENO);
    if ((rc = nvl_gguf_writer_create(&w)))
        goto out;
    char name[96];
    snprintf(name, sizeof(name), "synthetic %s %s", sh->name, type_name);
    if ((rc = nvl_gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (rc = nvl_gguf_writer_set_str(w, "general.name", name)) ||
        (rc = nvl_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)sh->n_ctx)) ||
        (rc = nvl_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)sh->n_embd)) ||
        (rc = nvl_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)n_layer)) ||
        (rc = nvl_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)sh->n_ff)) ||
        (rc = nvl_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)sh->n_head)) ||
        (rc = nvl_gguf_writer_set_u32(w, "llama.attention.head_count_kv",
                                      (uint32_t)sh->n_head_kv)) ||
        (rc = nvl_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)head_dim)) ||
        (rc = nvl_gguf_writer_set_f32(w, "llama.rope.freq_base", sh->rope_base)) ||
        (rc = nvl_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f)) ||
        (rc = add_vocab(w, sh->n_vocab)))
        goto out;

    const int64_t e = sh->n_embd, ff = sh->n_ff, qd = (int64_t)sh->n_head * head_dim;
    if ((rc = add_tensor(w, sc, "token_embd.weight", type, e, sh->n_vocab)))
        goto out;
    for (int32_t il = 0; il < n_layer; il++) {
        const struct {
            const char *suffix;
            bool norm;
            int64_t ne0, ne1;
        } ts[] = {
            {"attn_norm", true, e, 0},     {"attn_q", false, e, qd},
            {"attn_k", false, e, kv_dim},  {"attn_v", false, e, kv_dim},
            {"attn_output", false, qd, e}, {"ffn_norm", true, e, 0},
            {"ffn_gate", false, e, ff},    {"ffn_up", false, e, ff},
            {"ffn_down", false, ff, e},
        };
        for (size_t t = 0; t < sizeof(ts) / sizeof(ts[0]); t++) {
            char tn[64];
            snprintf(tn, sizeof(tn), "blk.%d.%s.weight", (int)il, ts[t].suffix);
            if ((rc = add_tensor(w, sc, tn, ts[t].norm ? NVL_GGML_TYPE_F32 : type, ts[t].ne0,
                                 ts[t].ne1)))
                goto out;
        }
    }
    if ((rc = add_tensor(w, sc, "output_norm.weight", NVL_GGML_TYPE_F32, e, 0)) ||
        (rc = add_tensor(w, sc, "output.weight", type, e, sh->n_vocab)))
        goto out;

    char err[512] = "";
    sc->t0 = now_s();
    rc = nvl_gguf_writer_write_file(w, out, err, sizeof(err));
    if (sc->progress)
        fputc('\n', stderr);
    if (rc) {
        fprintf(stderr, "nvgguf synth: %s: %s\n", out, err[0] ? err : nvl_strerror(rc));
        goto out;
    }
    /* Whole 4 KiB blocks, so that a drive (or the software controller) serving the file as
     * a namespace holds all of it. */
    const uint64_t size = nvl_gguf_writer_file_size(w), padded = (size + 4095) & ~4095ull;
    if (padded != size && truncate(out, (off_t)padded) != 0) {
        rc = -errno;
        fprintf(stderr, "nvgguf synth: %s: cannot pad to %llu bytes: %s\n", out,
                (unsigned long long)padded, nvl_strerror(rc));
        goto out;
    }
    const double dt = now_s() - sc->t0;
    printf("%s: %s with %d layers, %s, %.2f GB in %.1f s (%.2f GB/s, %d threads)\n", out, sh->name,
           n_layer, nvl_ggml_type_name(type), nvl_gguf_writer_file_size(w) / 1e9, dt,
           dt > 0 ? nvl_gguf_writer_file_size(w) / dt / 1e9 : 0.0, sc->n_threads);
out:
    if (rc && rc != -EINVAL)
        fprintf(stderr, "nvgguf synth: %s\n", nvl_strerror(rc));
    nvl_gguf_writer_destroy(w);
    if (sc)
        free(sc->buf);
    free(sc);
    return rc ? 1 : 0;
}
