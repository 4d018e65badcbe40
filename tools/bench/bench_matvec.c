/* bench_matvec: the decode matrix-vector products of an 8B-shaped model (llama3-8b: 4096 wide,
 * 1024-wide K/V, 14336-wide FFN, 128256-row output, 32 layers), alone, against the HBM limit.
 *
 *   bench_matvec [--type q4_0,q8_0,q4_K] [--layers N] [--reps N]
 *
 * For each type it launches what one decode token launches, with the inputs the forward pass
 * gives them (Q/K/V and gate/up as groups with the RMSNorm prologue, O from fp32 added to the
 * residual, down from ready activations, the output product), captured in a CUDA graph as the
 * decode pass is, and prints the time per token, the weight bytes read per second and their
 * ratio to the device-to-device copy bandwidth measured in the same run (read + write, as
 * nvinfer --benchmark counts its roofline). Then each kind of product alone (a graph of its 32
 * launches), so that a row length or a launch size that falls behind shows, and the fixed cost
 * of one launch by the kind of its input (graphs of 64 launches of 64 rows each). Launches are
 * programmatic dependent launches, as in the decode pass (NVL_GPU_PDL=0: plain ones).
 *
 * The weights are random blocks with small finite scales; every layer has its own copy, so no
 * layer's bytes are in L2 when the next reads them (50 MB of L2, 0.1-0.2 GB a layer). Needs a CUDA
 * GPU; run by scripts/gpu-model-bench.sh (step "matvec"). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "bench_cuda.h"
#include "bench_util.h"
#include "kernels.h"
#include "nvl_model/quant.h"

#define BM_DIM      4096
#define BM_KV       1024
#define BM_FF       14336
#define BM_VOCAB    128256
#define BM_FILL_MB  64
#define BM_MAX_REPS 101

enum bm_kind { BM_QKV, BM_O, BM_GATE_UP, BM_DOWN, BM_OUTPUT, BM_KINDS };
static const char *const bm_kind_name[BM_KINDS] = {"q/k/v", "o", "gate/up", "down", "output"};

struct bm_matrix {
    uint8_t *w;
    int64_t rows, k;
    uint64_t row_bytes;
};

struct bm_layer {
    struct bm_matrix q, k, v, o, gate, up, down;
};

struct bm_model {
    enum nvl_ggml_type type;
    int layers;
    uint8_t *arena;
    struct bm_layer *l;
    struct bm_matrix output;
    float *x, *norm, *q, *kv, *o_in, *resid, *gate, *up, *logits;
    void *down_in; /* the FFN activations, quantized once: ready input for the down product */
    void *o_ready; /* the same for a 4096-wide product */
    double kind_bytes[BM_KINDS];
};

#define BM_CHECK(call)                                                                             \
    do {                                                                                           \
        const cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "bench_matvec: %s: %s\n", #call, cudaGetErrorString(e_));              \
            return -EIO;                                                                           \
        }                                                                                          \
    } while (0)

/* A host buffer of random blocks of type t (nvl_quant_random_block: small finite scales). */
static uint8_t *random_blocks(enum nvl_ggml_type t, size_t bytes)
{
    uint8_t *h = malloc(bytes);
    if (!h)
        return NULL;
    const size_t bs = nvl_ggml_type_size(t);
    for (size_t b = 0; b + bs <= bytes; b += bs)
        nvl_quant_random_block(t, h + b, 0x5eedull ^ (b * 0xd1b54a32d192ed03ull));
    return h;
}

static size_t align256(size_t n)
{
    return (n + 255) & ~(size_t)255;
}

/* Places matrix m (rows x k of type t) at *at in the arena and fills it from the random pattern. */
static int place(struct bm_model *bm, struct bm_matrix *m, int64_t rows, int64_t k, size_t *at,
                 const uint8_t *pattern, size_t pattern_bytes, enum bm_kind kind)
{
    if (nvl_ggml_row_size(bm->type, (uint64_t)k, &m->row_bytes))
        return -EINVAL;
    m->rows = rows;
    m->k = k;
    m->w = bm->arena ? bm->arena + *at : NULL;
    const size_t bytes = (size_t)rows * m->row_bytes;
    *at += align256(bytes);
    bm->kind_bytes[kind] += (double)bytes;
    /* The pattern is whole blocks, so every copy starts at a block boundary. */
    for (size_t done = 0; m->w && done < bytes;) {
        const size_t n = bytes - done < pattern_bytes ? bytes - done : pattern_bytes;
        BM_CHECK(cudaMemcpy(m->w + done, pattern, n, cudaMemcpyHostToDevice));
        done += n;
    }
    return 0;
}

