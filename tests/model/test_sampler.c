/* Sampler tests. Expected distributions are computed here from the definitions (softmax of
 * logits / T, the top-k / top-p / min-p cut rules), independently of the sampler's code, and
 * compared with the frequencies of many seeded draws. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "nvl_model.h"

#define N_DRAWS 40000

static struct nvl_sampler *make(float temp, int32_t top_k, float top_p, float min_p, float pen,
                                uint64_t seed, int32_t n_vocab)
{
    struct nvl_sampler_params p;
    nvl_sampler_params_default(&p);
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repeat_penalty = pen;
    p.seed = seed;
    struct nvl_sampler *s = NULL;
    assert_int_equal(nvl_sampler_create(&p, n_vocab, &s), 0);
    return s;
}

/* Draws N_DRAWS tokens and checks each frequency against `expect` within 4.5 standard
 * deviations of a binomial count (a false failure is then about 1e-5 per token). */
static void check_distribution(struct nvl_sampler *s, const float *logits, const double *expect,
                               int32_t n)
{
    int counts[16] = {0};
    assert_true(n <= 16);
    for (int i = 0; i < N_DRAWS; i++) {
        int32_t t = nvl_sampler_sample(s, logits);
        assert_true(t >= 0 && t < n);
        counts[t]++;
    }
    for (int32_t i = 0; i < n; i++) {
        double mean = expect[i] * N_DRAWS;
        double sd = sqrt(N_DRAWS * expect[i] * (1.0 - expect[i]));
        if (expect[i] == 0.0)
            assert_int_equal(counts[i], 0);
        else
            assert_true(fabs(counts[i] - mean) <= 4.5 * sd + 1.0);
    }
}

static void softmax_ref(const float *l, double *p, int32_t n, double temp)
{
    double max = l[0], sum = 0;
    for (int32_t i = 1; i < n; i++)
        max = l[i] > max ? l[i] : max;
    for (int32_t i = 0; i < n; i++)
        sum += p[i] = exp((l[i] - max) / temp);
    for (int32_t i = 0; i < n; i++)
        p[i] /= sum;
}

static void test_params_rejected(void **state)
{
    (void)state;
    struct nvl_sampler_params p;
    struct nvl_sampler *s = (struct nvl_sampler *)1;
    nvl_sampler_params_default(&p);
    p.temperature = NAN;
    assert_int_equal(nvl_sampler_create(&p, 10, &s), -EINVAL);
    assert_null(s);
    nvl_sampler_params_default(&p);
    p.top_p = 1.5f;
    assert_int_equal(nvl_sampler_create(&p, 10, &s), -EINVAL);
    nvl_sampler_params_default(&p);
    p.repeat_penalty = 0.0f;
    assert_int_equal(nvl_sampler_create(&p, 10, &s), -EINVAL);
    nvl_sampler_params_default(&p);
    assert_int_equal(nvl_sampler_create(&p, 0, &s), -EINVAL);
    nvl_sampler_destroy(NULL);
}

static void test_greedy_is_argmax(void **state)
{
    (void)state;
    float l[8] = {0.1f, 2.0f, -1.0f, 3.5f, 3.5f, -INFINITY, 0.0f, 1.0f};
    struct nvl_sampler *s = make(0.0f, 40, 0.95f, 0.05f, 1.0f, 1, 8);
    /* Ties go to the lowest id, as llama.cpp's argmax does. */
    assert_int_equal(nvl_sampler_sample(s, l), 3);
    nvl_sampler_destroy(s);
    /* top_k = 1 is greedy at any temperature. */
    s = make(5.0f, 1, 1.0f, 0.0f, 1.0f, 1, 8);
    for (int i = 0; i < 100; i++)
        assert_int_equal(nvl_sampler_sample(s, l), 3);
    nvl_sampler_destroy(s);
}

static void test_seed_reproducible(void **state)
{
    (void)state;
    float l[16];
    for (int i = 0; i < 16; i++)
        l[i] = (float)((i * 7) % 5);
    int32_t a[200], b[200], c[200];
    struct nvl_sampler *s1 = make(1.0f, 0, 1.0f, 0.0f, 1.0f, 42, 16);
    struct nvl_sampler *s2 = make(1.0f, 0, 1.0f, 0.0f, 1.0f, 42, 16);
    struct nvl_sampler *s3 = make(1.0f, 0, 1.0f, 0.0f, 1.0f, 43, 16);
    for (int i = 0; i < 200; i++) {
        a[i] = nvl_sampler_sample(s1, l);
        b[i] = nvl_sampler_sample(s2, l);
        c[i] = nvl_sampler_sample(s3, l);
    }
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, c, sizeof(a));
    /* reset restarts the stream. */
    nvl_sampler_reset(s1);
    for (int i = 0; i < 200; i++)
        assert_int_equal(nvl_sampler_sample(s1, l), a[i]);
    nvl_sampler_destroy(s1);
    nvl_sampler_destroy(s2);
    nvl_sampler_destroy(s3);
}

/* peek_draw(i) is the draw the i-th sample from now takes, and skip_draws(n) leaves the stream
 * where n samples would: with two equal logits at temperature 1 a sample is token 0 exactly when
 * its draw is below 0.5, so the samples spell out the draws. Also: is_argmax for greedy
 * samplers without a penalty only. */
