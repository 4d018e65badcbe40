/* The 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
 *
 * Dequantization follows ggml's dequantize_row_* exactly (same operation order, so results are
 * bit-identical); quantization follows ggml's quantize_row_*_ref, which is what the gguf Python
 * package reimplements too. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant_internal.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

void nvl__dequant_q4_0(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q4_0 *x = src;
    const int64_t nb = n / NVL_QK4_0;

    for (int64_t i = 0; i < nb; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        float *restrict y = dst + i * NVL_QK4_0;

        for (int j = 0; j < NVL_QK4_0 / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + NVL_QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void nvl__dequant_q4_1(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q4_1 *x = src;
    const int64_t nb = n / NVL_QK4_1;

    for (int64_t i = 0; i < nb; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        const float m = nvl_fp16_to_fp32(x[i].m);
        float *restrict y = dst + i * NVL_QK4_1;

        for (int j = 0; j < NVL_QK4_1 / 2; j++) {
            y[j] = (float)(x[i].qs[j] & 0x0F) * d + m;
            y[j + NVL_QK4_1 / 2] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

void nvl__dequant_q5_0(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q5_0 *x = src;
    const int64_t nb = n / NVL_QK5_0;

    for (int64_t i = 0; i < nb; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        float *restrict y = dst + i * NVL_QK5_0;
        uint32_t qh;

        uint8_t hi[NVL_QK5_0];

        memcpy(&qh, x[i].qh, sizeof(qh));
        /* Fifth bits first (a per-lane variable shift does not vectorize without AVX2). */
        for (int j = 0; j < NVL_QK5_0; j++)
            hi[j] = (uint8_t)(((qh >> j) & 1) << 4);
        for (int j = 0; j < NVL_QK5_0 / 2; j++) {
            y[j] = (float)(((x[i].qs[j] & 0x0F) | hi[j]) - 16) * d;
            y[j + NVL_QK5_0 / 2] = (float)(((x[i].qs[j] >> 4) | hi[j + 16]) - 16) * d;
        }
    }
}

void nvl__dequant_q5_1(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q5_1 *x = src;
    const int64_t nb = n / NVL_QK5_1;

    for (int64_t i = 0; i < nb; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        const float m = nvl_fp16_to_fp32(x[i].m);
        float *restrict y = dst + i * NVL_QK5_1;
        uint32_t qh;

        uint8_t hi[NVL_QK5_1];

        memcpy(&qh, x[i].qh, sizeof(qh));
        for (int j = 0; j < NVL_QK5_1; j++)
            hi[j] = (uint8_t)(((qh >> j) & 1) << 4);
        for (int j = 0; j < NVL_QK5_1 / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0F) | hi[j]) * d + m;
            y[j + NVL_QK5_1 / 2] = (float)((x[i].qs[j] >> 4) | hi[j + 16]) * d + m;
        }
    }
}

void nvl__dequant_q8_0(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q8_0 *x = src;
    const int64_t nb = n / NVL_QK8_0;

    for (int64_t i = 0; i < nb; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        float *restrict y = dst + i * NVL_QK8_0;

        for (int j = 0; j < NVL_QK8_0; j++)
            y[j] = (float)x[i].qs[j] * d;
    }
}

void nvl__dequant_q8_1(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q8_1 *x = src;
    const int64_t nb = n / NVL_QK8_1;

    for (int64_t i = 0; i < nb; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        float *restrict y = dst + i * NVL_QK8_1;

        for (int j = 0; j < NVL_QK8_1; j++)
            y[j] = (float)x[i].qs[j] * d;
    }
}

