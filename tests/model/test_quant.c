/* Tests for model/src/quant_*.c: half-precision conversions and quantization round trips.
 *
 * Each format's error bound is derived from the format in the comment above its check.
 * Bit-exactness against ggml's reference implementation (through the gguf Python package) is
 * checked separately in test_gguf_pyref.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvl_model.h"

/* fp16 rounding of a scale: relative error at most 2^-11 for normal values, plus an absolute
 * 2^-25 for subnormals. */
#define FP16_REL 0x1p-11
#define FP16_ABS 0x1p-25

/* ---- half precision ----------------------------------------------------------------------- */

/* Reference binary16 decoding straight from IEEE 754. */
static double fp16_ref(uint16_t h)
{
    const int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
    double v;

    if (exp == 31)
        return man ? NAN : (sign ? -INFINITY : INFINITY);
    v = exp ? ldexp(1.0 + man / 1024.0, exp - 15) : ldexp(man / 1024.0, -14);
    return sign ? -v : v;
}

static void fp16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = nvl_fp16_to_fp32((uint16_t)h);
        const double ref = fp16_ref((uint16_t)h);

        if (isnan(ref)) {
            assert_true(isnan(f));
            assert_true(nvl_fp32_to_fp16(f) == ((h & 0x8000) | 0x7E00)); /* quiet NaN */
            continue;
        }
        if ((double)f != ref || (signbit(f) != 0) != (h >> 15 != 0))
            fail_msg("fp16 %04x -> %a, want %a", h, (double)f, ref);
        assert_int_equal(nvl_fp32_to_fp16(f), h);
    }
}

/* Midpoints between neighbouring fp16 values round to the even one; anything off the midpoint
 * rounds to the nearer neighbour; beyond 65520 becomes infinity. */
static void fp16_rounding(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x7BFF; h++) {
        const float lo = nvl_fp16_to_fp32((uint16_t)h), hi = nvl_fp16_to_fp32((uint16_t)(h + 1));
        const float mid = (float)(((double)lo + (double)hi) / 2); /* exact in fp32 */
        const uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;

        assert_int_equal(nvl_fp32_to_fp16(mid), even);
        assert_int_equal(nvl_fp32_to_fp16(-mid), even | 0x8000);
        assert_int_equal(nvl_fp32_to_fp16(nextafterf(mid, 0)), h);
        assert_int_equal(nvl_fp32_to_fp16(nextafterf(mid, INFINITY)), h + 1);
    }
    assert_int_equal(nvl_fp32_to_fp16(65504.0f), 0x7BFF);
    assert_int_equal(nvl_fp32_to_fp16(65519.99f), 0x7BFF);
    assert_int_equal(nvl_fp32_to_fp16(65520.0f), 0x7C00);
    assert_int_equal(nvl_fp32_to_fp16(1e10f), 0x7C00);
    assert_int_equal(nvl_fp32_to_fp16(-INFINITY), 0xFC00);
    assert_int_equal(nvl_fp32_to_fp16(1e-10f), 0);
    assert_int_equal(nvl_fp32_to_fp16(0x1p-25f), 0);                /* tie to even (zero) */
    assert_int_equal(nvl_fp32_to_fp16(nextafterf(0x1p-25f, 1)), 1); /* above the tie */
}

static void bf16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = nvl_bf16_to_fp32((uint16_t)h);
        uint32_t bits;

        memcpy(&bits, &f, 4);
        assert_int_equal(bits, h << 16);
        if (isnan(f)) {
            assert_true(isnan(nvl_bf16_to_fp32(nvl_fp32_to_bf16(f))));
            continue;
        }
        assert_int_equal(nvl_fp32_to_bf16(f), h);
        if ((h & 0x7F80) != 0x7F80 && (h & 0x7FFF) != 0x7F7F) {
            /* Midpoint to the next value up in magnitude: ties to even. */
            const uint32_t mid_bits = (h << 16) | 0x8000;
            float mid;

            memcpy(&mid, &mid_bits, 4);
            assert_int_equal(nvl_fp32_to_bf16(mid), (h & 1) ? h + 1 : h);
        }
    }
}