static void test_draws_peek_and_skip(void **state)
{
    (void)state;
    const float l[2] = {0.0f, 0.0f};
    struct nvl_sampler *a = make(1.0f, 0, 1.0f, 0.0f, 1.0f, 7, 2);
    struct nvl_sampler *b = make(1.0f, 0, 1.0f, 0.0f, 1.0f, 7, 2);
    double peek[300];
    int below = 0;
    for (int i = 0; i < 300; i++)
        peek[i] = nvl_sampler_peek_draw(a, i);
    for (int i = 0; i < 300; i++) {
        assert_true(peek[i] >= 0.0 && peek[i] < 1.0);
        assert_true(nvl_sampler_peek_draw(a, 0) == peek[i]); /* peeking takes nothing */
        assert_int_equal(nvl_sampler_sample(a, l), peek[i] < 0.5 ? 0 : 1);
        below += peek[i] < 0.5;
    }
    assert_true(below > 100 && below < 200);
    nvl_sampler_skip_draws(b, 300);
    assert_true(nvl_sampler_peek_draw(b, 0) == nvl_sampler_peek_draw(a, 0));
    assert_true(nvl_sampler_peek_draw(b, 5) == nvl_sampler_peek_draw(a, 5));
    nvl_sampler_destroy(a);
    nvl_sampler_destroy(b);

    struct nvl_sampler *g = make(0.0f, 40, 0.95f, 0.05f, 1.0f, 1, 2);
    struct nvl_sampler *k1 = make(0.8f, 1, 0.95f, 0.05f, 1.0f, 1, 2);
    struct nvl_sampler *pen = make(0.0f, 40, 0.95f, 0.05f, 1.1f, 1, 2);
    struct nvl_sampler *t = make(0.8f, 40, 0.95f, 0.05f, 1.0f, 1, 2);
    assert_true(nvl_sampler_is_argmax(g));
    assert_true(nvl_sampler_is_argmax(k1));
    assert_false(nvl_sampler_is_argmax(pen));
    assert_false(nvl_sampler_is_argmax(t));
    assert_true(nvl_sampler_get_params(t)->temperature == 0.8f);
    nvl_sampler_destroy(g);
    nvl_sampler_destroy(k1);
    nvl_sampler_destroy(pen);
    nvl_sampler_destroy(t);
}

static void test_temperature_distribution(void **state)
{
    (void)state;
    const float l[4] = {1.0f, 0.5f, 0.0f, -1.0f};
    const float temps[3] = {1.0f, 0.5f, 2.0f};
    for (int t = 0; t < 3; t++) {
        double p[4];
        softmax_ref(l, p, 4, temps[t]);
        struct nvl_sampler *s = make(temps[t], 0, 1.0f, 0.0f, 1.0f, 7 + (uint64_t)t, 4);
        check_distribution(s, l, p, 4);
        nvl_sampler_destroy(s);
    }
}

static void test_top_k(void **state)
{
    (void)state;
    const float l[6] = {0.0f, 2.0f, 1.0f, 3.0f, -1.0f, 1.5f};
    /* The 3 largest are ids 3, 1, 5; renormalize softmax over them. */
    float kept[3] = {3.0f, 2.0f, 1.5f};
    double pk[3], p[6] = {0};
    softmax_ref(kept, pk, 3, 1.0);
    p[3] = pk[0];
    p[1] = pk[1];
    p[5] = pk[2];
    struct nvl_sampler *s = make(1.0f, 3, 1.0f, 0.0f, 1.0f, 11, 6);
    check_distribution(s, l, p, 6);
    nvl_sampler_destroy(s);
}

static void test_top_p(void **state)
{
    (void)state;
    /* Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1. top_p 0.7: 0.5 < 0.7 and
     * 0.5 + 0.3 >= 0.7, so ids 0 and 1 stay, in the ratio 5:3. */
    const float l[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    const double p[4] = {0.625, 0.375, 0.0, 0.0};
    struct nvl_sampler *s = make(1.0f, 0, 0.7f, 0.0f, 1.0f, 12, 4);
    check_distribution(s, l, p, 4);
    nvl_sampler_destroy(s);
}

static void test_min_p(void **state)
{
    (void)state;
    /* min_p 0.2 of the top probability 0.5 cuts at 0.1: ids 0, 1, 2 stay (0.5, 0.3, 0.15). */
    const float l[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    const double p[4] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0};
    struct nvl_sampler *s = make(1.0f, 0, 1.0f, 0.2f, 1.0f, 13, 4);
    check_distribution(s, l, p, 4);
    nvl_sampler_destroy(s);
}

static void test_repeat_penalty(void **state)
{
    (void)state;
    /* Penalty 2 halves a positive logit and doubles a negative one, once per distinct token. */
    const float l[3] = {3.0f, 2.0f, -1.0f};
    struct nvl_sampler *s = make(0.0f, 0, 1.0f, 0.0f, 2.0f, 0, 3);
    assert_int_equal(nvl_sampler_sample(s, l), 0);
    nvl_sampler_accept(s, 0);
    nvl_sampler_accept(s, 0); /* a repeat is not penalized twice: 3 / 2 = 1.5 < 2 */
    assert_int_equal(nvl_sampler_sample(s, l), 1);
    nvl_sampler_accept(s, 1); /* now 1.5 vs 1.0 */
    assert_int_equal(nvl_sampler_sample(s, l), 0);
    nvl_sampler_destroy(s);

    /* Negative logits move away from zero: -1 * 2 = -2 loses to -1.5. */
    const float m[2] = {-1.0f, -1.5f};
    s = make(0.0f, 0, 1.0f, 0.0f, 2.0f, 0, 2);
    nvl_sampler_accept(s, 0);
    assert_int_equal(nvl_sampler_sample(s, m), 1);
    /* reset forgets the history. */
    nvl_sampler_reset(s);
    assert_int_equal(nvl_sampler_sample(s, m), 0);
    nvl_sampler_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_rejected),
        cmocka_unit_test(test_greedy_is_argmax),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_draws_peek_and_skip),
        cmocka_unit_test(test_temperature_distribution),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_repeat_penalty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
