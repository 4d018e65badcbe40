/* The GPU forward pass against the CPU one, and streaming against resident placement.
 *
 * For each model (stories260K, SmolLM2; paths from argv or the usual places): a prompt of more
 * than 16 tokens (the GEMM path) then greedy decoding (the matrix-vector path, replayed through a
 * CUDA graph) on the CPU and on the GPU with every layer in VRAM. The generated tokens must be
 * equal; where float summation order makes a token differ, the first divergence is reported with
 * the two logits involved, and the test fails only if the gap at that point exceeds the
 * measured logit error. The logits must agree to 5e-2 of their range (CPU: 8-bit activations
 * and integer dots; GPU: the same for decode, fp16 tensor cores for the prompt).
 *
 * Then the same GPU run with layers spread over VRAM, pinned RAM and streaming through the
 * Layer Loader (file backend, and gpu-nvme on the software controller when it runs here): every
 * logit of every step must be bit-identical to the resident run. Exits 77 without a GPU. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvl_driver.h"
#include "nvl_model.h"
#include "nvl_model/sampler.h"
#include "nvl_sim.h"

#define N_GEN 48

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

struct run {
    int32_t tokens[N_GEN];
    float *logits; /* [N_GEN + 1][n_vocab]: after the prompt, then after each generated token */
};

