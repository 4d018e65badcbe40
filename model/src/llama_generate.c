/* The generation loop: prompt evaluation, then sample / evaluate until a stop condition. */
#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "nvl_model/llama.h"
#include "nvl_model/sampler.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool is_eog(const struct nvl_generate_params *p, int32_t token)
{
    for (int32_t i = 0; i < p->n_eog_tokens; i++)
        if (p->eog_tokens[i] == token)
            return true;
    return false;
}

/* The checks of one sampled token, shared by the CPU loop and the GPU's greedy loop: false when
 * generation stops at it (st->stop says why). */
struct gen_ctx {
    struct nvl_sampler *sampler;
    const struct nvl_generate_params *params;
    nvl_token_fn on_token;
    void *ctx;
    struct nvl_generate_stats *st;
};

static bool gen_take(struct gen_ctx *g, int32_t token)
{
    g->st->n_generated++;
    if (is_eog(g->params, token)) {
        g->st->stop = NVL_STOP_EOG;
        return false;
    }
    nvl_sampler_accept(g->sampler, token);
    if (g->on_token && g->on_token(g->ctx, token)) {
        g->st->stop = NVL_STOP_CALLBACK;
        return false;
    }
    if (g->params->n_predict >= 0 && g->st->n_generated >= g->params->n_predict) {
        g->st->stop = NVL_STOP_LENGTH;
        return false;
    }
    return true;
}

static bool gen_take_gpu(void *ctx, int32_t token)
{
    return gen_take(ctx, token);
}

int nvl_generate(struct nvl_session *session, struct nvl_sampler *sampler, const int32_t *prompt,
                 int32_t n_prompt, const struct nvl_generate_params *params, nvl_token_fn on_token,
                 void *ctx, struct nvl_generate_stats *stats)
{
    struct nvl_generate_stats st = {.n_prompt = n_prompt, .stop = NVL_STOP_LENGTH};
    int rc = 0;

    uint64_t t0 = now_ns();
    if (n_prompt > 0) {
        rc = nvl_session_eval(session, prompt, n_prompt, false);
        if (rc == -ENOSPC) {
            st.stop = NVL_STOP_CONTEXT;
            goto out;
        }
        if (rc)
            goto out;
        for (int32_t i = 0; i < n_prompt; i++)
            nvl_sampler_accept(sampler, prompt[i]);
    } else if (!nvl_session_logits(session, -1)) {
        rc = -EINVAL;
        goto out;
    }
    uint64_t t1 = now_ns();
    st.prompt_ns = t1 - t0;

    struct gen_ctx g = {
        .sampler = sampler, .params = params, .on_token = on_token, .ctx = ctx, .st = &st};
    /* On a GPU session, after the first token, the GPU picks the rest itself
     * (nvl_session_sample_gpu), the CPU off the loop; -ENOTSUP falls back to this loop. */
    bool gpu_loop = true;
    for (;;) {
        if (params->n_predict >= 0 && st.n_generated >= params->n_predict) {
            st.stop = NVL_STOP_LENGTH;
            break;
        }
        const int32_t token = nvl_sampler_sample(sampler, nvl_session_logits(session, -1));
        if (!gen_take(&g, token))
            break;
        if (gpu_loop) {
            /* Evaluations left: one per token still to be generated after this one (at least
             * one, as gen_take went on). */
            const int32_t steps =
                params->n_predict >= 0 ? params->n_predict - st.n_generated : INT32_MAX;
            rc = nvl_session_sample_gpu(session, sampler, token, steps, gen_take_gpu, &g);
            if (rc != -ENOTSUP) {
                if (rc == -ENOSPC) {
                    rc = 0;
                    st.stop = NVL_STOP_CONTEXT;
                } else if (rc == 0 && st.stop == NVL_STOP_LENGTH &&
                           nvl_session_n_past(session) == nvl_session_n_ctx(session) &&
                           !(params->n_predict >= 0 && st.n_generated >= params->n_predict)) {
                    st.stop = NVL_STOP_CONTEXT; /* steps ran out at the end of the context */
                }
                break;
            }
            gpu_loop = false;
        }
        rc = nvl_session_eval(session, &token, 1, false);
        if (rc == -ENOSPC) {
            rc = 0;
            st.stop = NVL_STOP_CONTEXT;
            break;
        }
        if (rc)
            break;
    }
    st.generate_ns = now_ns() - t1;
out:
    if (stats)
        *stats = st;
    return rc == -ENOSPC ? 0 : rc;
}
