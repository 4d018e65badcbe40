/* nvinfer --benchmark on the GPU: prompt processing and decode speed next to the bounds that
 * apply to the placement, all measured in the same run:
 *   - HBM roofline: weight bytes per token / device-to-device copy bandwidth (read + write);
 *   - PCIe bound: host-to-device bandwidth (pinned) / bytes copied from the RAM tier per token;
 *   - drive bound: --sim-bw / bytes streamed through the loader per token.
 * The last line is machine-readable (`gpu-bench: key=value ...`) for scripts/gpu-model-bench.sh. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "nvinfer.h"
#include "nvl_sim.h"

#ifdef NVL_HAVE_CUDA

#include <cuda_runtime_api.h>

#include "bench_cuda.h"

#define BENCH_PP_TOKENS 512

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* The GPU's greedy loop against the CPU loop's tokens: every token it picks must be the one the
 * CPU's argmax picked at that step. */
struct gpu_pick {
    const int32_t *want;
    int32_t n, seen, differ;
};

static bool gpu_pick_check(void *ctx, int32_t token)
{
    struct gpu_pick *p = ctx;
    if (p->seen < p->n && token != p->want[p->seen])
        p->differ++;
    p->seen++;
    return true;
}

static int32_t argmax(const float *l, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

/* n passes from `token` with the GPU sampling each next token (llama.cpp's default sampler, a
 * fixed seed); *t: their time (NULL: a warm-up). 0, -ENOTSUP, or the error. */
static int sampled_run(struct nvl_session *s, int32_t n_vocab, int32_t token, int32_t n, double *t)
{
    struct nvl_sampler_params sp;
    nvl_sampler_params_default(&sp);
    sp.seed = 1;
    struct nvl_sampler *smp;
    int rc = nvl_sampler_create(&sp, n_vocab, &smp);
    if (rc)
        return rc;
    struct gpu_pick none = {.n = 0};
    const double t0 = now_s();
    rc = nvl_session_sample_gpu(s, smp, token, n, gpu_pick_check, &none);
    if (t)
        *t = now_s() - t0;
    nvl_sampler_destroy(smp);
    return rc;
}

int nvinfer_gpu_benchmark(const struct nvinfer_opts *o, struct nvinfer_model *m)
{
    struct nvl_session *s = m->session;
    const struct nvl_llama_hparams *hp = nvl_llama_hparams(m->model);
    const int32_t n_ctx = nvl_session_n_ctx(s);
    int32_t n_pp = BENCH_PP_TOKENS < n_ctx / 2 ? BENCH_PP_TOKENS : n_ctx / 2;
    const int32_t n_tg = o->n_predict < 0 ? 128 : o->n_predict;
    if (n_pp < 1 || 1 + n_tg > n_ctx) {
        fprintf(stderr, "nvinfer: the benchmark needs more context than --ctx %d\n", n_ctx);
        return 2;
    }
    int32_t *pp = malloc((size_t)n_pp * sizeof(*pp));
    int32_t *picked = malloc((size_t)(n_tg + 1) * sizeof(*picked));
    if (!pp || !picked) {
        free(pp);
        free(picked);
        return 1;
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int32_t i = 0; i < n_pp; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        pp[i] = (int32_t)(x % (uint64_t)hp->n_vocab);
    }
    double d2d, h2d;
    bench_cuda_bandwidth(&d2d, &h2d);

    /* Warm-up: every code path (GEMM, matrix-vector, graph capture) once. A profiler run sets
     * NVL_BENCH_NO_WARMUP=1 so that its trace holds only the measured passes. */
    const char *nw = getenv("NVL_BENCH_NO_WARMUP");
    int rc = 0;
    if (!(nw && strcmp(nw, "1") == 0)) {
        rc = nvl_session_eval(s, pp, n_pp < 32 ? n_pp : 32, false);
        if (!rc)
            rc = nvl_session_eval(s, pp, 1, false);
        struct gpu_pick none = {.n = 0};
        if (!rc && (rc = nvl_session_greedy(s, pp[0], 2, gpu_pick_check, &none)) == -ENOTSUP)
            rc = 0;
        nvl_session_truncate(s, 0);
        if (!rc)
            rc = nvl_session_eval(s, pp, 1, false);
        if (!rc && (rc = sampled_run(s, hp->n_vocab, pp[0], 2, NULL)) == -ENOTSUP)
            rc = 0;
        nvl_session_truncate(s, 0);
    }

    double t0 = now_s();
    if (!rc)
        rc = nvl_session_eval(s, pp, n_pp, false);
    const double t_pp = now_s() - t0;
    nvl_session_truncate(s, 0);

    /* Generation, the CPU loop: each token's logits copied back, argmax on the CPU, the next
     * pass launched by the CPU. */
    int32_t tok = pp[0];
    if (!rc)
        rc = nvl_session_eval(s, &tok, 1, false);
    double c0 = cpu_s();
    t0 = now_s();
    for (int32_t i = 0; i < n_tg && !rc; i++) {
        tok = picked[i] = argmax(nvl_session_logits(s, -1), hp->n_vocab);
        rc = nvl_session_eval(s, &tok, 1, false);
    }
    if (!rc)
        picked[n_tg] = argmax(nvl_session_logits(s, -1), hp->n_vocab);
    const double t_cpu_loop = now_s() - t0, c_cpu_loop = cpu_s() - c0;
    double t_tg = t_cpu_loop, c_tg = c_cpu_loop;

    /* The same n_tg passes with the GPU picking the tokens (nvl_session_greedy): the CPU only
     * queues passes ahead and reads tokens back. Not where layers stream (-ENOTSUP). */
    struct gpu_pick pick = {.want = picked + 1, .n = n_tg};
    bool gpu_loop = false;
    if (!rc) {
        nvl_session_truncate(s, 0);
        tok = pp[0];
        rc = nvl_session_eval(s, &tok, 1, false);
    }
    if (!rc) {
        c0 = cpu_s();
        t0 = now_s();
        tok = argmax(nvl_session_logits(s, -1), hp->n_vocab);
        rc = nvl_session_greedy(s, tok, n_tg, gpu_pick_check, &pick);
        if (rc == 0) {
            gpu_loop = true;
            t_tg = now_s() - t0;
            c_tg = cpu_s() - c0;
        } else if (rc == -ENOTSUP) {
            rc = 0;
        }
    }
    /* And sampled on the GPU with llama.cpp's default sampler (temperature 0.8, top-k 40,
     * top-p 0.95, min-p 0.05): the cost of the sampling kernel over the argmax. */
    double t_sampled = 0.0;
    if (!rc && gpu_loop) {
        nvl_session_truncate(s, 0);
        tok = pp[0];
        rc = nvl_session_eval(s, &tok, 1, false);
        if (!rc && (rc = sampled_run(s, hp->n_vocab, tok, n_tg, &t_sampled)) == -ENOTSUP)
            rc = 0;
    }
    free(pp);
    free(picked);
    if (rc) {
        fprintf(stderr, "nvinfer: benchmark eval failed: %s\n", nvl_strerror(rc));
        return 1;
    }
    if (gpu_loop && (pick.seen != n_tg || pick.differ)) {
        fprintf(stderr,
                "nvinfer: the GPU's greedy loop picked %d of %d tokens differently from the CPU "
                "loop (%d picked)\n",
                pick.differ, n_tg, pick.seen);
        return 1;
    }

    struct nvl_gpu_stats st;
    nvl_gpu_model_stats(m->gpu, &st);
    const double bytes = (double)nvl_llama_bytes_per_token(m->model);
    const double tg = n_tg / t_tg, ppr = n_pp / t_pp;
    const double roof = d2d / bytes;
    const double ram_b = (double)st.layer_bytes[NVL_GPU_TIER_RAM];
    const double str_b = (double)st.layer_bytes[NVL_GPU_TIER_STREAM];
    double sim_bw = 0.0;
    if (o->sim_bw) {
        struct nvl_sim_opts so;
        char spec[96];
        nvl_sim_opts_init(&so);
        snprintf(spec, sizeof(spec), "bw=%s", o->sim_bw);
        if (nvl_sim_opts_parse(&so, spec, NULL, 0) == 0)
            sim_bw = (double)so.bw_bytes_per_s;
    }
    printf("model:             %s\n", o->model);
    printf("gpu:               %s; layers vram %d, ram %d, stream %d; prefetch %d%s\n",
           st.device_name, st.layers[0], st.layers[1], st.layers[2], st.prefetch,
           st.graphs ? "; CUDA graphs" : "");
    printf("weights:           %.2f GB read per token (%.2f GB from pinned RAM, %.2f GB "
           "streamed)\n",
           bytes / 1e9, ram_b / 1e9, str_b / 1e9);
    printf("bandwidth:         device-to-device %.0f GB/s (read + write), host-to-device %.1f "
           "GB/s\n",
           d2d / 1e9, h2d / 1e9);
    printf("prompt processing: %d tokens in %.3f s = %.1f tok/s\n", n_pp, t_pp, ppr);
    printf("generation:        %d tokens in %.3f s = %.2f tok/s, CPU %.2f ms per token (%s)\n",
           n_tg, t_tg, tg, c_tg / n_tg * 1e3,
           gpu_loop ? "tokens picked on the GPU" : "tokens picked on the CPU");
    if (t_sampled > 0.0)
        printf("  sampled on GPU:  %d tokens in %.3f s = %.2f tok/s (temperature 0.8, top-k 40, "
               "top-p 0.95, min-p 0.05)\n",
               n_tg, t_sampled, n_tg / t_sampled);
    if (gpu_loop)
        printf("  CPU loop:        %d tokens in %.3f s = %.2f tok/s, CPU %.2f ms per token (logits "
               "copied back, argmax on the CPU; the same tokens)\n",
               n_tg, t_cpu_loop, n_tg / t_cpu_loop, c_cpu_loop / n_tg * 1e3);
    printf("HBM roofline:      %.1f tok/s; generation is %.0f%% of it\n", roof, 100.0 * tg / roof);
    double bound = 0.0;
    if (ram_b > 0 && h2d > 0) {
        bound = h2d / ram_b;
        printf("PCIe bound:        %.2f tok/s (%.1f GB/s / %.2f GB); generation is %.0f%% of it\n",
               bound, h2d / 1e9, ram_b / 1e9, 100.0 * tg / bound);
    }
    if (str_b > 0 && sim_bw > 0) {
        bound = sim_bw / str_b;
        printf("drive bound:       %.2f tok/s (%.1f GB/s / %.2f GB); generation is %.0f%% of it\n",
               bound, sim_bw / 1e9, str_b / 1e9, 100.0 * tg / bound);
    }
    printf(
        "gpu-bench: pp=%.1f tg=%.3f roof=%.1f d2d_gbs=%.1f h2d_gbs=%.2f bytes=%.0f ram_bytes=%.0f "
        "stream_bytes=%.0f bound=%.3f cpu_ms=%.3f vram_layers=%d tg_cpu_loop=%.3f gpu_loop=%d "
        "tg_sampled=%.3f\n",
        ppr, tg, roof, d2d / 1e9, h2d / 1e9, bytes, ram_b, str_b, bound, c_tg / n_tg * 1e3,
        st.layers[0], n_tg / t_cpu_loop, gpu_loop ? 1 : 0,
        t_sampled > 0.0 ? n_tg / t_sampled : 0.0);
    return 0;
}

#else

int nvinfer_gpu_benchmark(const struct nvinfer_opts *o, struct nvinfer_model *m)
{
    (void)o;
    (void)m;
    return 1;
}

#endif