/* Lays the model out (arena NULL: only sizes it) and fills it. */
static int layout(struct bm_model *bm, size_t *total, const uint8_t *pattern, size_t pattern_bytes)
{
    size_t at = 0;
    int rc = 0;
    memset(bm->kind_bytes, 0, sizeof(bm->kind_bytes));
    for (int i = 0; i < bm->layers && !rc; i++) {
        struct bm_layer *l = &bm->l[i];
        if ((rc = place(bm, &l->q, BM_DIM, BM_DIM, &at, pattern, pattern_bytes, BM_QKV)) ||
            (rc = place(bm, &l->k, BM_KV, BM_DIM, &at, pattern, pattern_bytes, BM_QKV)) ||
            (rc = place(bm, &l->v, BM_KV, BM_DIM, &at, pattern, pattern_bytes, BM_QKV)) ||
            (rc = place(bm, &l->o, BM_DIM, BM_DIM, &at, pattern, pattern_bytes, BM_O)) ||
            (rc = place(bm, &l->gate, BM_FF, BM_DIM, &at, pattern, pattern_bytes, BM_GATE_UP)) ||
            (rc = place(bm, &l->up, BM_FF, BM_DIM, &at, pattern, pattern_bytes, BM_GATE_UP)) ||
            (rc = place(bm, &l->down, BM_DIM, BM_FF, &at, pattern, pattern_bytes, BM_DOWN)))
            break;
    }
    if (!rc)
        rc = place(bm, &bm->output, BM_VOCAB, BM_DIM, &at, pattern, pattern_bytes, BM_OUTPUT);
    *total = at;
    return rc;
}

static struct nvl_k_matmul product(const struct bm_model *bm, const struct bm_matrix *m,
                                   const void *x, size_t x_stride, float *y, enum nvl_k_mv_in in,
                                   bool accumulate)
{
    return (struct nvl_k_matmul){
        .w = m->w,
        .type = bm->type,
        .row_bytes = m->row_bytes,
        .k = m->k,
        .rows = m->rows,
        .x = x,
        .x_stride = x_stride,
        .y = y,
        .y_stride = (size_t)m->rows,
        .n_tok = 1,
        .accumulate = accumulate,
        .in = in,
        .norm = in == NVL_K_MV_IN_RMSNORM ? bm->norm : NULL,
        .eps = in == NVL_K_MV_IN_RMSNORM ? 1e-5f : 0.0f,
    };
}

/* Enqueues the products of `kind` (BM_KINDS: all of one token, in the forward pass's order). */
static int enqueue(const struct bm_model *bm, int kind, cudaStream_t s)
{
    const size_t xs = BM_DIM * sizeof(float);
    int rc = 0;
    for (int i = 0; i < bm->layers && !rc; i++) {
        const struct bm_layer *l = &bm->l[i];
        if (kind == BM_QKV || kind == BM_KINDS) {
            const struct nvl_k_matmul g[3] = {
                product(bm, &l->q, bm->x, xs, bm->q, NVL_K_MV_IN_RMSNORM, false),
                product(bm, &l->k, bm->x, xs, bm->kv, NVL_K_MV_IN_RMSNORM, false),
                product(bm, &l->v, bm->x, xs, bm->kv + BM_KV, NVL_K_MV_IN_RMSNORM, false)};
            rc = rc ? rc : nvl__k_matvec_group(g, 3, s);
        }
        if (kind == BM_O || kind == BM_KINDS) {
            const struct nvl_k_matmul o =
                product(bm, &l->o, bm->o_in, xs, bm->resid, NVL_K_MV_IN_F32, true);
            rc = rc ? rc : nvl__k_matvec(&o, s);
        }
        if (kind == BM_GATE_UP || kind == BM_KINDS) {
            const struct nvl_k_matmul g[2] = {
                product(bm, &l->gate, bm->x, xs, bm->gate, NVL_K_MV_IN_RMSNORM, false),
                product(bm, &l->up, bm->x, xs, bm->up, NVL_K_MV_IN_RMSNORM, false)};
            rc = rc ? rc : nvl__k_matvec_group(g, 2, s);
        }
        if (kind == BM_DOWN || kind == BM_KINDS) {
            const size_t ds = nvl__k_act_row_bytes(nvl__k_act_for(bm->type), BM_FF);
            const struct nvl_k_matmul d =
                product(bm, &l->down, bm->down_in, ds, bm->resid, NVL_K_MV_IN_READY, true);
            rc = rc ? rc : nvl__k_matvec(&d, s);
        }
    }
    if (kind == BM_OUTPUT || kind == BM_KINDS) {
        const struct nvl_k_matmul o =
            product(bm, &bm->output, bm->x, xs, bm->logits, NVL_K_MV_IN_RMSNORM, false);
        rc = rc ? rc : nvl__k_matvec(&o, s);
    }
    return rc;
}

