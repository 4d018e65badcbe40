/* CPU kernels of the llama forward pass against independent references: every integer dot
 * product (portable and AVX2) against nvl_dequantize_row() (itself checked against the gguf
 * Python package) times the dequantized activation, in double precision; the fp16/fp32 vector
 * helpers against scalar loops; the thread pool against a count of calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_ops_impl.h"
#include "threadpool.h"

#define K 1024 /* elements per test row: four K-quant super-blocks, 32 legacy blocks */

static uint64_t rng = 0x853c49e6748fea9bull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static float rndf(void)
{
    return (float)((double)rnd() / 4294967296.0 * 2.0 - 1.0); /* [-1, 1) */
}

static uint16_t rnd_half(float scale)
{
    return nvl_fp32_to_fp16(rndf() * scale);
}

/* A row of K elements of `type` with random quants and sane fp16 scales. */
static void random_row(enum nvl_ggml_type type, uint8_t *row, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        row[i] = (uint8_t)rnd();
    const uint32_t bs = nvl_ggml_type_size(type);
    for (size_t off = 0; off < bytes; off += bs) {
        uint8_t *b = row + off;
        uint16_t h[2] = {rnd_half(0.05f), rnd_half(0.05f)};
        switch (type) {
        case NVL_GGML_TYPE_Q4_0:
        case NVL_GGML_TYPE_Q5_0:
        case NVL_GGML_TYPE_Q8_0:
            memcpy(b, h, 2);
            break;
        case NVL_GGML_TYPE_Q4_1:
        case NVL_GGML_TYPE_Q5_1:
        case NVL_GGML_TYPE_Q4_K:
        case NVL_GGML_TYPE_Q5_K:
            memcpy(b, h, 4);
            break;
        case NVL_GGML_TYPE_Q2_K:
            memcpy(b + offsetof(struct nvl_block_q2_K, d), h, 4);
            break;
        case NVL_GGML_TYPE_Q3_K:
            memcpy(b + offsetof(struct nvl_block_q3_K, d), h, 2);
            break;
        case NVL_GGML_TYPE_Q6_K:
            memcpy(b + offsetof(struct nvl_block_q6_K, d), h, 2);
            break;
        case NVL_GGML_TYPE_F16:
            for (size_t i = 0; i < bytes / 2; i++) {
                uint16_t v = rnd_half(1.0f);
                memcpy(row + 2 * i, &v, 2);
            }
            return;
        case NVL_GGML_TYPE_BF16:
            for (size_t i = 0; i < bytes / 2; i++) {
                uint16_t v = nvl_fp32_to_bf16(rndf());
                memcpy(row + 2 * i, &v, 2);
            }
            return;
        case NVL_GGML_TYPE_F32:
            for (size_t i = 0; i < bytes / 4; i++) {
                float v = rndf();
                memcpy(row + 4 * i, &v, 4);
            }
            return;
        default:
            fail_msg("no generator for type %d", type);
        }
    }
}

/* The activation as the kernel sees it, back in floats. */
static void act_dequantize(enum cpu_act act, const void *xa, float *x)
{
    if (act == CPU_ACT_Q8) {
        const struct cpu_block_q8 *b = xa;
        for (int i = 0; i < K / 32; i++) {
            int sum = 0;
            for (int j = 0; j < 32; j++) {
                x[i * 32 + j] = b[i].d * b[i].qs[j];
                sum += b[i].qs[j];
            }
            assert_int_equal(sum, b[i].sum);
            assert_true(b[i].s == b[i].d * (float)sum);
        }
    } else if (act == CPU_ACT_Q8K) {
        const struct nvl_block_q8_K *b = xa;
        for (int i = 0; i < K / NVL_QK_K; i++) {
            for (int g = 0; g < 16; g++) {
                int sum = 0;
                for (int j = 0; j < 16; j++) {
                    x[i * NVL_QK_K + g * 16 + j] = b[i].d * b[i].qs[g * 16 + j];
                    sum += b[i].qs[g * 16 + j];
                }
                assert_int_equal(sum, b[i].bsums[g]);
            }
        }
    } else {
        memcpy(x, xa, K * sizeof(float));
    }
}

struct kernel {
    enum nvl_ggml_type type;
    const char *name;
    cpu_vec_dot_fn fn;
};

