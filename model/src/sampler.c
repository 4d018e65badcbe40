/* Token sampler: see nvl_model/sampler.h for the order of the stages and why. */
#include "nvl_model/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct sampler_cand {
    int32_t id;
    float logit;
    float p; /* probability, filled by the stage that needs it */
};

struct nvl_sampler {
    struct nvl_sampler_params params;
    int32_t n_vocab;
    uint64_t rng;               /* splitmix64 state */
    int32_t *history;           /* ring of the last repeat_last_n accepted tokens */
    int32_t n_history;          /* valid entries in history */
    int32_t history_next;       /* slot the next accepted token goes to */
    uint32_t *penalty_mark;     /* [n_vocab] stamp of the sample that last penalized a token */
    uint32_t penalty_stamp;     /* stamp of the current sample */
    struct sampler_cand *cands; /* [n_vocab] candidate list of the current sample */
};

void nvl_sampler_params_default(struct nvl_sampler_params *params)
{
    *params = (struct nvl_sampler_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = 0,
    };
}

int nvl_sampler_create(const struct nvl_sampler_params *params, int32_t n_vocab,
                       struct nvl_sampler **out)
{
    *out = NULL;
    /* The negated comparisons also reject NaN. */
    if (n_vocab < 1 || !(params->temperature >= 0.0f) || !(params->top_p >= 0.0f) ||
        !(params->top_p <= 1.0f) || !(params->min_p >= 0.0f) || !(params->min_p <= 1.0f) ||
        !(params->repeat_penalty > 0.0f) || params->repeat_last_n < 0)
        return -EINVAL;

    struct nvl_sampler *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->params = *params;
    s->n_vocab = n_vocab;
    s->cands = malloc((size_t)n_vocab * sizeof(*s->cands));
    s->penalty_mark = calloc((size_t)n_vocab, sizeof(*s->penalty_mark));
    s->history =
        malloc((size_t)(params->repeat_last_n ? params->repeat_last_n : 1) * sizeof(*s->history));
    if (!s->cands || !s->penalty_mark || !s->history) {
        nvl_sampler_destroy(s);
        return -ENOMEM;
    }
    nvl_sampler_reset(s);
    *out = s;
    return 0;
}

void nvl_sampler_destroy(struct nvl_sampler *sampler)
{
    if (!sampler)
        return;
    free(sampler->cands);
    free(sampler->penalty_mark);
    free(sampler->history);
    free(sampler);
}

void nvl_sampler_reset(struct nvl_sampler *sampler)
{
    sampler->rng = sampler->params.seed;
    sampler->n_history = 0;
    sampler->history_next = 0;
}

void nvl_sampler_accept(struct nvl_sampler *sampler, int32_t token)
{
    const int32_t cap = sampler->params.repeat_last_n;
    if (cap == 0 || token < 0 || token >= sampler->n_vocab)
        return;
    sampler->history[sampler->history_next] = token;
    sampler->history_next = (sampler->history_next + 1) % cap;
    if (sampler->n_history < cap)
        sampler->n_history++;
}

/* splitmix64 (Steele, Lea, Flood 2014): tiny state, full period, and identical on every platform,
 * which is what a reproducible seed needs. */
static uint64_t sampler_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double sampler_rng_uniform(uint64_t *state)
{
    return (double)(sampler_rng_next(state) >> 11) * 0x1.0p-53;
}

/* Candidate order: larger logit first, then smaller id, so that ties never depend on the sort
 * algorithm. */
static bool cand_before(const struct sampler_cand *a, const struct sampler_cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb)
{
    const struct sampler_cand *a = pa, *b = pb;
    if (cand_before(a, b))
        return -1;
    return cand_before(b, a) ? 1 : 0;
}

static void cand_swap(struct sampler_cand *a, struct sampler_cand *b)
{
    struct sampler_cand t = *a;
    *a = *b;
    *b = t;
}

/* Moves the k first candidates (in cand_before order) to c[0..k), in no particular order:
 * quickselect with a median-of-three pivot, O(n) on average. */
static void cand_select(struct sampler_cand *c, int32_t n, int32_t k)
{
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (cand_before(&c[mid], &c[lo]))
            cand_swap(&c[mid], &c[lo]);
        if (cand_before(&c[hi], &c[lo]))
            cand_swap(&c[hi], &c[lo]);
        if (cand_before(&c[hi], &c[mid]))
            cand_swap(&c[hi], &c[mid]);
        struct sampler_cand pivot = c[mid];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (cand_before(&c[i], &pivot))
                i++;
            while (cand_before(&pivot, &c[j]))
                j--;
            if (i <= j) {
                cand_swap(&c[i], &c[j]);
                i++;
                j--;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            return;
    }
}