/* The fixed cost of a launch: BM_TINY_LAUNCHES products of BM_TINY_ROWS rows (a few
 * kilobytes of weights each, from different layers), input made by the prologue as `in` says
 * (BM_TINY_DOWN: ready activations of the 14336-wide down product). */
#define BM_TINY_LAUNCHES 64
#define BM_TINY_ROWS     64
#define BM_TINY_DOWN     (-1)

static int enqueue_tiny(const struct bm_model *bm, int in, cudaStream_t s)
{
    const size_t xs = BM_DIM * sizeof(float);
    const enum nvl_k_act act = nvl__k_act_for(bm->type);
    int rc = 0;
    for (int i = 0; i < BM_TINY_LAUNCHES && !rc; i++) {
        const struct bm_layer *l = &bm->l[i % bm->layers];
        struct nvl_k_matmul m;
        if (in == BM_TINY_DOWN)
            m = product(bm, &l->down, bm->down_in, nvl__k_act_row_bytes(act, BM_FF), bm->resid,
                        NVL_K_MV_IN_READY, true);
        else if (in == NVL_K_MV_IN_READY)
            m = product(bm, &l->o, bm->o_ready, nvl__k_act_row_bytes(act, BM_DIM), bm->resid,
                        NVL_K_MV_IN_READY, true);
        else
            m = product(bm, &l->o, bm->o_in, xs, bm->resid, (enum nvl_k_mv_in)in, true);
        m.rows = BM_TINY_ROWS;
        m.y_stride = BM_TINY_ROWS;
        rc = nvl__k_matvec(&m, s);
    }
    return rc;
}

/* Median milliseconds of one replay of the graph of enq(bm, arg) (reps replays, after a
 * warm-up). */
static int time_graph(const struct bm_model *bm,
                      int (*enq)(const struct bm_model *, int, cudaStream_t), int arg, int reps,
                      cudaStream_t s, double *ms)
{
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    cudaEvent_t a, b;
    BM_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    const int rc = enq(bm, arg, s);
    BM_CHECK(cudaStreamEndCapture(s, &g));
    if (rc) {
        cudaGraphDestroy(g);
        return rc;
    }
    BM_CHECK(cudaGraphInstantiate(&ge, g, 0));
    BM_CHECK(cudaEventCreate(&a));
    BM_CHECK(cudaEventCreate(&b));
    double t_ms[BM_MAX_REPS];
    BM_CHECK(cudaGraphLaunch(ge, s));
    for (int r = 0; r < reps; r++) {
        float t = 0.0f;
        BM_CHECK(cudaEventRecord(a, s));
        BM_CHECK(cudaGraphLaunch(ge, s));
        BM_CHECK(cudaEventRecord(b, s));
        BM_CHECK(cudaEventSynchronize(b));
        BM_CHECK(cudaEventElapsedTime(&t, a, b));
        t_ms[r] = t;
    }
    *ms = bench_median(t_ms, reps);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    return 0;
}