static const struct kernel kernels[] = {
    {NVL_GGML_TYPE_Q4_0, "q4_0 generic", nvl__cpu_dot_q4_0_generic},
    {NVL_GGML_TYPE_Q4_1, "q4_1 generic", nvl__cpu_dot_q4_1_generic},
    {NVL_GGML_TYPE_Q5_0, "q5_0 generic", nvl__cpu_dot_q5_0_generic},
    {NVL_GGML_TYPE_Q5_1, "q5_1 generic", nvl__cpu_dot_q5_1_generic},
    {NVL_GGML_TYPE_Q8_0, "q8_0 generic", nvl__cpu_dot_q8_0_generic},
    {NVL_GGML_TYPE_Q2_K, "q2_K generic", nvl__cpu_dot_q2_K_generic},
    {NVL_GGML_TYPE_Q3_K, "q3_K generic", nvl__cpu_dot_q3_K_generic},
    {NVL_GGML_TYPE_Q4_K, "q4_K generic", nvl__cpu_dot_q4_K_generic},
    {NVL_GGML_TYPE_Q5_K, "q5_K generic", nvl__cpu_dot_q5_K_generic},
    {NVL_GGML_TYPE_Q6_K, "q6_K generic", nvl__cpu_dot_q6_K_generic},
#if defined(__x86_64__)
    {NVL_GGML_TYPE_Q4_0, "q4_0 avx2", nvl__cpu_dot_q4_0_avx2},
    {NVL_GGML_TYPE_Q4_1, "q4_1 avx2", nvl__cpu_dot_q4_1_avx2},
    {NVL_GGML_TYPE_Q5_0, "q5_0 avx2", nvl__cpu_dot_q5_0_avx2},
    {NVL_GGML_TYPE_Q5_1, "q5_1 avx2", nvl__cpu_dot_q5_1_avx2},
    {NVL_GGML_TYPE_Q8_0, "q8_0 avx2", nvl__cpu_dot_q8_0_avx2},
    {NVL_GGML_TYPE_Q4_K, "q4_K avx2", nvl__cpu_dot_q4_K_avx2},
    {NVL_GGML_TYPE_Q6_K, "q6_K avx2", nvl__cpu_dot_q6_K_avx2},
#endif
};

static void test_vec_dot_vs_dequantize(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof(kernels) / sizeof(kernels[0]); k++) {
        const struct kernel *kn = &kernels[k];
        if (strstr(kn->name, "avx2") && !nvl__cpu_has_avx2())
            continue;
        const struct cpu_type_ops *ops = nvl__cpu_type_ops(kn->type);
        assert_non_null(ops);
        uint64_t bytes;
        assert_int_equal(nvl_ggml_row_size(kn->type, K, &bytes), 0);
        uint8_t *w = malloc(bytes);
        void *xa = malloc(nvl__cpu_act_row_bytes(ops->act, K));
        float wf[K], x[K], xq[K];
        for (int trial = 0; trial < 20; trial++) {
            random_row(kn->type, w, bytes);
            for (int i = 0; i < K; i++)
                x[i] = rndf() * (trial % 3 ? 1.0f : 30.0f); /* also large activations */
            nvl__cpu_act_quantize(ops->act, x, xa, K);
            act_dequantize(ops->act, xa, xq);
            assert_int_equal(nvl_dequantize_row(kn->type, w, wf, K), 0);
            double ref = 0.0, mag = 0.0;
            for (int i = 0; i < K; i++) {
                ref += (double)wf[i] * xq[i];
                mag += fabs((double)wf[i] * xq[i]);
            }
            const double got = kn->fn(w, xa, K);
            /* Integer sums are exact; what remains is fp32 rounding of per-block terms. */
            if (fabs(got - ref) > 1e-5 * mag + 1e-6)
                fail_msg("%s trial %d: %.9g, reference %.9g (magnitude %.3g)", kn->name, trial, got,
                         ref, mag);
        }
        free(xa);
        free(w);
    }
}