static void sampler_apply_penalty(struct nvl_sampler *s)
{
    const float penalty = s->params.repeat_penalty;
    if (penalty == 1.0f || s->n_history == 0)
        return;
    /* A fresh stamp per sample marks each distinct token once without clearing an array. */
    if (++s->penalty_stamp == 0) {
        memset(s->penalty_mark, 0, (size_t)s->n_vocab * sizeof(*s->penalty_mark));
        s->penalty_stamp = 1;
    }
    for (int32_t i = 0; i < s->n_history; i++) {
        int32_t t = s->history[i];
        if (s->penalty_mark[t] == s->penalty_stamp)
            continue;
        s->penalty_mark[t] = s->penalty_stamp;
        float *l = &s->cands[t].logit;
        *l = *l > 0.0f ? *l / penalty : *l * penalty;
    }
}

/* Fills c[i].p with softmax(logit / temp) over c[0..n) and returns the maximum probability. */
static float cand_softmax(struct sampler_cand *c, int32_t n, float temp)
{
    float max = c[0].logit;
    for (int32_t i = 1; i < n; i++)
        max = c[i].logit > max ? c[i].logit : max;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - max) / temp);
        sum += c[i].p;
    }
    float pmax = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = (float)(c[i].p / sum);
        pmax = c[i].p > pmax ? c[i].p : pmax;
    }
    return pmax;
}

const struct nvl_sampler_params *nvl_sampler_get_params(const struct nvl_sampler *s)
{
    return &s->params;
}

double nvl_sampler_peek_draw(const struct nvl_sampler *s, int32_t i)
{
    /* splitmix64's state only adds its constant each step: i steps ahead is one multiply. */
    uint64_t state = s->rng + (uint64_t)i * 0x9e3779b97f4a7c15ull;
    return sampler_rng_uniform(&state);
}

void nvl_sampler_skip_draws(struct nvl_sampler *s, int32_t n)
{
    s->rng += (uint64_t)n * 0x9e3779b97f4a7c15ull;
}

bool nvl_sampler_is_argmax(const struct nvl_sampler *s)
{
    const struct nvl_sampler_params *prm = &s->params;
    const bool penalty = prm->repeat_penalty != 1.0f && prm->repeat_last_n > 0;
    return !penalty && (prm->temperature <= 0.0f || prm->top_k == 1);
}

int32_t nvl_sampler_sample(struct nvl_sampler *s, const float *logits)
{
    const struct nvl_sampler_params *prm = &s->params;
    struct sampler_cand *c = s->cands;
    int32_t n = s->n_vocab;

    for (int32_t i = 0; i < n; i++)
        c[i] = (struct sampler_cand){.id = i, .logit = logits[i]};
    sampler_apply_penalty(s);

    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (c[i].logit > c[best].logit)
            best = i;
    if (prm->temperature <= 0.0f || prm->top_k == 1 || c[best].logit == -INFINITY)
        return best;

    if (prm->top_k > 0 && prm->top_k < n) {
        cand_select(c, n, prm->top_k);
        n = prm->top_k;
    }
    /* top-p needs the candidates in order; after top-k the sort is cheap, and a fixed order keeps
     * the draw independent of how quickselect left them. */
    if (prm->top_p < 1.0f || n < s->n_vocab)
        qsort(c, (size_t)n, sizeof(*c), cand_cmp);

    if (prm->top_p < 1.0f) {
        cand_softmax(c, n, 1.0f);
        double cum = 0.0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= prm->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }

    if (prm->min_p > 0.0f) {
        float pmax = cand_softmax(c, n, 1.0f);
        float cut = prm->min_p * pmax;
        int32_t keep = 0;
        for (int32_t i = 0; i < n; i++)
            if (c[i].p >= cut)
                c[keep++] = c[i];
        n = keep; /* the most likely token always passes, so n >= 1 */
    }

    cand_softmax(c, n, prm->temperature);
    double u = sampler_rng_uniform(&s->rng);
    double cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (u < cum)
            return c[i].id;
    }
    /* Rounding left the sum just under u: the draw belongs to the last candidate. */
    return c[n - 1].id;
}
