/* nvgguf quantize [--threads N] IN OUT TYPE: writes a copy of IN with its weight matrices in TYPE.
 *
 * Which tensors change follows llama.cpp's llama-quantize for the llama family:
 *   - 1-D tensors (norms, biases) and anything not named *.weight become or stay F32;
 *   - the output projection (output.weight, or token_embd.weight when the output is tied to it)
 *     gets Q6_K when TYPE is a 4- or 5-bit format, as it is the most error-sensitive matrix;
 *   - a matrix whose row length ne[0] is not a multiple of the type's block falls back:
 *     Q4_K -> Q5_0, Q6_K -> Q8_0, and to the source's float type when no block fits;
 *   - a tensor already in the chosen type is copied byte for byte.
 * All metadata is copied; general.file_type and general.quantization_version are set.
 * Tensors are produced one at a time while the file is written, in parallel over rows, so memory
 * use is a few MiB whatever the model size. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "nvl_model.h"

/* Elements converted per batch (spread over the threads, then written). */
#define QUANT_BATCH_ELEMENTS (1u << 22)
#define QUANT_MAX_THREADS    256

/* llama.cpp's llama_ftype values for general.file_type. */
static const struct {
    enum nvl_ggml_type type;
    uint32_t ftype;
} file_types[] = {
    {NVL_GGML_TYPE_F32, 0},   {NVL_GGML_TYPE_F16, 1},   {NVL_GGML_TYPE_Q4_0, 2},
    {NVL_GGML_TYPE_Q4_1, 3},  {NVL_GGML_TYPE_Q8_0, 7},  {NVL_GGML_TYPE_Q5_0, 8},
    {NVL_GGML_TYPE_Q5_1, 9},  {NVL_GGML_TYPE_Q4_K, 14}, /* MOSTLY_Q4_K_S */
    {NVL_GGML_TYPE_Q6_K, 18}, {NVL_GGML_TYPE_BF16, 32},
};

struct quant_tensor {
    const struct nvl_gguf *g;
    const struct nvl_gguf_tensor *src;
    enum nvl_ggml_type type; /* output type */
    const char *why;         /* why type differs from what was asked, or NULL */
    uint64_t index;
};

struct quant_job {
    struct quant_tensor *tensors;
    uint64_t n_tensors;
    uint64_t done;
    int n_threads;
    char err[512];
};

/* One thread's share of a batch: rows [row0, row1) of the batch. */
struct quant_slice {
    const struct quant_tensor *qt;
    const uint8_t *src;  /* first source row of the batch */
    uint8_t *dst;        /* first output row of the batch */
    uint64_t row0, row1; /* rows of the batch for this thread */
    uint64_t src_row, dst_row;
    float *scratch;  /* one row of fp32 */
    int64_t bad_row; /* first row with a non-finite value, or -1 */
    int ret;
};

static void *quant_slice_run(void *arg)
{
    struct quant_slice *s = arg;
    const int64_t n = (int64_t)s->qt->src->ne[0];

    for (uint64_t r = s->row0; r < s->row1; r++) {
        int ret = nvl_dequantize_row(s->qt->src->type, s->src + r * s->src_row, s->scratch, n);

        if (!ret) {
            /* The quantizers assume finite input; a NaN would be undefined behaviour. */
            for (int64_t i = 0; i < n; i++) {
                if (!isfinite(s->scratch[i])) {
                    s->bad_row = (int64_t)r;
                    return NULL;
                }
            }
            ret = nvl_quantize_row(s->qt->type, s->scratch, s->dst + r * s->dst_row, n);
        }
        if (ret) {
            s->ret = ret;
            return NULL;
        }
    }
    return NULL;
}