static void test_vec_dot4_matches_dot(void **state)
{
    (void)state;
    if (!nvl__cpu_has_avx2())
        skip();
    /* The four-row kernels must reproduce the one-row kernel bit for bit, so that results do not
     * depend on how prompt tokens are grouped. */
    const enum nvl_ggml_type types[] = {NVL_GGML_TYPE_Q4_0, NVL_GGML_TYPE_Q4_1, NVL_GGML_TYPE_Q5_0,
                                        NVL_GGML_TYPE_Q8_0};
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        const struct cpu_type_ops *ops = nvl__cpu_type_ops(types[k]);
        assert_non_null(ops->dot4);
        uint64_t bytes;
        assert_int_equal(nvl_ggml_row_size(types[k], K, &bytes), 0);
        uint8_t *w = malloc(bytes);
        const size_t stride = nvl__cpu_act_row_bytes(ops->act, K);
        uint8_t *xa = malloc(4 * stride);
        float x[K];
        for (int trial = 0; trial < 10; trial++) {
            random_row(types[k], w, bytes);
            for (int t = 0; t < 4; t++) {
                for (int i = 0; i < K; i++)
                    x[i] = rndf();
                nvl__cpu_act_quantize(ops->act, x, xa + t * stride, K);
            }
            float four[4];
            ops->dot4(w, xa, stride, K, four);
            for (int t = 0; t < 4; t++) {
                float one = ops->dot(w, xa + t * stride, K);
                assert_memory_equal(&one, &four[t], sizeof(float));
            }
        }
        free(xa);
        free(w);
    }
}

/* A float with a random sign, significand and binary exponent in [-40, 40): stresses the
 * rounding of the fused multiply-adds the portable kernels emulate. */
static float rnd_wide(void)
{
    return ldexpf(rndf(), (int)(rnd() % 80) - 40);
}

static void test_generic_matches_avx2(void **state)
{
    (void)state;
#if defined(__x86_64__)
    if (!nvl__cpu_has_avx2())
        skip();
    /* Same operations in the same order: the two kernel sets must agree bit for bit, not just
     * within a tolerance (a model's output must not depend on the host CPU). */
    const struct {
        enum nvl_ggml_type type;
        cpu_vec_dot_fn generic, avx2;
    } pairs[] = {
        {NVL_GGML_TYPE_Q4_0, nvl__cpu_dot_q4_0_generic, nvl__cpu_dot_q4_0_avx2},
        {NVL_GGML_TYPE_Q4_1, nvl__cpu_dot_q4_1_generic, nvl__cpu_dot_q4_1_avx2},
        {NVL_GGML_TYPE_Q5_0, nvl__cpu_dot_q5_0_generic, nvl__cpu_dot_q5_0_avx2},
        {NVL_GGML_TYPE_Q5_1, nvl__cpu_dot_q5_1_generic, nvl__cpu_dot_q5_1_avx2},
        {NVL_GGML_TYPE_Q8_0, nvl__cpu_dot_q8_0_generic, nvl__cpu_dot_q8_0_avx2},
        {NVL_GGML_TYPE_Q4_K, nvl__cpu_dot_q4_K_generic, nvl__cpu_dot_q4_K_avx2},
        {NVL_GGML_TYPE_Q6_K, nvl__cpu_dot_q6_K_generic, nvl__cpu_dot_q6_K_avx2},
    };
    for (size_t k = 0; k < sizeof(pairs) / sizeof(pairs[0]); k++) {
        const struct cpu_type_ops *ops = nvl__cpu_type_ops(pairs[k].type);
        uint64_t bytes;
        assert_int_equal(nvl_ggml_row_size(pairs[k].type, K, &bytes), 0);
        uint8_t *w = malloc(bytes);
        void *xa = malloc(nvl__cpu_act_row_bytes(ops->act, K));
        float x[K];
        for (int trial = 0; trial < 200; trial++) {
            random_row(pairs[k].type, w, bytes);
            for (int i = 0; i < K; i++)
                x[i] = trial % 2 ? rnd_wide() : rndf();
            nvl__cpu_act_quantize(ops->act, x, xa, K);
            /* Shorter rows too: the accumulation order must match at every length. */
            const int64_t n = trial % 4 == 3 ? NVL_QK_K : K;
            const float g = pairs[k].generic(w, xa, n), a = pairs[k].avx2(w, xa, n);
            if (memcmp(&g, &a, sizeof(g)) != 0)
                fail_msg("type %d trial %d: generic %.9g, avx2 %.9g", pairs[k].type, trial, g, a);
        }
        free(xa);
        free(w);
    }

    float a[K + 7], b[K + 7], y[K + 7], y2[K + 7];
    uint16_t h[K + 7];
    const int64_t ns[] = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40, 63, 64, 100, K + 7};
    for (int trial = 0; trial < 50; trial++) {
        for (int i = 0; i < K + 7; i++) {
            a[i] = rnd_wide();
            b[i] = trial % 2 ? rnd_wide() : rndf();
            h[i] = nvl_fp32_to_fp16(rndf() * 4.0f);
        }
        for (size_t t = 0; t < sizeof(ns) / sizeof(ns[0]); t++) {
            const int64_t n = ns[t];
            float g = nvl__cpu_dot_f32_generic(a, b, n), v = nvl__cpu_dot_f32_avx2(a, b, n);
            assert_memory_equal(&g, &v, sizeof(g));
            g = nvl__cpu_dot_f16_generic(a, h, n);
            v = nvl__cpu_dot_f16_avx2(a, h, n);
            assert_memory_equal(&g, &v, sizeof(g));
            memcpy(y, b, sizeof(y));
            memcpy(y2, b, sizeof(y2));
            nvl__cpu_axpy_f16_generic(y, a[t], h, n);
            nvl__cpu_axpy_f16_avx2(y2, a[t], h, n);
            assert_memory_equal(y, y2, sizeof(y));
        }
    }
    /* Fused multiply-add corner cases, two steps per lane (elements l and l + 8): the second
     * product lands 2^-70 below the midpoint between two floats, where rounding the double sum
     * to float again would go the wrong way; a subnormal result; cancellation to zero. */
    const float c0[][4] = {
        {1.0f + 0x1p-23f, 1.0f, 1.0f + 0x1p-23f, 0x1p-24f - 0x1p-47f},
        {-1.0f - 0x1p-23f, 1.0f, 1.0f + 0x1p-23f, -0x1p-24f + 0x1p-47f},
        {0x1p-70f, 0x1p-70f, 0x1p-65f, -0x1p-75f},
        {3.0f, 1.0f / 3.0f, -1.0f, 1.0f},
    };
    for (size_t i = 0; i < sizeof(c0) / sizeof(c0[0]); i++) {
        float va[16], vb[16];
        for (int l = 0; l < 8; l++) {
            va[l] = c0[i][0];
            vb[l] = c0[i][1];
            va[l + 8] = c0[i][2];
            vb[l + 8] = c0[i][3];
        }
        const float g = nvl__cpu_dot_f32_generic(va, vb, 16);
        const float v = nvl__cpu_dot_f32_avx2(va, vb, 16);
        assert_memory_equal(&g, &v, sizeof(g));
    }
