/* The generation loop: prompt evaluation, then sample / evaluate until a stop condition. */
#include <errno.h>
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

    for (;;) {
        if (params->n_predict >= 0 && st.n_generated >= params->n_predict) {
            st.stop = NVL_STOP_LENGTH;
            break;
        }
        const int32_t token = nvl_sampler_sample(sampler, nvl_session_logits(session, -1));
        st.n_generated++;
        if (is_eog(params, token)) {
            st.stop = NVL_STOP_EOG;
            break;
        }
        nvl_sampler_accept(sampler, token);
        if (on_token && on_token(ctx, token)) {
            st.stop = NVL_STOP_CALLBACK;
            break;
        }
        if (params->n_predict >= 0 && st.n_generated >= params->n_predict) {
            st.stop = NVL_STOP_LENGTH;
            break;
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