static int produce_tensor(void *ctx, const struct nvl_gguf_tensor *t, struct nvl_gguf_sink *sink)
{
    struct quant_job *job = ctx;
    struct quant_tensor *qt = &job->tensors[job->done++];
    const struct nvl_gguf_tensor *src = qt->src;
    const uint8_t *data = nvl_gguf_tensor_data(qt->g, src);
    struct quant_slice slices[QUANT_MAX_THREADS];
    pthread_t threads[QUANT_MAX_THREADS];
    uint64_t rows, src_row, dst_row, batch_rows;
    uint8_t *out = NULL;
    float *scratch = NULL;
    int ret = 0, n_threads = job->n_threads;
    char shape[64];

    snprintf(shape, sizeof(shape), "%" PRIu64 " x %" PRIu64, src->ne[0],
             nvl_gguf_tensor_nelements(src) / src->ne[0]);
    printf("[%4" PRIu64 "/%4" PRIu64 "] %-36s %-16s %-6s -> %-6s%s%s\n", job->done, job->n_tensors,
           src->name, shape, nvl_ggml_type_name(src->type), nvl_ggml_type_name(qt->type),
           qt->why ? "  " : "", qt->why ? qt->why : "");
    fflush(stdout);

    if (qt->type == src->type)
        return nvl_gguf_sink_write(sink, data, (size_t)src->size);

    rows = nvl_gguf_tensor_nelements(src) / src->ne[0];
    if (nvl_ggml_row_size(src->type, src->ne[0], &src_row) ||
        nvl_ggml_row_size(qt->type, src->ne[0], &dst_row) || dst_row * rows != t->size)
        return -EINVAL;
    batch_rows = QUANT_BATCH_ELEMENTS / src->ne[0];
    if (batch_rows < 1)
        batch_rows = 1;
    if (batch_rows > rows)
        batch_rows = rows;
    if ((uint64_t)n_threads > batch_rows)
        n_threads = (int)batch_rows;
    out = malloc(batch_rows * dst_row);
    scratch = malloc((size_t)n_threads * src->ne[0] * sizeof(float));
    if (!out || !scratch) {
        ret = -ENOMEM;
        goto err_free;
    }

    for (uint64_t r0 = 0; r0 < rows && !ret; r0 += batch_rows) {
        const uint64_t n = rows - r0 < batch_rows ? rows - r0 : batch_rows;
        int started = 0;

        for (int k = 0; k < n_threads; k++) {
            slices[k] = (struct quant_slice){
                .qt = qt,
                .src = data + r0 * src_row,
                .dst = out,
                .row0 = n * (uint64_t)k / (uint64_t)n_threads,
                .row1 = n * (uint64_t)(k + 1) / (uint64_t)n_threads,
                .src_row = src_row,
                .dst_row = dst_row,
                .scratch = scratch + (size_t)k * src->ne[0],
                .bad_row = -1,
            };
        }
        /* Slice 0 runs on this thread. */
        for (int k = 1; k < n_threads; k++) {
            if (pthread_create(&threads[k], NULL, quant_slice_run, &slices[k]))
                break;
            started = k;
        }
        quant_slice_run(&slices[0]);
        for (int k = started + 1; k < n_threads; k++)
            quant_slice_run(&slices[k]); /* threads that could not be started */
        for (int k = 1; k <= started; k++)
            pthread_join(threads[k], NULL);
        for (int k = 0; k < n_threads && !ret; k++) {
            if (slices[k].bad_row >= 0) {
                snprintf(job->err, sizeof(job->err),
                         "tensor '%s': row %" PRIu64 " has a NaN or infinite value", src->name,
                         r0 + (uint64_t)slices[k].bad_row);
                ret = -EINVAL;
            } else if (slices[k].ret) {
                snprintf(job->err, sizeof(job->err), "tensor '%s': %s -> %s failed: %s", src->name,
                         nvl_ggml_type_name(src->type), nvl_ggml_type_name(qt->type),
                         strerror(-slices[k].ret));
                ret = slices[k].ret;
            }
        }
        if (!ret)
            ret = nvl_gguf_sink_write(sink, out, (size_t)(n * dst_row));
    }

err_free:
    free(scratch);
    free(out);
    return ret;
}

static bool has_suffix(const char *s, const char *suffix)
{
    const size_t n = strlen(s), m = strlen(suffix);

    return n >= m && !strcmp(s + n - m, suffix);
}

static bool is_float_type(enum nvl_ggml_type t)
{
    return t == NVL_GGML_TYPE_F32 || t == NVL_GGML_TYPE_F16 || t == NVL_GGML_TYPE_BF16;
}

/* The output type of tensor t for requested type `want` (see the file comment). */
static enum nvl_ggml_type choose_type(const struct nvl_gguf_tensor *t, enum nvl_ggml_type want,
                                      bool has_output, const char **why)
{
    const bool matrix = t->n_dims >= 2 && nvl_gguf_tensor_nelements(t) > t->ne[0];
    const bool is_output =
        !strcmp(t->name, "output.weight") || (!has_output && !strcmp(t->name, "token_embd.weight"));
    enum nvl_ggml_type type = want;

    *why = NULL;
    if (!matrix || !has_suffix(t->name, ".weight")) {
        if (t->type != NVL_GGML_TYPE_F32)
            *why = "(not a weight matrix: f32)";
        return NVL_GGML_TYPE_F32;
    }
    if (is_output && want != NVL_GGML_TYPE_Q8_0 && !is_float_type(want) &&
        want != NVL_GGML_TYPE_Q6_K) {
        type = NVL_GGML_TYPE_Q6_K;
        *why = has_output ? "(output projection: q6_K)" : "(tied output/embedding: q6_K)";
    }
    if (t->ne[0] % nvl_ggml_block_size(type)) {
        if (type == NVL_GGML_TYPE_Q4_K)
            type = NVL_GGML_TYPE_Q5_0;
        else if (type == NVL_GGML_TYPE_Q6_K)
            type = NVL_GGML_TYPE_Q8_0;
        *why = "(row length not a multiple of the block: fallback)";
        if (t->ne[0] % nvl_ggml_block_size(type)) {
            type = is_float_type(t->type) ? t->type : NVL_GGML_TYPE_F16;
            *why = "(row length not a multiple of any block: kept in float)";
        }
    }
    return type;
}