static int alloc_floats(float **p, size_t n, float value)
{
    float *h = malloc(n * sizeof(float));
    if (!h)
        return -ENOMEM;
    uint64_t s = n;
    for (size_t i = 0; i < n; i++)
        h[i] = value != 0.0f ? value
                             : (float)((int64_t)(nvl_splitmix64(&s) >> 40) - (1 << 23)) / (1 << 23);
    const cudaError_t e = cudaMalloc((void **)p, n * sizeof(float));
    const cudaError_t c =
        e == cudaSuccess ? cudaMemcpy(*p, h, n * sizeof(float), cudaMemcpyHostToDevice) : e;
    free(h);
    if (c != cudaSuccess) {
        fprintf(stderr, "bench_matvec: %zu floats: %s\n", n, cudaGetErrorString(c));
        return -ENOMEM;
    }
    return 0;
}

static int run_type(enum nvl_ggml_type type, int layers, int reps, double d2d, cudaStream_t s)
{
    struct bm_model bm = {.type = type, .layers = layers};
    const size_t bs = nvl_ggml_type_size(type);
    const size_t pattern_bytes = ((size_t)BM_FILL_MB << 20) / bs * bs; /* whole blocks */
    uint8_t *pattern = NULL;
    size_t total = 0;
    int rc = -ENOMEM;
    bm.l = calloc((size_t)layers, sizeof(*bm.l));
    if (!bm.l || (rc = layout(&bm, &total, NULL, 0)))
        goto out;
    rc = -ENOMEM;
    if (!(pattern = random_blocks(type, pattern_bytes)))
        goto out;
    if (cudaMalloc((void **)&bm.arena, total) != cudaSuccess) {
        fprintf(stderr, "bench_matvec: %s: %.2f GB of weights do not fit in VRAM (try --layers)\n",
                nvl_ggml_type_name(type), total / 1e9);
        goto out;
    }
    if ((rc = layout(&bm, &total, pattern, pattern_bytes)) ||
        (rc = alloc_floats(&bm.x, BM_DIM, 0.0f)) || (rc = alloc_floats(&bm.norm, BM_DIM, 1.0f)) ||
        (rc = alloc_floats(&bm.q, BM_DIM, 0.0f)) || (rc = alloc_floats(&bm.kv, 2 * BM_KV, 0.0f)) ||
        (rc = alloc_floats(&bm.o_in, BM_DIM, 0.0f)) ||
        (rc = alloc_floats(&bm.resid, BM_DIM, 0.0f)) ||
        (rc = alloc_floats(&bm.gate, BM_FF, 0.0f)) || (rc = alloc_floats(&bm.up, BM_FF, 0.0f)) ||
        (rc = alloc_floats(&bm.logits, BM_VOCAB, 0.0f)))
        goto out;
    const enum nvl_k_act act = nvl__k_act_for(type);
    rc = -ENOMEM;
    if (cudaMalloc(&bm.down_in, nvl__k_act_row_bytes(act, BM_FF)) != cudaSuccess)
        goto out;
    if (cudaMalloc(&bm.o_ready, nvl__k_act_row_bytes(act, BM_DIM)) != cudaSuccess)
        goto out;
    if ((rc = nvl__k_quantize(act, bm.gate, BM_FF, 1, BM_FF, bm.down_in, s)) ||
        (rc = nvl__k_quantize(act, bm.o_in, BM_DIM, 1, BM_DIM, bm.o_ready, s)))
        goto out;

    double total_bytes = 0.0;
    for (int k = 0; k < BM_KINDS; k++)
        total_bytes += bm.kind_bytes[k];
    double ms = 0.0;
    if ((rc = time_graph(&bm, enqueue, BM_KINDS, reps, s, &ms)))
        goto out;
    const double roof_ms = total_bytes / d2d * 1e3;
    printf("%-5s token   %8.3f ms  %7.1f GB/s  %4.0f%% of the copy bandwidth  (%.2f GB, limit "
           "%.3f ms = %.1f tok/s)\n",
           nvl_ggml_type_name(type), ms, total_bytes / (ms * 1e-3) / 1e9, 100.0 * roof_ms / ms,
           total_bytes / 1e9, roof_ms, 1e3 / roof_ms);
    for (int k = 0; k < BM_KINDS; k++) {
        double kms = 0.0;
        if ((rc = time_graph(&bm, enqueue, k, reps, s, &kms)))
            goto out;
        const int launches = k == BM_OUTPUT ? 1 : layers;
        printf(
            "%-5s %-7s %8.3f ms  %7.1f GB/s  %4.0f%%  (%d launches, %.1f us each, %.1f MB each)\n",
            nvl_ggml_type_name(type), bm_kind_name[k], kms, bm.kind_bytes[k] / (kms * 1e-3) / 1e9,
            100.0 * bm.kind_bytes[k] / d2d / (kms * 1e-3), launches, kms * 1e3 / launches,
            bm.kind_bytes[k] / launches / 1e6);
    }
    /* The fixed cost of a launch, by where its input comes from. */
    const int tiny[4] = {NVL_K_MV_IN_READY, NVL_K_MV_IN_F32, NVL_K_MV_IN_RMSNORM, BM_TINY_DOWN};
    const char *const tiny_name[4] = {"ready", "fp32", "rmsnorm", "ready 14336"};
    printf("%-5s launch ", nvl_ggml_type_name(type));
    for (int i = 0; i < 4; i++) {
        double tms = 0.0;
        if ((rc = time_graph(&bm, enqueue_tiny, tiny[i], reps, s, &tms)))
            goto out;
        printf("  %s %.2f us", tiny_name[i], tms * 1e3 / BM_TINY_LAUNCHES);
    }
    printf("  (%d rows a launch)\n", BM_TINY_ROWS);
    printf("bench_matvec: type=%s ms=%.4f gbs=%.1f ratio=%.3f\n", nvl_ggml_type_name(type), ms,
           total_bytes / (ms * 1e-3) / 1e9, roof_ms / ms);
out:
    cudaFree(bm.arena);
    cudaFree(bm.x);
    cudaFree(bm.norm);
    cudaFree(bm.q);
    cudaFree(bm.kv);
    cudaFree(bm.o_in);
    cudaFree(bm.resid);
    cudaFree(bm.gate);
    cudaFree(bm.up);
    cudaFree(bm.logits);
    cudaFree(bm.down_in);
    cudaFree(bm.o_ready);
    free(bm.l);
    free(pattern);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_matvec [--type q4_0,q8_0,q4_K] [--layers N] [--reps N]\n"
               "  the decode matrix-vector products of an 8B-shaped model, timed against the\n"
               "  device-to-device copy bandwidth\n");
}