static int32_t argmax(const float *l, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

/* Greedy decoding; with `forced` the tokens fed back are forced[] (so two runs see the same
 * context even after they diverge) while r->tokens records each run's own argmax. */
static int run_greedy(struct nvl_llama_model *model, struct nvl_gpu_model *gpu,
                      const int32_t *prompt, int32_t n_prompt, const int32_t *forced, struct run *r)
{
    const int32_t nv = nvl_llama_hparams(model)->n_vocab;
    struct nvl_session_params sp;
    nvl_session_params_default(&sp);
    sp.n_ctx = 256;
    sp.gpu = gpu;
    struct nvl_session *s;
    int rc = nvl_session_create(model, &sp, &s);
    if (rc)
        return rc;
    r->logits = malloc((size_t)(N_GEN + 1) * (size_t)nv * sizeof(float));
    rc = nvl_session_eval(s, prompt, n_prompt, false);
    for (int i = 0; i <= N_GEN && !rc; i++) {
        const float *l = nvl_session_logits(s, -1);
        memcpy(r->logits + (size_t)i * nv, l, (size_t)nv * sizeof(float));
        if (i == N_GEN)
            break;
        r->tokens[i] = argmax(l, nv);
        const int32_t next = forced ? forced[i] : r->tokens[i];
        rc = nvl_session_eval(s, &next, 1, false);
    }
    nvl_session_destroy(s);
    return rc;
}

/* nvl_session_greedy's callback: records the tokens, stops after `stop_at` of them (0: never). */
struct picks {
    int32_t tokens[N_GEN + 1];
    int32_t n, stop_at;
};

static bool pick_token(void *ctx, int32_t token)
{
    struct picks *p = ctx;
    if (p->n <= N_GEN)
        p->tokens[p->n] = token;
    p->n++;
    return p->stop_at == 0 || p->n < p->stop_at;
}

/* The GPU's own greedy loop (nvl_session_greedy) against the CPU-driven GPU run `ref`: the same
 * tokens and, where no pass ran past the last kept one, the same logits bits; after a stop (passes
 * queued past it), evaluating on from the kept tokens must give ref's logits again. */
static void check_gpu_greedy(const char *name, struct nvl_llama_model *model,
                             struct nvl_gpu_model *gm, const int32_t *prompt, int32_t n_prompt,
                             const struct run *ref)
{
    const int32_t nv = nvl_llama_hparams(model)->n_vocab;
    const size_t lb = (size_t)nv * sizeof(float);
    for (int pass = 0; pass < 2; pass++) {
        struct nvl_session_params sp;
        nvl_session_params_default(&sp);
        sp.n_ctx = 256;
        sp.gpu = gm;
        struct nvl_session *s;
        if (nvl_session_create(model, &sp, &s)) {
            CHECK(0, "%s: session", name);
            return;
        }
        struct picks p = {.stop_at = pass ? 10 : 0};
        int rc = nvl_session_eval(s, prompt, n_prompt, false);
        if (!rc)
            rc = nvl_session_greedy(s, ref->tokens[0], N_GEN, pick_token, &p);
        CHECK(rc == 0, "%s: nvl_session_greedy: %s", name, nvl_strerror(rc));
        const int32_t kept = pass ? 10 : N_GEN;
        bool same = rc == 0 && p.n == kept && nvl_session_n_past(s) == n_prompt + kept;
        for (int32_t i = 0; same && i < kept && i + 1 < N_GEN; i++)
            same = p.tokens[i] == ref->tokens[i + 1];
        const float *l = nvl_session_logits(s, -1);
        if (!pass) {
            same = same && l && memcmp(l, ref->logits + (size_t)N_GEN * nv, lb) == 0;
        } else {
            /* Passes were queued past the stop: no logits kept; evaluating the token it stopped
             * at continues the run exactly. */
            same = same && !l && nvl_session_eval(s, &p.tokens[kept - 1], 1, false) == 0;
            l = nvl_session_logits(s, -1);
            same = same && l && memcmp(l, ref->logits + (size_t)(kept + 1) * nv, lb) == 0;
        }
        CHECK(same, "%s: the GPU's greedy loop (%s) differs from the CPU-driven GPU run", name,
              pass ? "stopped at 10" : "to the end");
        printf("%s: GPU greedy loop (%s): %s\n", name, pass ? "stopped at token 10" : "48 tokens",
               same ? "same tokens and logits as the CPU-driven run" : "DIFFERENT");
        nvl_session_destroy(s);
    }
}

/* The GPU's sampling loop (nvl_session_sample_gpu: top-k 40, top-p 0.95, min-p 0.05, temperature
 * 0.8) against the same sampler run on the CPU over the CPU-driven GPU run's logits, which the
 * loop's passes reproduce bit for bit: the same tokens, the same final logits, and both samplers'
 * random streams left at the same draw. */
static void check_gpu_sample(const char *name, struct nvl_llama_model *model,
                             struct nvl_gpu_model *gm, const int32_t *prompt, int32_t n_prompt)
{
    const int32_t nv = nvl_llama_hparams(model)->n_vocab;
    struct nvl_sampler_params spp;
    nvl_sampler_params_default(&spp);
    spp.seed = 1234;
    struct nvl_session *s[2] = {NULL, NULL};
    struct nvl_sampler *smp[2] = {NULL, NULL};
    int32_t want[N_GEN + 1];
    struct picks p = {.stop_at = 0};
    bool ok = true;
    for (int i = 0; i < 2 && ok; i++) {
        struct nvl_session_params sp;
        nvl_session_params_default(&sp);
        sp.n_ctx = 256;
        sp.gpu = gm;
        ok = nvl_session_create(model, &sp, &s[i]) == 0 &&
             nvl_sampler_create(&spp, nv, &smp[i]) == 0 &&
             nvl_session_eval(s[i], prompt, n_prompt, false) == 0;
    }
    /* The CPU's sampler over the CPU-driven passes. */
    for (int i = 0; ok && i <= N_GEN; i++) {
        want[i] = nvl_sampler_sample(smp[0], nvl_session_logits(s[0], -1));
        if (i < N_GEN)
            ok = nvl_session_eval(s[0], &want[i], 1, false) == 0;
    }
    int rc = -1;
    if (ok) {
        const int32_t first = nvl_sampler_sample(smp[1], nvl_session_logits(s[1], -1));
        ok = first == want[0];
        rc = nvl_session_sample_gpu(s[1], smp[1], first, N_GEN, pick_token, &p);
    }
    bool same = ok && rc == 0 && p.n == N_GEN;
    for (int32_t i = 0; same && i < N_GEN; i++)
        same = p.tokens[i] == want[i + 1];
    const float *la = same ? nvl_session_logits(s[0], -1) : NULL;
    const float *lb = same ? nvl_session_logits(s[1], -1) : NULL;
    same = same && la && lb && memcmp(la, lb, (size_t)nv * sizeof(float)) == 0 &&
           nvl_sampler_peek_draw(smp[0], 0) == nvl_sampler_peek_draw(smp[1], 0);
    CHECK(same, "%s: the GPU's sampling loop differs from the CPU sampler (rc %d, %d tokens)", name,
          rc, p.n);
    printf("%s: GPU sampling loop (top-k 40, top-p 0.95, min-p 0.05, temp 0.8, 48 tokens): %s\n",
           name, same ? "same tokens, logits and random stream as the CPU sampler" : "DIFFERENT");
    for (int i = 0; i < 2; i++) {
        nvl_sampler_destroy(smp[i]);
        nvl_session_destroy(s[i]);
    }
}

static struct nvl_gpu_model *gpu_place(struct nvl_llama_model *model, struct nvl_loader *l,
                                       int32_t vram_layers, int64_t ram_budget)
{
    struct nvl_gpu_params gp;
    nvl_gpu_params_default(&gp);
    gp.n_ctx = 256;
    gp.n_batch = 64;
    gp.vram_layers = vram_layers;
    gp.ram_budget = ram_budget;
    gp.prefetch = 2;
    gp.loader = l;
    struct nvl_gpu_model *gm = NULL;
    char err[512] = "";
    const int rc = nvl_gpu_model_create(model, &gp, &gm, err, sizeof(err));
    CHECK(rc == 0, "GPU placement (vram_layers %d): %s", vram_layers, err);
    return gm;
}

static struct nvl_loader *make_loader(enum nvl_loader_backend b, struct nvl_ctrl *ctrl,
                                      const char *path, struct nvl_llama_model *model)
{
    struct nvl_loader_opts o;
    struct nvl_loader *l = NULL;
    nvl_loader_opts_init(&o);
    o.backend = b;
    o.ctrl = ctrl;
    o.path = path;
    o.n_slots = 2;
    o.slot_bytes = nvl_gpu_slot_bytes(model, 4096);
    const int rc = nvl_loader_create(&o, &l);
    if (rc)
        printf("note: no %s loader here (%s)\n", nvl_loader_backend_str(b), nvl_strerror(rc));
    return l;
}

/* Streamed and RAM-tier placements must reproduce the resident run bit for bit. */
static void check_placements(const char *name, const char *path, struct nvl_llama_model *model,
                             const int32_t *prompt, int32_t n_prompt, const struct run *ref)
{
    const int32_t n_layer = nvl_llama_hparams(model)->n_layer;
    const int32_t nv = nvl_llama_hparams(model)->n_vocab;
    const struct nvl_llama_layer *l0 = &nvl_llama_weights(model)->layers[0];
    const int64_t layer_bytes = (int64_t)(l0->file_end - l0->file_begin) + 4096;

    struct nvl_transport *t = NULL;
    struct nvl_ctrl *ctrl = NULL;
    struct nvl_sim_opts so;
    struct nvl_sim *sim;
    nvl_sim_opts_init(&so);
    /* The software controller serves a copy padded to whole 4 KiB blocks (a namespace is whole
     * blocks). */
    char padded[] = "/tmp/nvl-gpu-forward-XXXXXX", spec[4200];
    const int fd = mkstemp(padded);
    FILE *in = fopen(path, "rb");
    if (fd >= 0 && in) {
        char buf[1 << 16];
        size_t n, total = 0;
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
            CHECK(write(fd, buf, n) == (ssize_t)n, "copy");
            total += n;
        }
        CHECK(ftruncate(fd, (off_t)((total + 4095) & ~(size_t)4095)) == 0, "pad");
    }
    if (in)
        fclose(in);
    if (fd >= 0)
        close(fd);
    snprintf(spec, sizeof(spec), "file=%s", padded);
    if (nvl_sim_opts_parse(&so, spec, NULL, 0) == 0) {
        so.read_only = 1;
        if (nvl_sim_create(&so, &sim) == 0) {
            t = nvl_sim_transport(sim);
            struct nvl_ctrl_opts co;
            nvl_ctrl_opts_init(&co);
            co.n_io_queues = 4;
            if (nvl_ctrl_create(t, &co, &ctrl))
                ctrl = NULL;
        }
    }
    const struct {
        enum nvl_loader_backend backend;
        int32_t vram_layers;
        int64_t ram_budget;
    } cases[] = {
        {NVL_LOADER_FILE, 1, layer_bytes},        /* vram, ram, then stream */
        {NVL_LOADER_FILE, 0, 0},                  /* everything streams */
        {NVL_LOADER_FILE, 0, layer_bytes * 1000}, /* everything in the RAM tier */
        {NVL_LOADER_GPU_NVME, n_layer / 2, 0},    /* half streams from the sim */
        {NVL_LOADER_CPU_NVME, 1, 0},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const bool nvme =
            cases[c].backend == NVL_LOADER_GPU_NVME || cases[c].backend == NVL_LOADER_CPU_NVME;
        if (nvme && !ctrl)
            continue;
        struct nvl_loader *l =
            make_loader(cases[c].backend, nvme ? ctrl : NULL, nvme ? NULL : path, model);
        if (!l) {
            CHECK(cases[c].backend != NVL_LOADER_FILE, "file loader");
            continue;
        }
        struct nvl_gpu_model *gm = gpu_place(model, l, cases[c].vram_layers, cases[c].ram_budget);
        if (gm) {
            struct nvl_gpu_stats st;
            nvl_gpu_model_stats(gm, &st);
            struct run r;
            const int rc = run_greedy(model, gm, prompt, n_prompt, NULL, &r);
            CHECK(rc == 0, "%s %s streaming run: %s", name,
                  nvl_loader_backend_str(cases[c].backend), nvl_strerror(rc));
            nvl_gpu_model_stats(gm, &st);
            const bool same =
                rc == 0 && memcmp(r.logits, ref->logits,
                                  (size_t)(N_GEN + 1) * (size_t)nv * sizeof(float)) == 0;
            CHECK(same,
                  "%s: %s placement (vram %d, ram %d, stream %d) is not bit-identical to "
                  "resident",
                  name, nvl_loader_backend_str(cases[c].backend), st.layers[0], st.layers[1],
                  st.layers[2]);
            printf("%s: %-8s vram %2d ram %2d stream %2d layers: %s (streamed %.1f MB, RAM tier "
                   "%.1f MB)\n",
                   name, nvl_loader_backend_str(cases[c].backend), st.layers[0], st.layers[1],
                   st.layers[2], same ? "bit-identical to resident" : "DIFFERENT",
                   st.streamed_bytes / 1e6, st.ram_copied_bytes / 1e6);
            free(r.logits);
            nvl_gpu_model_destroy(gm);
        }
        nvl_loader_destroy(l);
    }
    nvl_ctrl_destroy(ctrl);
    nvl_transport_destroy(t);
    unlink(padded);
}