#else
    skip();
#endif
}

static void test_activation_quantization(void **state)
{
    (void)state;
    float x[K], back[K];
    for (int i = 0; i < K; i++)
        x[i] = rndf() * 4.0f;
    x[5] = 0.0f;
    const enum cpu_act acts[] = {CPU_ACT_Q8, CPU_ACT_Q8K};
    for (size_t a = 0; a < 2; a++) {
        void *xa = malloc(nvl__cpu_act_row_bytes(acts[a], K));
        nvl__cpu_act_quantize(acts[a], x, xa, K);
        act_dequantize(acts[a], xa, back);
        const int block = acts[a] == CPU_ACT_Q8 ? 32 : NVL_QK_K;
        for (int b = 0; b < K / block; b++) {
            float amax = 0.0f;
            for (int j = 0; j < block; j++)
                amax = fmaxf(amax, fabsf(x[b * block + j]));
            /* Round to nearest with step amax / 127: off by at most half a step. */
            for (int j = 0; j < block; j++)
                assert_true(fabsf(back[b * block + j] - x[b * block + j]) <=
                            amax / 127.0f * 0.5001f + 1e-7f);
        }
        free(xa);
    }
    /* An all-zero block has scale 0 and zero quants, not NaN. */
    float z[32] = {0};
    struct cpu_block_q8 zb;
    nvl__cpu_act_quantize(CPU_ACT_Q8, z, &zb, 32);
    assert_true(zb.d == 0.0f && zb.sum == 0);
}

