/* nvinfer: runs a GGUF model. `nvinfer [run] OPTIONS` completes a prompt, chats (-i) or
 * benchmarks (--benchmark); further subcommands go into the table in main(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nvinfer.h"
#include "serve.h"

/* Why the CPU backend runs, for -v (gpu.c makes the choice). */
static const char *backend_reason(const struct nvinfer_opts *o, char *buf, size_t len)
{
    if (nvinfer_gpu_wanted(o, buf, len))
        return "the GPU backend cannot run this model";
    return buf;
}

static void print_type_counts(const struct nvl_gguf *g)
{
    int counts[NVL_GGML_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g); i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);
        if ((unsigned)t->type < NVL_GGML_TYPE_COUNT)
            counts[t->type]++;
    }
    const char *sep = "";
    for (int t = 0; t < NVL_GGML_TYPE_COUNT; t++) {
        if (counts[t]) {
            fprintf(stderr, "%s%s x%d", sep, nvl_ggml_type_name((uint32_t)t), counts[t]);
            sep = ", ";
        }
    }
}

static void print_verbose(const struct nvinfer_opts *o, const struct nvinfer_model *m)
{
    const struct nvl_llama_hparams *hp = nvl_llama_hparams(m->model);
    const struct nvl_gguf *g = nvl_llama_gguf(m->model);
    struct nvl_llama_weights *w = nvl_llama_weights(m->model);
    const double mb = 1e6;
    const int32_t n_ctx = nvl_session_n_ctx(m->session);
    const double kv_bytes =
        2.0 * hp->n_layer * n_ctx * hp->n_head_kv * hp->head_dim * (o->kv_f32 ? 4.0 : 2.0);

    char why[256] = "";
    if (m->gpu)
        nvinfer_gpu_print_verbose(o, m);
    else
        fprintf(stderr, "nvinfer: backend: cpu, %d threads, %s kernels (%s)\n",
                nvl_session_n_threads(m->session), nvl_llama_cpu_kernels(),
                backend_reason(o, why, sizeof(why)));
    if (!o->nvme && !o->sim && !m->gpu) /* drive.c and gpu.c report their own data path */
        fprintf(stderr,
                "nvinfer: data path: weights mmap'd read-only from %s and read through the page "
                "cache; the NVMe loader paths need the GPU backend\n",
                o->model);
    fprintf(stderr,
            "nvinfer: model: llama, %d layers, n_embd %d, %d heads (%d kv), head dim %d, n_ff %d, "
            "rope base %g, vocab %d (%s%s%s)\n",
            hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff,
            hp->rope_freq_base, hp->n_vocab, nvl_vocab_type_name(m->vocab),
            *nvl_vocab_pre_name(m->vocab) ? " " : "", nvl_vocab_pre_name(m->vocab));
    fprintf(stderr, "nvinfer: weights: %.1f MB (", (double)nvl_llama_weight_bytes(m->model) / mb);
    print_type_counts(g);
    fprintf(stderr, "), %.1f MB read per token%s\n",
            (double)nvl_llama_bytes_per_token(m->model) / mb,
            w->output_tied ? ", output tied to token_embd" : "");
    fprintf(stderr, "nvinfer: context: %d tokens (trained %d), KV cache %s, %.1f MB\n", n_ctx,
            hp->n_ctx_train, o->kv_f32 ? "f32" : "f16", kv_bytes / mb);
    fprintf(stderr, "nvinfer: chat template: %s\n",
            m->tmpl ? nvl_chat_family_name(nvl_chat_template_family(m->tmpl)) : "none");
    const struct nvl_sampler_params *s = &o->sampling;
    fprintf(stderr,
            "nvinfer: sampling: temp %g, top-k %d, top-p %g, min-p %g, repeat-penalty %g (last "
            "%d), seed %llu\n",
            s->temperature, s->top_k, s->top_p, s->min_p, s->repeat_penalty, s->repeat_last_n,
            (unsigned long long)s->seed);
}

