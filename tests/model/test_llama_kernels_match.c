/* The portable and the AVX2 CPU kernels give bit-identical logits: stories260K (fp32 weights; fp16
 * and fp32 KV cache) and SmolLM2-135M Q4_1 (8-bit and fp32 activations) run a prompt batch (the
 * four-row kernels) and then single decode steps (the one-row kernels, attention over the cache),
 * once in a child process with NVL_CPU_KERNELS=generic and once with the AVX2 kernels; every logit
 * must match bit for bit. The kernel set is chosen once per process, hence the children. Skipped
 * (77) on a CPU without AVX2/FMA/F16C; SmolLM2 is skipped when its file is missing. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cpu_ops.h"
#include "nvl_model.h"

#define N_PROMPT 9
#define N_DECODE 4

struct run_cfg {
    const char *name;
    char path[1024];
    bool f32_activations;
    bool kv_f32;
    int32_t ids[N_PROMPT + N_DECODE];
};

static bool write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* In the child: evaluates the prompt as one batch with every position's logits, then decodes
 * N_DECODE tokens one at a time, and writes all logits to fd. Returns the exit status. */
static int child_run(const struct run_cfg *cfg, const char *kernels, int fd)
{
    if (kernels)
        setenv("NVL_CPU_KERNELS", kernels, 1);
    else
        unsetenv("NVL_CPU_KERNELS");
    const char *want = kernels ? kernels : "avx2";
    if (strcmp(nvl__cpu_ops_kernels(), want) != 0) {
        fprintf(stderr, "%s: kernels %s, wanted %s\n", cfg->name, nvl__cpu_ops_kernels(), want);
        return 1;
    }
    struct nvl_llama_model *m = NULL;
    struct nvl_session *s = NULL;
    char err[256];
    if (nvl_llama_load(cfg->path, &m, err, sizeof(err))) {
        fprintf(stderr, "%s: %s\n", cfg->name, err);
        return 1;
    }
    struct nvl_session_params p;
    nvl_session_params_default(&p);
    p.n_threads = 2;
    p.n_ctx = N_PROMPT + N_DECODE + 1;
    p.f32_activations = cfg->f32_activations;
    p.kv_f32 = cfg->kv_f32;
    const size_t n_vocab = (size_t)nvl_llama_hparams(m)->n_vocab;
    int rc = 1;
    if (nvl_session_create(m, &p, &s))
        goto out_model;
    if (nvl_session_eval(s, cfg->ids, N_PROMPT, true))
        goto out_session;
    for (int32_t i = 0; i < N_PROMPT; i++)
        if (!write_all(fd, nvl_session_logits(s, i), n_vocab * sizeof(float)))
            goto out_session;
    for (int32_t i = 0; i < N_DECODE; i++) {
        if (nvl_session_eval(s, &cfg->ids[N_PROMPT + i], 1, false) ||
            !write_all(fd, nvl_session_logits(s, -1), n_vocab * sizeof(float)))
            goto out_session;
    }
    rc = 0;
out_session:
    nvl_session_destroy(s);
out_model:
    nvl_llama_destroy(m);
    return rc;
}

/* Runs cfg in a child with the given kernels; returns its logits (malloc'd) and their size. */
static float *run_kernels(const struct run_cfg *cfg, const char *kernels, size_t *n_bytes)
{
    int fds[2];
    if (pipe(fds))
        return NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return NULL;
    if (pid == 0) {
        close(fds[0]);
        int rc = child_run(cfg, kernels, fds[1]);
        close(fds[1]);
        _exit(rc);
    }
    close(fds[1]);
    size_t cap = 1 << 20, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = read(fds[0], buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        free(buf);
        return NULL;
    }
    *n_bytes = len;
    return (float *)buf;
}

static int compare(const struct run_cfg *cfg)
{
    size_t ng = 0, na = 0;
    float *g = run_kernels(cfg, "generic", &ng);
    float *a = run_kernels(cfg, NULL, &na);
    int rc = 1;
    if (!g || !a || ng != na || ng == 0) {
        fprintf(stderr, "%s: a run failed (%zu vs %zu bytes)\n", cfg->name, ng, na);
        goto out;
    }
    const size_t n = ng / sizeof(float), n_vocab = n / (N_PROMPT + N_DECODE);
    size_t diff = 0, first = 0;
    float maxd = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&g[i], &a[i], sizeof(float)) != 0) {
            if (!diff++)
                first = i;
            float d = g[i] > a[i] ? g[i] - a[i] : a[i] - g[i];
            maxd = d > maxd ? d : maxd;
        }
    }
    if (diff) {
        fprintf(stderr,
                "%s: %zu of %zu logits differ (first at position %zu token %zu: generic %.9g, "
                "avx2 %.9g; max difference %.3g)\n",
                cfg->name, diff, n, first / n_vocab, first % n_vocab, g[first], a[first], maxd);
        goto out;
    }
    printf("%s: %zu logits over %d positions bit-identical\n", cfg->name, n, N_PROMPT + N_DECODE);
    rc = 0;
out:
    free(g);
    free(a);
    return rc;
}

int main(void)
{
    /* No kernel may be selected in this process before the children choose theirs. */
    if (!nvl__cpu_has_avx2()) {
        printf("no AVX2/FMA/F16C on this CPU: only the portable kernels exist, skipped\n");
        return 77;
    }
    const char *shared = getenv("NVL_SHARED");
    const char *src = getenv("NVL_SOURCE_DIR");
    if (!shared || !src) {
        fprintf(stderr, "NVL_SHARED and NVL_SOURCE_DIR must be set\n");
        return 1;
    }
    /* Token ids below stories260K's 512; the SmolLM2 ones are arbitrary ids of its vocabulary. */
    struct run_cfg cfgs[4] = {
        {.name = "stories260K", .ids = {1, 403, 407, 261, 378, 260, 421, 8, 300, 5, 67, 480, 2}},
        {.name = "stories260K kv_f32",
         .kv_f32 = true,
         .ids = {1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120}},
        {.name = "SmolLM2-135M Q4_1",
         .ids = {1, 9690, 314, 260, 3575, 282, 4649, 47, 2, 504, 1987, 314, 16100}},
        {.name = "SmolLM2-135M Q4_1 f32 activations",
         .f32_activations = true,
         .ids = {1, 9690, 314, 260, 3575, 282, 4649, 47, 2, 504, 1987, 314, 16100}},
    };
    for (int i = 0; i < 4; i++) {
        if (i < 2)
            snprintf(cfgs[i].path, sizeof(cfgs[i].path), "%s/models/stories260K.gguf", shared);
        else
            snprintf(cfgs[i].path, sizeof(cfgs[i].path),
                     "%s/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf", src);
    }
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        if (access(cfgs[i].path, R_OK) != 0) {
            printf("%s: %s missing, skipped\n", cfgs[i].name, cfgs[i].path);
            continue;
        }
        failed |= compare(&cfgs[i]);
    }
    return failed;
}