/* ---- test data ---------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double rnd_uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static double rnd_normal(void)
{
    const double u1 = rnd_uniform() + 1e-300, u2 = rnd_uniform();

    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

enum dist {
    DIST_NORMAL,
    DIST_UNIFORM,
    DIST_HEAVY,
    DIST_MIXED_SCALE,
    DIST_TINY,
    DIST_SPECIAL,
    N_DIST
};

/* n values from one of several weight-like distributions, including blocks that are all zero,
 * constant, or a mix of very different magnitudes. */
static void fill(float *x, int64_t n, enum dist d)
{
    for (int64_t i = 0; i < n; i++) {
        double v = rnd_normal();

        switch (d) {
        case DIST_NORMAL:
            v *= 0.02;
            break;
        case DIST_UNIFORM:
            v = rnd_uniform() * 2 - 1;
            break;
        case DIST_HEAVY:
            v = 0.01 * v / (fabs(rnd_normal()) + 0.05);
            break;
        case DIST_MIXED_SCALE:
            v *= (i % 256) < 16 ? 10.0 : 0.001;
            break;
        case DIST_TINY:
            v *= 1e-6; /* scales become fp16 subnormals */
            break;
        case DIST_SPECIAL:
            v = (i / 256) % 3 == 0 ? 0.0 : (i / 256) % 3 == 1 ? 0.375 : -2.0 + (double)(i % 2);
            break;
        default:
            break;
        }
        x[i] = (float)v;
    }
}

#define N_VALUES (256 * 64)

/* Quantizes and dequantizes, returning the dequantized values in y and the blocks in q. */
static void round_trip(enum nvl_ggml_type t, const float *x, void *q, float *y)
{
    assert_int_equal(nvl_quantize_row(t, x, q, N_VALUES), 0);
    assert_int_equal(nvl_dequantize_row(t, q, y, N_VALUES), 0);
}

/* ---- legacy 32-element formats ------------------------------------------------------------ */

/* A format's worst-case error for element j of the 32-value block x, derived from the format. */
typedef double (*bound_fn)(const float *x, int j, int levels);

/* Q8_0: d = amax/127 (fp32), q = round(x/d), stored d16 = fp16(d). Rounding costs d/2, and the
 * stored scale's error at most |q| * |d - d16| <= 127 * d * 2^-11. */