/* Symmetric 4-bit: the value of largest magnitude maps to -8 exactly. */
void nvl__quant_q4_0(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q4_0 *y = dst;
    const int64_t nb = n / NVL_QK4_0;

    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * NVL_QK4_0;
        float amax = 0.0f, max = 0.0f;

        for (int j = 0; j < NVL_QK4_0; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;

        y[i].d = nvl_fp32_to_fp16(d);
        for (int j = 0; j < NVL_QK4_0 / 2; j++) {
            const float x0 = x[j] * id;
            const float x1 = x[j + NVL_QK4_0 / 2] * id;
            const uint8_t q0 = (uint8_t)MIN(15, (int8_t)(x0 + 8.5f));
            const uint8_t q1 = (uint8_t)MIN(15, (int8_t)(x1 + 8.5f));

            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Asymmetric 4-bit over [min, max]. */
void nvl__quant_q4_1(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q4_1 *y = dst;
    const int64_t nb = n / NVL_QK4_1;

    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * NVL_QK4_1;
        float min = FLT_MAX, max = -FLT_MAX;

        for (int j = 0; j < NVL_QK4_1; j++) {
            if (x[j] < min)
                min = x[j];
            if (x[j] > max)
                max = x[j];
        }
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d ? 1.0f / d : 0.0f;

        y[i].d = nvl_fp32_to_fp16(d);
        y[i].m = nvl_fp32_to_fp16(min);
        for (int j = 0; j < NVL_QK4_1 / 2; j++) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[j + NVL_QK4_1 / 2] - min) * id;
            const uint8_t q0 = (uint8_t)MIN(15, (int8_t)(x0 + 0.5f));
            const uint8_t q1 = (uint8_t)MIN(15, (int8_t)(x1 + 0.5f));

            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void nvl__quant_q5_0(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q5_0 *y = dst;
    const int64_t nb = n / NVL_QK5_0;

    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * NVL_QK5_0;
        float amax = 0.0f, max = 0.0f;
        uint32_t qh = 0;

        for (int j = 0; j < NVL_QK5_0; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;

        y[i].d = nvl_fp32_to_fp16(d);
        for (int j = 0; j < NVL_QK5_0 / 2; j++) {
            const float x0 = x[j] * id;
            const float x1 = x[j + NVL_QK5_0 / 2] * id;
            const uint8_t q0 = (uint8_t)MIN(31, (int8_t)(x0 + 16.5f));
            const uint8_t q1 = (uint8_t)MIN(31, (int8_t)(x1 + 16.5f));

            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + NVL_QK5_0 / 2);
        }
        memcpy(y[i].qh, &qh, sizeof(qh));
    }
}

void nvl__quant_q5_1(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q5_1 *y = dst;
    const int64_t nb = n / NVL_QK5_1;

    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * NVL_QK5_1;
        float min = FLT_MAX, max = -FLT_MAX;
        uint32_t qh = 0;

        for (int j = 0; j < NVL_QK5_1; j++) {
            if (x[j] < min)
                min = x[j];
            if (x[j] > max)
                max = x[j];
        }
        const float d = (max - min) / ((1 << 5) - 1);
        const float id = d ? 1.0f / d : 0.0f;

        y[i].d = nvl_fp32_to_fp16(d);
        y[i].m = nvl_fp32_to_fp16(min);
        for (int j = 0; j < NVL_QK5_1 / 2; j++) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[j + NVL_QK5_1 / 2] - min) * id;
            const uint8_t q0 = (uint8_t)(x0 + 0.5f);
            const uint8_t q1 = (uint8_t)(x1 + 0.5f);

            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + NVL_QK5_1 / 2);
        }
        memcpy(y[i].qh, &qh, sizeof(qh));
    }
}

/* Symmetric 8-bit: d = amax / 127, q = round(x / d). */
void nvl__quant_q8_0(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q8_0 *y = dst;
    const int64_t nb = n / NVL_QK8_0;

    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * NVL_QK8_0;
        float amax = 0.0f;

        for (int j = 0; j < NVL_QK8_0; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;

        y[i].d = nvl_fp32_to_fp16(d);
        for (int j = 0; j < NVL_QK8_0; j++)
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* As Q8_0, plus s = d * sum(q) for the min term of Q4_1/Q5_1 dot products. */
void nvl__quant_q8_1(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q8_1 *y = dst;
    const int64_t nb = n / NVL_QK8_1;

    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * NVL_QK8_1;
        float amax = 0.0f;
        int sum = 0;

        for (int j = 0; j < NVL_QK8_1; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;

        y[i].d = nvl_fp32_to_fp16(d);
        for (int j = 0; j < NVL_QK8_1; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = nvl_fp32_to_fp16((float)sum * d);
    }
}