static void test_float_helpers(void **state)
{
    (void)state;
    float a[K + 3], b[K + 3], y[K + 3], y2[K + 3];
    uint16_t h[K + 3], h2[K + 3];
    for (int i = 0; i < K + 3; i++) {
        a[i] = rndf();
        b[i] = rndf();
        h[i] = nvl_fp32_to_fp16(b[i]);
    }
    /* Odd lengths exercise the tails of the vector loops. */
    const int64_t ns[] = {1, 7, 8, 33, K + 3};
    for (size_t t = 0; t < sizeof(ns) / sizeof(ns[0]); t++) {
        const int64_t n = ns[t];
        double ref = 0.0, ref16 = 0.0, mag = 0.0;
        for (int64_t i = 0; i < n; i++) {
            ref += (double)a[i] * b[i];
            ref16 += (double)a[i] * nvl_fp16_to_fp32(h[i]);
            mag += fabs((double)a[i] * b[i]);
        }
        assert_true(fabs(nvl__cpu_dot_f32(a, b, n) - ref) <= 1e-6 * mag + 1e-7);
        assert_true(fabs(nvl__cpu_dot_f32_generic(a, b, n) - ref) <= 1e-6 * mag + 1e-7);
        assert_true(fabs(nvl__cpu_dot_f16(a, h, n) - ref16) <= 1e-6 * mag + 1e-7);
        assert_true(fabs(nvl__cpu_dot_f16_generic(a, h, n) - ref16) <= 1e-6 * mag + 1e-7);

        memcpy(y, b, sizeof(y));
        memcpy(y2, b, sizeof(y2));
        nvl__cpu_axpy_f16(y, 0.5f, h, n);
        nvl__cpu_axpy_f16_generic(y2, 0.5f, h, n);
        for (int64_t i = 0; i < n; i++) {
            assert_true(fabsf(y[i] - (b[i] + 0.5f * nvl_fp16_to_fp32(h[i]))) <= 1e-6f);
            assert_true(fabsf(y2[i] - (b[i] + 0.5f * nvl_fp16_to_fp32(h[i]))) <= 1e-6f);
        }
        /* fp32 -> fp16 rounds to nearest even in both versions, so they agree bit for bit. */
        nvl__cpu_f32_to_f16(a, h2, n);
        for (int64_t i = 0; i < n; i++)
            assert_int_equal(h2[i], nvl_fp32_to_fp16(a[i]));
    }
}

static void test_matmul_fallback_and_accumulate(void **state)
{
    (void)state;
    /* F16 and BF16 weights go through dequantized rows; check y = W x and y += W x. */
    const enum nvl_ggml_type types[] = {NVL_GGML_TYPE_F16, NVL_GGML_TYPE_BF16, NVL_GGML_TYPE_F32,
                                        NVL_GGML_TYPE_Q4_1};
    enum { ROWS = 5, TOK = 3 };
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        const struct cpu_type_ops *ops = nvl__cpu_type_ops(types[t]);
        assert_non_null(ops);
        uint64_t rb;
        assert_int_equal(nvl_ggml_row_size(types[t], K, &rb), 0);
        uint8_t *w = malloc(rb * ROWS);
        for (int r = 0; r < ROWS; r++)
            random_row(types[t], w + r * rb, rb);
        static float x[TOK][K], xq[TOK][K], wf[K], scratch[K];
        const size_t ab = nvl__cpu_act_row_bytes(ops->act, K);
        uint8_t *xa = malloc(ab * TOK);
        for (int k = 0; k < TOK; k++) {
            for (int i = 0; i < K; i++)
                x[k][i] = rndf();
            nvl__cpu_act_quantize(ops->act, x[k], xa + k * ab, K);
            act_dequantize(ops->act, xa + k * ab, xq[k]);
        }
        float y[TOK][ROWS + 1];
        for (int k = 0; k < TOK; k++)
            for (int r = 0; r <= ROWS; r++)
                y[k][r] = 1.0f;
        struct cpu_matmul mm = {
            .w = w,
            .w_type = types[t],
            .w_row_bytes = rb,
            .k = K,
            .rows = ROWS,
            .x = xa,
            .x_stride = ab,
            .y = &y[0][0],
            .y_stride = ROWS + 1,
            .n_tok = TOK,
            .accumulate = t % 2 == 1,
        };
        nvl__cpu_matmul_rows(&mm, 1, ROWS, scratch); /* rows 1..4; row 0 stays untouched */
        for (int r = 0; r < ROWS; r++) {
            nvl_dequantize_row(types[t], w + r * rb, wf, K);
            for (int k = 0; k < TOK; k++) {
                double ref = 0.0, mag = 0.0;
                for (int i = 0; i < K; i++) {
                    ref += (double)wf[i] * xq[k][i];
                    mag += fabs((double)wf[i] * xq[k][i]);
                }
                if (r == 0)
                    assert_true(y[k][r] == 1.0f);
                else
                    assert_true(fabs(y[k][r] - (mm.accumulate ? 1.0 + ref : ref)) <=
                                1e-5 * mag + 1e-6);
            }
        }
        free(xa);
        free(w);
    }
}

