/* The 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
 *
 * Dequantization follows ggml's dequantize_row_* exactly (same operation order, so results are
 * bit-identical); quantization follows ggml's quantize_row_*_ref, which is what the gguf Python
 * package reimplements too. The formats differ in how a block's quants are found (symmetric around
 * the value of largest magnitude, or asymmetric over [min, max]) and in how many bits each keeps;
 * the packing of 4- and 5-bit quants is shared below. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant_internal.h"

/* Elements j and j + 16 of a block share byte j of qs: low nibble, high nibble. Q5 formats keep
 * the fifth bit of element j in bit j of qh (a little-endian uint32). */

static inline void unpack_q4(const uint8_t qs[16], uint8_t q[32])
{
    for (int j = 0; j < 16; j++) {
        q[j] = qs[j] & 0x0F;
        q[j + 16] = qs[j] >> 4;
    }
}

static inline void unpack_q5(const uint8_t qs[16], const uint8_t qh_bytes[4], uint8_t q[32])
{
    uint8_t hi[32];
    uint32_t qh;

    memcpy(&qh, qh_bytes, sizeof(qh));
    /* Fifth bits first (a per-lane variable shift does not vectorize without AVX2). */
    for (int j = 0; j < 32; j++)
        hi[j] = (uint8_t)(((qh >> j) & 1) << 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0x0F) | hi[j];
        q[j + 16] = (qs[j] >> 4) | hi[j + 16];
    }
}

static inline void pack_q4(const uint8_t q[32], uint8_t qs[16])
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
}

static inline void pack_q5(const uint8_t q[32], uint8_t qs[16], uint8_t qh_bytes[4])
{
    uint32_t qh = 0;

    pack_q4(q, qs);
    for (int j = 0; j < 32; j++)
        qh |= ((q[j] & 0x10u) >> 4) << j;
    memcpy(qh_bytes, &qh, sizeof(qh));
}

/* Symmetric formats: d = max / -half where max is the (first) value of largest magnitude, so max
 * itself maps to q = 0 exactly; q = min(2 * half - 1, x / d + half + 0.5) truncated. */
static inline float quant_symmetric(const float *x, int half, uint8_t q[32])
{
    float max = nvl__max_magnitude(x, 32, NULL);
    const float d = max / (float)-half;
    const float id = d ? 1.0f / d : 0.0f;

    for (int j = 0; j < 32; j++)
        q[j] = (uint8_t)MIN(2 * half - 1, (int8_t)(x[j] * id + ((float)half + 0.5f)));
    return d;
}

/* Asymmetric formats over [min, max] with `levels` steps: q = (x - min) / d + 0.5 truncated.
 * Stores d and min (as m) in fp16. Q4_1 clamps to 15; Q5_1 cannot exceed 31 and ggml does not
 * clamp it, so neither do we (the conversion differs for rounding-edge inputs otherwise). */
