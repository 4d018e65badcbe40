/* Token sampler: repetition penalty, top-k, top-p, min-p, temperature, seeded random draw.
 *
 * The stages run in llama.cpp's default order: the repetition penalty edits the logits, top-k,
 * top-p and min-p cut the candidate list (top-p and min-p look at the probabilities at
 * temperature 1), and the temperature only reshapes what is left before the draw. A temperature
 * of 0 (or top_k = 1) is greedy: the sampler returns the first index of the largest logit and
 * draws no random number. The random stream is a splitmix64 generator seeded by `seed`, so one
 * seed gives the same tokens on every machine. */
#ifndef NVL_MODEL_SAMPLER_H
#define NVL_MODEL_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nvl_sampler;

struct nvl_sampler_params {
    float temperature;     /* <= 0: greedy */
    int32_t top_k;         /* keep the k most likely tokens; <= 0: off */
    float top_p;           /* keep the smallest set whose probability reaches p; >= 1: off */
    float min_p;           /* drop tokens below min_p * p(most likely); <= 0: off */
    float repeat_penalty;  /* divide positive (multiply negative) logits of recent tokens; 1: off */
    int32_t repeat_last_n; /* how many accepted tokens the penalty looks back on */
    uint64_t seed;         /* seed of the random stream */
};

/* llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalty
 * (1.0, last 64), seed 0. */
void nvl_sampler_params_default(struct nvl_sampler_params *params);

/* Returns 0, -EINVAL for a bad parameter (negative or NaN temperature, top_p/min_p outside [0, 1],
 * repeat_penalty <= 0, n_vocab < 1) or -ENOMEM. */
int nvl_sampler_create(const struct nvl_sampler_params *params, int32_t n_vocab,
                       struct nvl_sampler **out);
void nvl_sampler_destroy(struct nvl_sampler *sampler);

/* Picks a token from n_vocab logits (not modified). Tokens whose logit is -INFINITY are never
 * picked unless every logit is. */
int32_t nvl_sampler_sample(struct nvl_sampler *sampler, const float *logits);

/* Whether this sampler always picks the first index of the largest logit (greedy, no repetition
 * penalty): then the GPU may pick the tokens itself (nvl_session_greedy). */
bool nvl_sampler_is_argmax(const struct nvl_sampler *sampler);

/* The parameters the sampler was created with. */
const struct nvl_sampler_params *nvl_sampler_get_params(const struct nvl_sampler *sampler);

/* The uniform number in [0, 1) the i-th sample from now draws (i >= 0), without taking it; and
 * taking n draws, as n samples would. For a sampler run elsewhere (the GPU's sampling loop,
 * nvl_session_sample_gpu) that must leave the random stream where the CPU would have. A sample
 * draws once, except a greedy one or one whose logits are all -INFINITY. */
double nvl_sampler_peek_draw(const struct nvl_sampler *sampler, int32_t i);
void nvl_sampler_skip_draws(struct nvl_sampler *sampler, int32_t n);

/* Records a token that became part of the context (prompt or generated), for the penalty. */
void nvl_sampler_accept(struct nvl_sampler *sampler, int32_t token);

/* Forgets the accepted tokens and restarts the random stream from the seed. */
void nvl_sampler_reset(struct nvl_sampler *sampler);

#ifdef __cplusplus
}
#endif

#endif