static void check_model(const char *name, const char *path, const char *text)
{
    if (access(path, R_OK) != 0) {
        printf("%s: %s not found, skipped\n", name, path);
        return;
    }
    struct nvl_llama_model *model;
    struct nvl_vocab *vocab;
    char err[512] = "";
    if (nvl_llama_load(path, &model, err, sizeof(err))) {
        CHECK(0, "%s: %s", path, err);
        return;
    }
    CHECK(nvl_vocab_load_gguf(nvl_llama_gguf(model), &vocab) == 0, "vocab");
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    CHECK(nvl_vocab_tokenize_alloc(vocab, text, strlen(text), NVL_TOKENIZE_ADD_SPECIAL, &prompt,
                                   &n_prompt) == 0,
          "tokenize");
    const int32_t nv = nvl_llama_hparams(model)->n_vocab;

    struct run cpu, gpu, gpu_forced;
    struct nvl_gpu_model *gm = gpu_place(model, NULL, -1, 0);
    if (!gm)
        goto out;
    CHECK(run_greedy(model, NULL, prompt, (int32_t)n_prompt, NULL, &cpu) == 0, "CPU run");
    CHECK(run_greedy(model, gm, prompt, (int32_t)n_prompt, NULL, &gpu) == 0, "GPU run");
    /* The GPU fed the CPU's tokens: logits comparable at every step even after a divergence. */
    CHECK(run_greedy(model, gm, prompt, (int32_t)n_prompt, cpu.tokens, &gpu_forced) == 0,
          "GPU run (CPU tokens)");
    /* The separate kernels (NVL_GPU_FUSE=0, read when a session starts) must give the fused
     * decode steps' bits. */
    {
        struct run sep = {0};
        setenv("NVL_GPU_FUSE", "0", 1);
        const int rc = run_greedy(model, gm, prompt, (int32_t)n_prompt, NULL, &sep);
        unsetenv("NVL_GPU_FUSE");
        const bool same = rc == 0 && memcmp(sep.logits, gpu.logits,
                                            (size_t)(N_GEN + 1) * (size_t)nv * sizeof(float)) == 0;
        CHECK(same, "%s: fused decode steps differ from the separate kernels", name);
        printf("%s: fused decode steps %s the separate kernels\n", name,
               same ? "bit-identical to" : "DIFFERENT from");
        free(sep.logits);
    }
    check_gpu_greedy(name, model, gm, prompt, (int32_t)n_prompt, &gpu);
    check_gpu_sample(name, model, gm, prompt, (int32_t)n_prompt);
    double worst = 0.0, worst_abs = 0.0;
    for (int i = 0; i <= N_GEN; i++) {
        const float *a = cpu.logits + (size_t)i * nv, *b = gpu_forced.logits + (size_t)i * nv;
        float lo = a[0], hi = a[0];
        double d = 0.0;
        for (int32_t j = 0; j < nv; j++) {
            lo = fminf(lo, a[j]);
            hi = fmaxf(hi, a[j]);
            d = fmax(d, fabs((double)a[j] - b[j]));
        }
        worst = fmax(worst, d / (hi - lo));
        worst_abs = fmax(worst_abs, d);
    }
    int first = -1;
    for (int i = 0; i < N_GEN && first < 0; i++)
        if (cpu.tokens[i] != gpu.tokens[i])
            first = i;
    printf("%s: %zu prompt tokens, %d generated; logits max |gpu - cpu| = %.2e of their range\n",
           name, n_prompt, N_GEN, worst);
    /* Both sides round activations: the CPU to 8 bits everywhere, the GPU to 8 bits for single
     * tokens and to fp16 for the prompt's tensor-core products. */
    CHECK(worst <= 5e-2, "%s: GPU logits differ from the CPU's by %.3g of their range", name,
          worst);
    if (first < 0) {
        printf("%s: GPU greedy output == CPU greedy output (%d tokens)\n", name, N_GEN);
    } else {
        const float *a = cpu.logits + (size_t)first * nv,
                    *b = gpu_forced.logits + (size_t)first * nv;
        const int32_t tc = cpu.tokens[first], tg = gpu.tokens[first];
        printf("%s: first divergence at generated token %d: CPU picks %d (logit %.6f vs %.6f), GPU "
               "picks %d (logit %.6f vs %.6f)\n",
               name, first, tc, a[tc], a[tg], tg, b[tg], b[tc]);
        /* A genuine near-tie: the CPU's own margin is within the measured logit error. */
        CHECK(fabs((double)a[tc] - a[tg]) <= 2.0 * worst_abs,
              "%s: divergence at token %d is not a near-tie", name, first);
    }
    check_placements(name, path, model, prompt, (int32_t)n_prompt, &gpu);
    free(cpu.logits);
    free(gpu.logits);
    free(gpu_forced.logits);
    nvl_gpu_model_destroy(gm);
out:
    free(prompt);
    nvl_vocab_destroy(vocab);
    nvl_llama_destroy(model);
}

int main(int argc, char **argv)
{
    char why[256];
    if (nvl_gpu_probe(0, why, sizeof(why))) {
        printf("%s: skipped\n", why);
        return 77;
    }
    printf("%s\n", why);
    char stories[4096], smol[4096];
    const char *shared = getenv("NVL_SHARED"), *src = getenv("NVL_SOURCE_DIR");
    snprintf(stories, sizeof(stories), "%s", argc > 1 ? argv[1] : "");
    snprintf(smol, sizeof(smol), "%s", argc > 2 ? argv[2] : "");
    if (argc <= 1)
        snprintf(stories, sizeof(stories), "%s/models/stories260K.gguf", shared ? shared : ".");
    if (argc <= 2)
        snprintf(smol, sizeof(smol), "%s/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                 src ? src : ".");
    check_model("stories260K", stories,
                "Once upon a time, there was a little girl named Lily. She loved to play with her");
    check_model("SmolLM2", smol,
                "The capital of France is Paris. The capital of Germany is Berlin. The capital of "
                "Italy is");
    if (failures) {
        printf("%d failures\n", failures);
        return 1;
    }
    printf("GPU forward pass: all checks passed\n");
    return 0;
}