static int parse_threads(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*end || v < 1 || v > QUANT_MAX_THREADS)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;

    return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int nvgguf_cmd_quantize(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *usage = "usage: nvgguf quantize [--threads N] IN.gguf OUT.gguf TYPE\n"
                        "TYPE: q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q6_K, f16, bf16 or f32\n";
    struct quant_job job = {.n_threads = 0};
    struct nvl_gguf_writer *w = NULL;
    struct nvl_gguf *g = NULL;
    enum nvl_ggml_type want;
    const char *in, *out;
    uint32_t ftype = UINT32_MAX;
    struct timespec t0, t1;
    char err[512];
    int c, ret, status = 1;
    bool has_output;

    optind = 1;
    while ((c = getopt_long(argc, argv, "t:h", long_opts, NULL)) != -1) {
        if (c == 't' && !parse_threads(optarg, &job.n_threads))
            continue;
        fprintf(stderr, c == 't' ? "nvgguf quantize: bad --threads '%s'\n%s" : "%s%s",
                c == 't' ? optarg : "", usage);
        return c == 'h' ? 0 : 2;
    }
    if (argc - optind != 3) {
        fprintf(stderr, "%s", usage);
        return 2;
    }
    in = argv[optind];
    out = argv[optind + 1];
    if (nvl_ggml_type_from_name(argv[optind + 2], &want) == 0)
        for (size_t i = 0; i < sizeof(file_types) / sizeof(file_types[0]); i++)
            if (file_types[i].type == want)
                ftype = file_types[i].ftype;
    if (ftype == UINT32_MAX) {
        fprintf(stderr, "nvgguf quantize: unsupported type '%s'\n%s", argv[optind + 2], usage);
        return 2;
    }
    if (!job.n_threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        job.n_threads = n < 1 ? 1 : n > QUANT_MAX_THREADS ? QUANT_MAX_THREADS : (int)n;
    }
    if (same_file(in, out)) {
        fprintf(stderr, "nvgguf quantize: output %s is the input file\n", out);
        return 2;
    }

    if (nvl_gguf_open(in, &g, err, sizeof(err))) {
        fprintf(stderr, "nvgguf quantize: %s\n", err);
        return 1;
    }
    ret = nvl_gguf_writer_create(&w);
    if (ret)
        goto err_close;
    for (uint64_t i = 0; i < nvl_gguf_kv_count(g) && !ret; i++)
        ret = nvl_gguf_writer_set_kv_from(w, g, (int64_t)i);
    if (!ret)
        ret = nvl_gguf_writer_set_u32(w, "general.file_type", ftype);
    if (!ret)
        ret = nvl_gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (ret) {
        fprintf(stderr, "nvgguf quantize: copying metadata: %s\n", strerror(-ret));
        goto err_destroy;
    }

    job.n_tensors = nvl_gguf_tensor_count(g);
    job.tensors = calloc(job.n_tensors ? job.n_tensors : 1, sizeof(*job.tensors));
    if (!job.tensors) {
        fprintf(stderr, "nvgguf quantize: out of memory\n");
        goto err_destroy;
    }
    has_output = nvl_gguf_get_tensor(g, "output.weight") != NULL;
    for (uint64_t i = 0; i < job.n_tensors; i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);
        struct quant_tensor *qt = &job.tensors[i];

        qt->g = g;
        qt->src = t;
        qt->index = i;
        qt->type = choose_type(t, want, has_output, &qt->why);
        if (qt->type != t->type && !nvl_ggml_type_traits(t->type)->can_dequantize) {
            fprintf(stderr, "nvgguf quantize: %s: tensor '%s' is %s, which cannot be converted\n",
                    in, t->name, nvl_ggml_type_name(t->type));
            goto err_free;
        }
        ret = nvl_gguf_writer_add_tensor_fn(w, t->name, qt->type, t->n_dims, t->ne, produce_tensor,
                                            &job);
        if (ret) {
            fprintf(stderr, "nvgguf quantize: tensor '%s': %s\n", t->name, strerror(-ret));
            goto err_free;
        }
    }

    printf("%s -> %s: %s, %d threads\n", in, out, nvl_ggml_type_name(want), job.n_threads);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ret = nvl_gguf_writer_write_file(w, out, err, sizeof(err));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (ret) {
        fprintf(stderr, "nvgguf quantize: %s\n", job.err[0] ? job.err : err);
        goto err_free;
    }
    printf("wrote %s: %" PRIu64 " -> %" PRIu64 " bytes in %.1f s\n", out, nvl_gguf_file_size(g),
           nvl_gguf_writer_file_size(w),
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    status = 0;

err_free:
    free(job.tensors);
err_destroy:
    nvl_gguf_writer_destroy(w);
err_close:
    nvl_gguf_close(g);
    return status;
}
