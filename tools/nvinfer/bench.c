/* nvinfer --benchmark: prompt-processing and generation speed, next to the memory-bandwidth bound
 * of decoding (weight bytes read per token / memcpy bandwidth measured in the same run).
 *
 * Decoding one token reads every weight once, so a CPU cannot decode faster than its memory
 * bandwidth divided by the weight bytes per token. The bandwidth is measured with memcpy on the
 * same number of threads as the session, over buffers far larger than the caches. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nvinfer.h"

#define BENCH_PP_TOKENS 128
#define BENCH_COPY_MB   256
#define BENCH_COPY_REPS 5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct copy_job {
    char *dst;
    const char *src;
    size_t len;
};

static void *copy_thread(void *arg)
{
    struct copy_job *j = arg;
    memcpy(j->dst, j->src, j->len);
    return NULL;
}

/* Bytes copied per second by n_threads threads each memcpy'ing a slice (best of a few runs). */
static double memcpy_bandwidth(int n_threads)
{
    const size_t len = (size_t)BENCH_COPY_MB << 20;
    char *src = malloc(len), *dst = malloc(len);
    struct copy_job *jobs = calloc((size_t)n_threads, sizeof(*jobs));
    pthread_t *th = calloc((size_t)n_threads, sizeof(*th));
    double best = 0.0;
    if (!src || !dst || !jobs || !th)
        goto out;
    memset(src, 1, len); /* fault the pages in before timing */
    memset(dst, 2, len);
    const size_t slice = len / (size_t)n_threads;
    for (int rep = 0; rep < BENCH_COPY_REPS; rep++) {
        double t0 = now_s();
        int started = 0;
        for (int i = 0; i < n_threads; i++) {
            jobs[i] = (struct copy_job){dst + i * slice, src + i * slice, slice};
            if (i == 0 || pthread_create(&th[i], NULL, copy_thread, &jobs[i]) == 0)
                started = i + 1;
        }
        copy_thread(&jobs[0]);
        for (int i = 1; i < started; i++)
            pthread_join(th[i], NULL);
        double bw = (double)slice * started / (now_s() - t0);
        best = bw > best ? bw : best;
    }
out:
    free(th);
    free(jobs);
    free(dst);
    free(src);
    return best;
}

/* Reads every page of the weights once so that page faults and disk reads are not timed. */
static double touch_weights(const struct nvl_gguf *g)
{
    const volatile unsigned char *p = nvl_gguf_base(g);
    const size_t n = nvl_gguf_mapped_size(g);
    unsigned sum = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i += 4096)
        sum += p[i];
    (void)sum;
    return now_s() - t0;
}

static int32_t argmax(const float *l, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

static void cpu_model(char *out, size_t len)
{
    snprintf(out, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += 1 + (v[1] == ' ');
                v[strcspn(v, "\n")] = '\0';
                snprintf(out, len, "%s", v);
            }
            break;
        }
    }
    fclose(f);
}

int nvinfer_run_benchmark(const struct nvinfer_opts *o, struct nvinfer_model *m)
{
    struct nvl_session *s = m->session;
    const struct nvl_llama_hparams *hp = nvl_llama_hparams(m->model);
    const int32_t n_ctx = nvl_session_n_ctx(s);
    const int n_threads = nvl_session_n_threads(s);

    /* Prompt: the given one, or BOS plus fixed pseudo-random tokens. */
    int32_t *pp = NULL;
    size_t n_pp = 0;
    if (o->prompt) {
        if (nvl_vocab_tokenize_alloc(m->vocab, o->prompt, strlen(o->prompt),
                                     NVL_TOKENIZE_ADD_SPECIAL | NVL_TOKENIZE_PARSE_SPECIAL, &pp,
                                     &n_pp) ||
            n_pp == 0) {
            fprintf(stderr, "nvinfer: cannot tokenize the prompt\n");
            free(pp);
            return 1;
        }
    } else {
        n_pp = BENCH_PP_TOKENS;
        pp = malloc(n_pp * sizeof(*pp));
        if (!pp)
            return 1;
        uint64_t x = 0x9e3779b97f4a7c15ull;
        for (size_t i = 0; i < n_pp; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            pp[i] = (int32_t)(x % (uint64_t)hp->n_vocab);
        }
        if (nvl_vocab_bos(m->vocab) >= 0)
            pp[0] = nvl_vocab_bos(m->vocab);
    }
    int32_t n_tg = o->n_predict < 0 ? 128 : o->n_predict;
    if ((int64_t)n_pp > n_ctx || 1 + (int64_t)n_tg > n_ctx) {
        fprintf(stderr, "nvinfer: the benchmark needs %zu and %d tokens of context; --ctx is %d\n",
                n_pp, n_tg + 1, n_ctx);
        free(pp);
        return 2;
    }

    char cpu[256];
    cpu_model(cpu, sizeof(cpu));
    const double t_touch = touch_weights(nvl_llama_gguf(m->model));
    const double bw = memcpy_bandwidth(n_threads);

    /* Warm-up: one short eval runs every code path once. */
    int rc = nvl_session_eval(s, pp, 1, false);
    nvl_session_truncate(s, 0);

    double t0 = now_s();
    rc = rc ? rc : nvl_session_eval(s, pp, (int32_t)n_pp, false);
    const double t_pp = now_s() - t0;
    nvl_session_truncate(s, 0);

    int32_t tok = pp[0];
    rc = rc ? rc : nvl_session_eval(s, &tok, 1, false);
    t0 = now_s();
    for (int32_t i = 0; i < n_tg && !rc; i++) {
        tok = argmax(nvl_session_logits(s, -1), hp->n_vocab);
        rc = nvl_session_eval(s, &tok, 1, false);
    }
    const double t_tg = now_s() - t0;
    free(pp);
    if (rc) {
        fprintf(stderr, "nvinfer: benchmark eval failed: %s\n", nvl_strerror(rc));
        return 1;
    }

    const double bytes = (double)nvl_llama_bytes_per_token(m->model);
    const double tg = n_tg / t_tg, bound = bw / bytes;
    printf("model:             %s\n", o->model);
    printf("cpu:               %s, %d threads, %s kernels\n", cpu, n_threads,
           nvl_llama_cpu_kernels());
    printf("weights:           %.1f MB, %.1f MB read per token (first touch %.2f s)\n",
           (double)nvl_llama_weight_bytes(m->model) / 1e6, bytes / 1e6, t_touch);
    printf("memcpy bandwidth:  %.2f GB/s (%d threads, %d MiB)\n", bw / 1e9, n_threads,
           BENCH_COPY_MB);
    printf("prompt processing: %zu tokens in %.3f s = %.1f tok/s\n", n_pp, t_pp, n_pp / t_pp);
    printf("generation:        %d tokens in %.3f s = %.1f tok/s\n", n_tg, t_tg, tg);
    printf("bandwidth bound:   %.1f tok/s (%.2f GB/s / %.1f MB); generation is %.0f%% of it\n",
           bound, bw / 1e9, bytes / 1e6, 100.0 * tg / bound);
    return 0;
}