static void test_vector_ops(void **state)
{
    (void)state;
    float x[64], g[64], y[64];
    double ss = 0.0;
    for (int i = 0; i < 64; i++) {
        x[i] = rndf() * 3.0f;
        g[i] = rndf();
        ss += (double)x[i] * x[i];
    }
    nvl__cpu_rmsnorm(y, x, g, 64, 1e-5f);
    for (int i = 0; i < 64; i++)
        assert_true(fabs(y[i] - x[i] / sqrt(ss / 64 + 1e-5) * g[i]) < 1e-5);

    float s[5] = {1.0f, 2.0f, 3.0f, -INFINITY, 0.5f};
    nvl__cpu_softmax(s, 5);
    const double den = exp(1) + exp(2) + exp(3) + exp(0.5);
    assert_true(fabs(s[2] - exp(3) / den) < 1e-6 && s[3] == 0.0f);

    float gate[3] = {-2.0f, 0.0f, 1.5f}, up[3] = {3.0f, 5.0f, -2.0f};
    nvl__cpu_swiglu(gate, up, 3);
    assert_true(fabs(gate[0] - (-2.0 / (1.0 + exp(2.0)) * 3.0)) < 1e-6);
    assert_true(gate[1] == 0.0f);
    assert_true(fabs(gate[2] - (1.5 / (1.0 + exp(-1.5)) * -2.0)) < 1e-6);
}

static void test_unsupported_types(void **state)
{
    (void)state;
    /* Types without a dequantizer cannot be run; the loader refuses them through this. */
    assert_null(nvl__cpu_type_ops(NVL_GGML_TYPE_IQ2_XXS));
    assert_null(nvl__cpu_type_ops(NVL_GGML_TYPE_I32));
    assert_null(nvl__cpu_type_ops((enum nvl_ggml_type)4));
    assert_null(nvl__cpu_type_ops((enum nvl_ggml_type)1000));
    assert_non_null(nvl__cpu_type_ops(NVL_GGML_TYPE_BF16));
}

struct pool_count {
    atomic_int calls;
    atomic_int mask;
};

static void pool_fn(void *ctx, int ith, int nth)
{
    struct pool_count *c = ctx;
    assert_true(ith >= 0 && ith < nth);
    atomic_fetch_add(&c->calls, 1);
    atomic_fetch_or(&c->mask, 1 << ith);
}

static void test_threadpool(void **state)
{
    (void)state;
    for (int n = 1; n <= 4; n++) {
        struct nvl_threadpool *p = NULL;
        assert_int_equal(nvl_threadpool_create(n, &p), 0);
        assert_int_equal(nvl_threadpool_size(p), n);
        for (int step = 0; step < 2000; step++) {
            struct pool_count c;
            atomic_init(&c.calls, 0);
            atomic_init(&c.mask, 0);
            nvl_threadpool_run(p, pool_fn, &c);
            /* run returns only after every thread has finished this step. */
            assert_int_equal(atomic_load(&c.calls), n);
            assert_int_equal(atomic_load(&c.mask), (1 << n) - 1);
        }
        nvl_threadpool_destroy(p);
    }
    struct nvl_threadpool *p = NULL;
    assert_int_equal(nvl_threadpool_create(0, &p), -EINVAL);
    nvl_threadpool_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vec_dot_vs_dequantize),
        cmocka_unit_test(test_vec_dot4_matches_dot),
        cmocka_unit_test(test_generic_matches_avx2),
        cmocka_unit_test(test_activation_quantization),
        cmocka_unit_test(test_float_helpers),
        cmocka_unit_test(test_matmul_fallback_and_accumulate),
        cmocka_unit_test(test_vector_ops),
        cmocka_unit_test(test_unsupported_types),
        cmocka_unit_test(test_threadpool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