int main(int argc, char **argv)
{
    const char *types = "q4_0,q8_0,q4_K";
    int layers = 32, reps = 21;
    for (int i = 1; i < argc; i++) {
        const bool more = i + 1 < argc;
        if (!strcmp(argv[i], "--type") && more) {
            types = argv[++i];
        } else if (!strcmp(argv[i], "--layers") && more) {
            layers = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && more) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (layers < 1 || layers > 256 || reps < 1 || reps > BM_MAX_REPS) {
        fprintf(stderr, "bench_matvec: --layers takes 1-256 and --reps 1-%d\n", BM_MAX_REPS);
        return 2;
    }
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < 1) {
        fprintf(stderr, "bench_matvec: no CUDA device; this benchmark needs a GPU\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    double d2d = 0.0;
    bench_cuda_bandwidth(&d2d, NULL);
    if (d2d <= 0.0) {
        fprintf(stderr, "bench_matvec: could not measure the device-to-device copy bandwidth\n");
        return 1;
    }
    cudaStream_t s;
    if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess)
        return 1;
    /* Programmatic dependent launch, as the decode pass has it (NVL_GPU_PDL=0: off). */
    const char *pdl = getenv("NVL_GPU_PDL");
    nvl__k_set_pdl(!(pdl && !strcmp(pdl, "0")));
    printf("bench_matvec: %s, device-to-device copy %.0f GB/s (read + write), %d layers\n",
           prop.name, d2d / 1e9, layers);
    char list[128];
    snprintf(list, sizeof(list), "%s", types);
    int rc = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && !rc;
         t = strtok_r(NULL, ",", &save)) {
        enum nvl_ggml_type type;
        if (nvl_ggml_type_from_name(t, &type) || !nvl__k_type_supported(type) ||
            nvl__k_act_for(type) == NVL_K_ACT_F32) {
            fprintf(stderr, "bench_matvec: %s is not a quantized type the GPU kernels take\n", t);
            return 2;
        }
        rc = run_type(type, layers, reps, d2d, s);
    }
    cudaStreamDestroy(s);
    return rc ? 1 : 0;
}