int nvinfer_model_open(const struct nvinfer_opts *o, struct nvinfer_model *m)
{
    memset(m, 0, sizeof(*m));
    char err[512] = "";
    int rc;
    rc = nvinfer_gpu_load_model(o, m); /* --sim on a plain GGUF file for the GPU */
    if (rc < 0)
        return -1;
    if (rc == 0) {
        /* loaded */
    } else if (o->nvme || o->sim) {
        if (nvinfer_drive_load(o, &m->model))
            return -1;
    } else if ((rc = nvl_llama_load(o->model, &m->model, err, sizeof(err)))) {
        fprintf(stderr, "nvinfer: cannot load %s: %s\n", o->model, err[0] ? err : nvl_strerror(rc));
        return -1;
    }
    rc = nvl_vocab_load_gguf(nvl_llama_gguf(m->model), &m->vocab);
    if (rc) {
        fprintf(stderr, "nvinfer: %s: cannot load the vocabulary: %s\n", o->model,
                nvl_strerror(rc));
        goto err_close;
    }
    if ((uint32_t)nvl_llama_hparams(m->model)->n_vocab < nvl_vocab_n_tokens(m->vocab)) {
        fprintf(stderr, "nvinfer: %s: the vocabulary has more tokens than token_embd rows\n",
                o->model);
        goto err_close;
    }

    const char *jinja = NULL;
    if (o->chat_template) {
        if (nvl_chat_template_create_named(o->chat_template, &m->tmpl)) {
            fprintf(stderr,
                    "nvinfer: unknown chat template '%s' (chatml, llama2, llama3, zephyr)\n",
                    o->chat_template);
            goto err_close;
        }
    } else if (nvl_gguf_get_str(nvl_llama_gguf(m->model), "tokenizer.chat_template", &jinja,
                                NULL) == 0) {
        nvl_chat_template_create(jinja, &m->tmpl); /* unknown families leave tmpl NULL */
    }

    const uint32_t n_tokens = nvl_vocab_n_tokens(m->vocab);
    m->eog = malloc((size_t)n_tokens * sizeof(*m->eog));
    if (!m->eog)
        goto err_close;
    for (uint32_t id = 0; id < n_tokens; id++)
        if (nvl_vocab_is_eog(m->vocab, (int32_t)id))
            m->eog[m->n_eog++] = (int32_t)id;

    if (nvinfer_gpu_wanted(o, NULL, 0) && nvinfer_gpu_open(o, m) < 0)
        goto err_close;

    struct nvl_session_params sp;
    nvl_session_params_default(&sp);
    sp.gpu = m->gpu;
    sp.n_ctx = o->n_ctx;
    sp.n_threads = o->n_threads;
    sp.n_batch = o->n_batch;
    sp.kv_f32 = o->kv_f32;
    rc = nvl_session_create(m->model, &sp, &m->session);
    if (rc) {
        fprintf(stderr, "nvinfer: cannot create a session (context %d): %s\n", o->n_ctx,
                nvl_strerror(rc));
        goto err_close;
    }
    if (o->verbose)
        print_verbose(o, m);
    return 0;

err_close:
    nvinfer_model_close(m);
    return -1;
}

void nvinfer_model_close(struct nvinfer_model *m)
{
    nvl_session_destroy(m->session);
    nvinfer_gpu_close(m);
    nvl_chat_template_destroy(m->tmpl);
    free(m->eog);
    nvl_vocab_destroy(m->vocab);
    nvl_llama_destroy(m->model);
    memset(m, 0, sizeof(*m));
}

static int cmd_run(int argc, char **argv)
{
    struct nvinfer_opts o;
    int rc = nvinfer_parse_args(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    if (!o.seed_set) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o.sampling.seed = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
    struct nvinfer_model m;
    if (nvinfer_model_open(&o, &m))
        return 1;
    if (o.benchmark)
        rc = m.gpu ? nvinfer_gpu_benchmark(&o, &m) : nvinfer_run_benchmark(&o, &m);
    else if (o.chat)
        rc = nvinfer_run_chat(&o, &m);
    else
        rc = nvinfer_run_prompt(&o, &m);
    nvinfer_model_close(&m);
    return rc;
}

int main(int argc, char **argv)
{
    /* Streamed layers are waited for on the GPU (cuStreamWaitValue32), which holds the hardware
     * queue the compute stream is mapped to until the loader signals. With the driver's default
     * 8 queues, a stream of a library the loader calls (cuFile's bounce copies in compatibility
     * mode) could share that queue, and the read the compute stream waits for could then never
     * finish: the gds backend hung that way on the H100 machine. 32, the most the driver
     * allows, gives every stream of the process its own queue; set before the first CUDA call,
     * and a user's own setting wins. */
    setenv("CUDA_DEVICE_MAX_CONNECTIONS", "32", 0);
    /* `nvinfer SUBCOMMAND ...`; without a known subcommand the arguments are run's options. */
    static const struct {
        const char *name;
        int (*fn)(int argc, char **argv);
    } subcommands[] = {
        {"run", cmd_run},
        {"serve", nvinfer_serve},
    };
    if (argc > 1)
        for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
            if (strcmp(argv[1], subcommands[i].name) == 0)
                return subcommands[i].fn(argc - 1, argv + 1);
    return cmd_run(argc, argv);
}
