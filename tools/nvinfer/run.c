/* nvinfer prompt mode: print the prompt, then the generated text as it comes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvinfer.h"

struct print_ctx {
    const struct nvl_vocab *vocab;
};

static int print_token(void *ctx, int32_t token)
{
    struct print_ctx *p = ctx;
    size_t len = 0;
    const char *piece = nvl_vocab_token_piece(p->vocab, token, false, &len);
    if (piece)
        fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static const char *stop_name(enum nvl_stop_reason r)
{
    switch (r) {
    case NVL_STOP_EOG:
        return "end of text";
    case NVL_STOP_CALLBACK:
        return "stopped";
    case NVL_STOP_CONTEXT:
        return "context full";
    default:
        return "length";
    }
}

int nvinfer_run_prompt(const struct nvinfer_opts *o, struct nvinfer_model *m)
{
    const char *prompt = o->prompt ? o->prompt : "";
    int32_t *ids = NULL;
    size_t n = 0;
    int rc =
        nvl_vocab_tokenize_alloc(m->vocab, prompt, strlen(prompt),
                                 NVL_TOKENIZE_ADD_SPECIAL | NVL_TOKENIZE_PARSE_SPECIAL, &ids, &n);
    if (rc) {
        fprintf(stderr, "nvinfer: cannot tokenize the prompt: %s\n", nvl_strerror(rc));
        return 1;
    }
    if (n == 0) {
        fprintf(stderr, "nvinfer: the prompt is empty and the model adds no BOS token (-p)\n");
        free(ids);
        return 2;
    }
    if ((int64_t)n >= nvl_session_n_ctx(m->session)) {
        fprintf(stderr, "nvinfer: the prompt is %zu tokens; the context holds %d (--ctx)\n", n,
                nvl_session_n_ctx(m->session));
        free(ids);
        return 2;
    }

    struct nvl_sampler *smp = NULL;
    rc = nvl_sampler_create(&o->sampling, nvl_llama_hparams(m->model)->n_vocab, &smp);
    if (rc) {
        fprintf(stderr, "nvinfer: bad sampling options: %s\n", nvl_strerror(rc));
        free(ids);
        return 2;
    }

    fputs(prompt, stdout);
    fflush(stdout);
    struct nvl_generate_params gp = {
        .n_predict = o->n_predict,
        .eog_tokens = m->eog,
        .n_eog_tokens = m->n_eog,
    };
    struct nvl_generate_stats st;
    struct print_ctx pc = {.vocab = m->vocab};
    rc = nvl_generate(m->session, smp, ids, (int32_t)n, &gp, print_token, &pc, &st);
    fputc('\n', stdout);
    fflush(stdout);
    if (rc)
        fprintf(stderr, "nvinfer: generation failed: %s\n", nvl_strerror(rc));
    else if (o->verbose)
        fprintf(stderr,
                "nvinfer: prompt %d tokens in %.1f ms (%.1f tok/s); generated %d tokens in %.1f "
                "ms (%.1f tok/s); stop: %s\n",
                st.n_prompt, st.prompt_ns / 1e6,
                st.prompt_ns ? st.n_prompt / (st.prompt_ns / 1e9) : 0.0, st.n_generated,
                st.generate_ns / 1e6,
                st.generate_ns ? st.n_generated / (st.generate_ns / 1e9) : 0.0, stop_name(st.stop));
    if (!rc && o->verbose && m->gpu) {
        struct nvl_gpu_stats gst;
        nvl_gpu_model_stats(m->gpu, &gst);
        fprintf(stderr,
                "nvinfer: time to first token: %.2f s (resident weights placed in %.2f s, prompt "
                "%.1f ms)\n",
                gst.load_seconds + st.prompt_ns / 1e9, gst.load_seconds, st.prompt_ns / 1e6);
    }
    nvl_sampler_destroy(smp);
    free(ids);
    return rc ? 1 : 0;
}