static double bound_q8_0(const float *x, int j, int levels)
{
    float amax = 0;

    (void)j;
    for (int i = 0; i < 32; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    const double step = amax / (double)levels;
    return step * (0.5 + levels * FP16_REL) + levels * FP16_ABS + 1e-12;
}

/* Q4_0 (and Q5_0 with 16/31 in place of 8/15): d = max/-8 where max is the value of largest
 * magnitude, q = clamp(round(x/d) + 8, 0, 15). The grid d*[-8, 7] reaches -8d = max exactly, but
 * on the other side only 7|d|, so a value near -max loses up to one full step |d|; everything
 * else is within |d|/2. Plus the fp16 scale error: 8 * |d| * 2^-11. */
static double bound_q_0(const float *x, int j, int half_levels)
{
    float amax = 0;

    for (int i = 0; i < 32; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    const double step = amax / (double)half_levels;
    const double slack = half_levels * (step * FP16_REL + FP16_ABS) + 1e-12;
    /* Values within the symmetric part of the grid round to the nearest step. */
    const bool inner = fabsf(x[j]) <= (half_levels - 1) * step;

    return (inner ? step / 2 : step) + slack;
}

/* Q4_1 (Q5_1 with 31 levels): d = (max - min)/15, m = min, q = round((x - min)/d). The grid spans
 * [min, max] exactly, so rounding costs d/2; fp16 storage of d and m adds 15 * d * 2^-11 and
 * |min| * 2^-11. */
static double bound_q_1(const float *x, int j, int levels)
{
    float mn = INFINITY, mx = -INFINITY;

    (void)j;
    for (int i = 0; i < 32; i++) {
        mn = fminf(mn, x[i]);
        mx = fmaxf(mx, x[i]);
    }
    const double step = ((double)mx - mn) / levels;
    return step * (0.5 + levels * FP16_REL) + fabs(mn) * FP16_REL + (levels + 1) * FP16_ABS + 1e-12;
}

struct legacy_case {
    enum nvl_ggml_type type;
    int levels;
    bound_fn bound;
};

static const struct legacy_case case_q8_0 = {NVL_GGML_TYPE_Q8_0, 127, bound_q8_0};
static const struct legacy_case case_q4_0 = {NVL_GGML_TYPE_Q4_0, 8, bound_q_0};
static const struct legacy_case case_q5_0 = {NVL_GGML_TYPE_Q5_0, 16, bound_q_0};
static const struct legacy_case case_q4_1 = {NVL_GGML_TYPE_Q4_1, 15, bound_q_1};
static const struct legacy_case case_q5_1 = {NVL_GGML_TYPE_Q5_1, 31, bound_q_1};

/* Every element of every distribution within its format's bound. */
static void legacy_error_bound(void **state)
{
    const struct legacy_case *c = *state;
    float *x = malloc(N_VALUES * 4), *y = malloc(N_VALUES * 4);
    void *q = malloc(N_VALUES * 2);

    for (int d = 0; d < N_DIST; d++) {
        fill(x, N_VALUES, (enum dist)d);
        round_trip(c->type, x, q, y);
        for (int b = 0; b < N_VALUES / 32; b++) {
            const float *xb = x + b * 32, *yb = y + b * 32;

            for (int j = 0; j < 32; j++) {
                const double err = fabs((double)xb[j] - yb[j]);
                const double bound = c->bound(xb, j, c->levels);

                if (err > bound)
                    fail_msg("%s dist %d block %d elem %d: |%g - %g| = %g > %g",
                             nvl_ggml_type_name(c->type), d, b, j, xb[j], yb[j], err, bound);
            }
        }
    }
    free(x);
    free(y);
    free(q);
}

/* ---- K-quants ----------------------------------------------------------------------------- */

/* The 6-bit scale/min unpacking of Q4_K, written from the layout description in quant.h. */
static void k4_scale_min(const uint8_t *s, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Checks that each of the n values xs came back (as ys) at the nearest point of the grid
 * s * l - off, l in [lo, hi]; returns the squared error of the sub-block. */
static double check_nearest(const char *what, int dist, int b, int sub, const float *xs,
                            const float *ys, int n, double s, double off, int lo, int hi)
{
    double se = 0;

    for (int l = 0; l < n; l++) {
        double l_ref = s != 0 ? nearbyint((xs[l] + off) / s) : 0;
        l_ref = fmin(hi, fmax(lo, l_ref));
        const double best = fabs(xs[l] - (s * l_ref - off));
        const double err = fabs((double)xs[l] - ys[l]);

        if (err > best + 1e-6 * fabs(s) + 1e-30)
            fail_msg("%s dist %d block %d sub %d elem %d: err %g, nearest grid point gives %g",
                     what, dist, b, sub, l, err, best);
        se += err * err;
    }
    return se;
}

/* The grid of sub-block j of super-block b: points s * l - off for l in [lo, hi]. */
struct k_grid {
    double s, off;
    int lo, hi;
};

/* Q4_K: sub-blocks of 32 on s*[0, 15] - off, s = d * scale and off = dmin * min (6 bits each). */
static struct k_grid q4_K_grid(const void *blocks, int b, int j)
{
    const struct nvl_block_q4_K *q = blocks;
    int sc, m;

    k4_scale_min(q[b].scales, j, &sc, &m);
    return (struct k_grid){nvl_fp16_to_fp32(q[b].d) * (double)sc,
                           nvl_fp16_to_fp32(q[b].dmin) * (double)m, 0, 15};
}

/* The plain Q4_K grid: 15 steps from min(0, min x) to max x. */
static double q4_K_plain_step(const float *xs, int n)
{
    float mn = 0, mx = -INFINITY;

    for (int l = 0; l < n; l++) {
        mn = fminf(mn, xs[l]);
        mx = fmaxf(mx, xs[l]);
    }
    return (mx - mn) / 15.0;
}

/* Q6_K: sub-blocks of 16 on the symmetric grid s*[-32, 31], s = d * scale (8-bit). */
static struct k_grid q6_K_grid(const void *blocks, int b, int j)
{
    const struct nvl_block_q6_K *q = blocks;

    return (struct k_grid){nvl_fp16_to_fp32(q[b].d) * q[b].scales[j], 0, -32, 31};
}

/* The plain Q6_K grid: step amax / 31.5. */
static double q6_K_plain_step(const float *xs, int n)
{
    float amax = 0;

    for (int l = 0; l < n; l++)
        amax = fmaxf(amax, fabsf(xs[l]));
    return amax / 31.5;
}

struct k_case {
    enum nvl_ggml_type type;
    int sub; /* elements per sub-block */
    struct k_grid (*grid)(const void *blocks, int b, int j);
    double (*plain_step)(const float *xs, int n);
};

static const struct k_case case_q4_K = {NVL_GGML_TYPE_Q4_K, 32, q4_K_grid, q4_K_plain_step};
static const struct k_case case_q6_K = {NVL_GGML_TYPE_Q6_K, 16, q6_K_grid, q6_K_plain_step};

/* K-quant scales come from a weighted least-squares search and are then rounded to 6 (Q4_K) or
 * 8 (Q6_K) bits against one fp16 super-block scale, so no fixed per-element bound holds for an
 * outlier (the fit may trade it for the rest of the sub-block). What the format does guarantee,
 * given the scales it stored: every value is coded to the nearest point of its sub-block's grid
 * (clamped at the grid's ends). And the fitted scales must do at least as well overall as the
 * plain grid through the sub-block's extremes: RMS error <= that grid's step / sqrt(12).
 * DIST_TINY is left out: the fp16 super-block scale (the largest sub-block scale / 63, or / 128
 * for Q6_K) underflows below 2^-24 there, so such blocks are flushed to zero; ggml has the same
 * limit. */
static void k_error_bound(void **state)
{
    const struct k_case *c = *state;
    const char *name = nvl_ggml_type_name(c->type);
    float *x = malloc(N_VALUES * 4), *y = malloc(N_VALUES * 4);
    void *q = malloc(N_VALUES * 2);

    for (int d = 0; d < N_DIST; d++) {
        double se = 0, ideal = 0;

        if (d == DIST_TINY)
            continue;
        fill(x, N_VALUES, (enum dist)d);
        round_trip(c->type, x, q, y);
        for (int b = 0; b < N_VALUES / 256; b++) {
            for (int j = 0; j < 256 / c->sub; j++) {
                const float *xs = x + b * 256 + j * c->sub, *ys = y + b * 256 + j * c->sub;
                const struct k_grid g = c->grid(q, b, j);

                se += check_nearest(name, d, b, j, xs, ys, c->sub, g.s, g.off, g.lo, g.hi);
                ideal += c->sub * pow(c->plain_step(xs, c->sub), 2) / 12;
            }
        }
        if (se > ideal)
            fail_msg("%s dist %d: rms error %g above the min/max grid's %g", name, d,
                     sqrt(se / N_VALUES), sqrt(ideal / N_VALUES));
    }
    free(x);
    free(y);
    free(q);
}

/* Q8_K (activations): fp32 d, q = round(x / d) with the largest magnitude at +-127, and bsums
 * are the sums of each 16 quants. */
static void q8_K_round_trip(void **state)
{
    float *x = malloc(N_VALUES * 4), *y = malloc(N_VALUES * 4);
    struct nvl_block_q8_K *q = malloc(N_VALUES / 256 * sizeof(*q));

    (void)state;
    for (int d = 0; d < N_DIST; d++) {
        fill(x, N_VALUES, (enum dist)d);
        round_trip(NVL_GGML_TYPE_Q8_K, x, q, y);
        for (int b = 0; b < N_VALUES / 256; b++) {
            float amax = 0;

            for (int j = 0; j < 256; j++)
                amax = fmaxf(amax, fabsf(x[b * 256 + j]));
            for (int g = 0; g < 16; g++) {
                int sum = 0;

                for (int j = 0; j < 16; j++)
                    sum += q[b].qs[g * 16 + j];
                assert_int_equal(q[b].bsums[g], sum);
            }
            for (int j = 0; j < 256; j++) {
                const double err = fabs((double)x[b * 256 + j] - y[b * 256 + j]);

                if (err > amax / 127.0 * (0.5 + 1e-5))
                    fail_msg("q8_K dist %d block %d elem %d: err %g", d, b, j, err);
            }
        }
    }
    free(x);
    free(y);
    free(q);
}

/* F16 and BF16 round trips: relative error 2^-11 and 2^-8 (round to nearest). */
static void half_round_trip(void **state)
{
    float *x = malloc(N_VALUES * 4), *y = malloc(N_VALUES * 4);
    uint16_t *q = malloc(N_VALUES * 2);

    (void)state;
    fill(x, N_VALUES, DIST_NORMAL);
    round_trip(NVL_GGML_TYPE_F16, x, q, y);
    for (int i = 0; i < N_VALUES; i++)
        assert_true(fabs((double)x[i] - y[i]) <= fabs(x[i]) * 0x1p-11 + 0x1p-25);
    round_trip(NVL_GGML_TYPE_BF16, x, q, y);
    for (int i = 0; i < N_VALUES; i++)
        assert_true(fabs((double)x[i] - y[i]) <= fabs(x[i]) * 0x1p-8);
    free(x);
    free(y);
    free(q);
}

/* ---- type table and argument checks ------------------------------------------------------- */

static void type_table(void **state)
{
    enum nvl_ggml_type t;
    uint64_t bytes;
    float f[256];
    uint8_t b[512];

    (void)state;
    assert_string_equal(nvl_ggml_type_name(NVL_GGML_TYPE_Q4_K), "q4_K");
    assert_string_equal(nvl_ggml_type_name(4), "unknown");
    assert_null(nvl_ggml_type_traits(4));
    assert_null(nvl_ggml_type_traits(1000));
    assert_int_equal(nvl_ggml_type_from_name("Q6_K", &t), 0);
    assert_int_equal(t, NVL_GGML_TYPE_Q6_K);
    assert_int_equal(nvl_ggml_type_from_name("bf16", &t), 0);
    assert_int_equal(t, NVL_GGML_TYPE_BF16);
    assert_int_equal(nvl_ggml_type_from_name("q9_0", &t), -EINVAL);
    assert_int_equal(nvl_ggml_row_size(NVL_GGML_TYPE_Q4_0, 4096, &bytes), 0);
    assert_int_equal(bytes, 4096 / 32 * 18);
    assert_int_equal(nvl_ggml_row_size(NVL_GGML_TYPE_Q4_K, 4096 + 32, &bytes), -EINVAL);
    assert_int_equal(nvl_ggml_row_size(NVL_GGML_TYPE_F32, UINT64_MAX / 2, &bytes), -EOVERFLOW);
    assert_int_equal(nvl_dequantize_row(NVL_GGML_TYPE_Q8_0, b, f, 33), -EINVAL);
    assert_int_equal(nvl_dequantize_row(NVL_GGML_TYPE_IQ2_XXS, b, f, 256), -ENOTSUP);
    assert_int_equal(nvl_quantize_row(NVL_GGML_TYPE_Q3_K, f, b, 256), -ENOTSUP);
    assert_int_equal(nvl_quantize_row(NVL_GGML_TYPE_Q8_0, f, b, -32), -EINVAL);
    /* The traits' flags say what the row functions do: one block of every type. */
    memset(f, 0, sizeof(f));
    memset(b, 0, sizeof(b));
    for (uint32_t i = 0; i < NVL_GGML_TYPE_COUNT; i++) {
        const struct nvl_ggml_type_traits *tr = nvl_ggml_type_traits(i);

        if (!tr)
            continue;
        assert_true(!tr->can_quantize || tr->can_dequantize);
        assert_true(tr->block_size <= 256 && tr->type_size <= sizeof(b));
        assert_int_equal(nvl_quantize_row(i, f, b, tr->block_size),
                         tr->can_quantize ? 0 : -ENOTSUP);
        assert_int_equal(nvl_dequantize_row(i, b, f, tr->block_size),
                         tr->can_dequantize ? 0 : -ENOTSUP);
    }
}

/* A test that runs fn on case c, under its own name. */
static struct CMUnitTest case_test(const char *name, CMUnitTestFunction fn, const void *c)
{
    return (struct CMUnitTest){name, fn, NULL, NULL, (void *)c};
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fp16_exhaustive),
        cmocka_unit_test(fp16_rounding),
        cmocka_unit_test(bf16_exhaustive),
        case_test("q8_0_error_bound", legacy_error_bound, &case_q8_0),
        case_test("q4_0_error_bound", legacy_error_bound, &case_q4_0),
        case_test("q5_0_error_bound", legacy_error_bound, &case_q5_0),
        case_test("q4_1_error_bound", legacy_error_bound, &case_q4_1),
        case_test("q5_1_error_bound", legacy_error_bound, &case_q5_1),
        case_test("q4_K_error_bound", k_error_bound, &case_q4_K),
        case_test("q6_K_error_bound", k_error_bound, &case_q6_K),
        cmocka_unit_test(q8_K_round_trip),
        cmocka_unit_test(half_round_trip),
        cmocka_unit_test(type_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