static inline void quant_asymmetric(const float *x, int levels, bool clamp, uint8_t q[32],
                                    uint16_t *d16, uint16_t *m16)
{
    float min = FLT_MAX, max = -FLT_MAX;

    for (int j = 0; j < 32; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    const float d = (max - min) / (float)levels;
    const float id = d ? 1.0f / d : 0.0f;

    *d16 = nvl_fp32_to_fp16(d);
    *m16 = nvl_fp32_to_fp16(min);
    for (int j = 0; j < 32; j++) {
        const float v = (x[j] - min) * id;

        q[j] = clamp ? (uint8_t)MIN(levels, (int8_t)(v + 0.5f)) : (uint8_t)(v + 0.5f);
    }
}

/* Q8_0 and Q8_1: d = amax / 127, q = round(x / d). Returns d. */
static inline float quant_q8(const float *x, int8_t qs[32])
{
    float amax = 0.0f;

    for (int j = 0; j < 32; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;

    for (int j = 0; j < 32; j++)
        qs[j] = (int8_t)roundf(x[j] * id);
    return d;
}

void nvl__dequant_q4_0(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q4_0 *x = src;

    for (int64_t i = 0; i < n / NVL_QK4_0; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        float *restrict y = dst + i * NVL_QK4_0;
        uint8_t q[32];

        unpack_q4(x[i].qs, q);
        for (int j = 0; j < 32; j++)
            y[j] = (float)(q[j] - 8) * d;
    }
}

void nvl__dequant_q4_1(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q4_1 *x = src;

    for (int64_t i = 0; i < n / NVL_QK4_1; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        const float m = nvl_fp16_to_fp32(x[i].m);
        float *restrict y = dst + i * NVL_QK4_1;
        uint8_t q[32];

        unpack_q4(x[i].qs, q);
        for (int j = 0; j < 32; j++)
            y[j] = (float)q[j] * d + m;
    }
}

void nvl__dequant_q5_0(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q5_0 *x = src;

    for (int64_t i = 0; i < n / NVL_QK5_0; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        float *restrict y = dst + i * NVL_QK5_0;
        uint8_t q[32];

        unpack_q5(x[i].qs, x[i].qh, q);
        for (int j = 0; j < 32; j++)
            y[j] = (float)(q[j] - 16) * d;
    }
}

void nvl__dequant_q5_1(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q5_1 *x = src;

    for (int64_t i = 0; i < n / NVL_QK5_1; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        const float m = nvl_fp16_to_fp32(x[i].m);
        float *restrict y = dst + i * NVL_QK5_1;
        uint8_t q[32];

        unpack_q5(x[i].qs, x[i].qh, q);
        for (int j = 0; j < 32; j++)
            y[j] = (float)q[j] * d + m;
    }
}

/* Q8_0 and Q8_1 share the layout of d and qs; Q8_1's extra s is not needed to dequantize. */
static inline void dequant_q8(uint16_t d16, const int8_t qs[32], float *restrict y)
{
    const float d = nvl_fp16_to_fp32(d16);

    for (int j = 0; j < 32; j++)
        y[j] = (float)qs[j] * d;
}

void nvl__dequant_q8_0(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q8_0 *x = src;

    for (int64_t i = 0; i < n / NVL_QK8_0; i++)
        dequant_q8(x[i].d, x[i].qs, dst + i * NVL_QK8_0);
}

void nvl__dequant_q8_1(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q8_1 *x = src;

    for (int64_t i = 0; i < n / NVL_QK8_1; i++)
        dequant_q8(x[i].d, x[i].qs, dst + i * NVL_QK8_1);
}

void nvl__quant_q4_0(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q4_0 *y = dst;

    for (int64_t i = 0; i < n / NVL_QK4_0; i++) {
        uint8_t q[32];

        y[i].d = nvl_fp32_to_fp16(quant_symmetric(src + i * NVL_QK4_0, 8, q));
        pack_q4(q, y[i].qs);
    }
}

void nvl__quant_q4_1(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q4_1 *y = dst;

    for (int64_t i = 0; i < n / NVL_QK4_1; i++) {
        uint8_t q[32];

        quant_asymmetric(src + i * NVL_QK4_1, 15, true, q, &y[i].d, &y[i].m);
        pack_q4(q, y[i].qs);
    }
}

void nvl__quant_q5_0(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q5_0 *y = dst;

    for (int64_t i = 0; i < n / NVL_QK5_0; i++) {
        uint8_t q[32];

        y[i].d = nvl_fp32_to_fp16(quant_symmetric(src + i * NVL_QK5_0, 16, q));
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

void nvl__quant_q5_1(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q5_1 *y = dst;

    for (int64_t i = 0; i < n / NVL_QK5_1; i++) {
        uint8_t q[32];

        quant_asymmetric(src + i * NVL_QK5_1, 31, false, q, &y[i].d, &y[i].m);
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

void nvl__quant_q8_0(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q8_0 *y = dst;

    for (int64_t i = 0; i < n / NVL_QK8_0; i++)
        y[i].d = nvl_fp32_to_fp16(quant_q8(src + i * NVL_QK8_0, y[i].qs));
}

/* As Q8_0, plus s = d * sum(q) for the min term of Q4_1/Q5_1 dot products. */
void nvl__quant_q8_1(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q8_1 *y = dst;

    for (int64_t i = 0; i < n / NVL_QK8_1; i++) {
        const float d = quant_q8(src + i * NVL_QK8_1, y[i].qs);
        int sum = 0;

        for (int j = 0; j < 32; j++)
            sum += y[i].qs[j];
        y[i].d = nvl_fp32_to_fp16(d);
        y[i].s = nvl_fp32_to_fp16((float)sum * d);
    }
}
