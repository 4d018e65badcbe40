/* Random tensors for the kernel tests: weight rows of any supported type built directly in
 * quantized form (random quants, small positive fp16 scales, as a trained model has), and random
 * activations. Shared by the host and the GPU kernel tests. */
#ifndef NVL_TESTS_KERNELS_UTIL_H
#define NVL_TESTS_KERNELS_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nvl_model/quant.h"

static uint64_t ku_rng = 0x2545f4914f6cdd1dull;

static inline uint32_t ku_rand(void)
{
    ku_rng ^= ku_rng << 13;
    ku_rng ^= ku_rng >> 7;
    ku_rng ^= ku_rng << 17;
    return (uint32_t)(ku_rng >> 16);
}

/* Uniform in [lo, hi). */
static inline float ku_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)(ku_rand() & 0xffffff) / 16777216.0f;
}

static inline void ku_put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, sizeof(v));
}

/* Fills n_blocks blocks of `type` at dst with random content. */
static inline void ku_fill_blocks(enum nvl_ggml_type type, uint8_t *dst, int64_t n_blocks)
{
    const uint32_t bs = nvl_ggml_type_size(type);
    for (int64_t i = 0; i < n_blocks * bs; i++)
        dst[i] = (uint8_t)ku_rand();
    for (int64_t b = 0; b < n_blocks; b++) {
        uint8_t *p = dst + b * bs;
        switch (type) {
        case NVL_GGML_TYPE_F32: {
            float v = ku_uniform(-1.0f, 1.0f);
            memcpy(p, &v, 4);
            break;
        }
        case NVL_GGML_TYPE_F16:
            ku_put16(p, nvl_fp32_to_fp16(ku_uniform(-1.0f, 1.0f)));
            break;
        case NVL_GGML_TYPE_BF16:
            ku_put16(p, nvl_fp32_to_bf16(ku_uniform(-1.0f, 1.0f)));
            break;
        case NVL_GGML_TYPE_Q4_0:
        case NVL_GGML_TYPE_Q5_0:
        case NVL_GGML_TYPE_Q8_0:
            ku_put16(p, nvl_fp32_to_fp16(ku_uniform(0.001f, 0.02f)));
            break;
        case NVL_GGML_TYPE_Q4_1:
        case NVL_GGML_TYPE_Q5_1:
            ku_put16(p, nvl_fp32_to_fp16(ku_uniform(0.001f, 0.02f)));
            ku_put16(p + 2, nvl_fp32_to_fp16(ku_uniform(-0.2f, 0.0f)));
            break;
        case NVL_GGML_TYPE_Q2_K:
            ku_put16(p + 80, nvl_fp32_to_fp16(ku_uniform(0.0001f, 0.002f)));
            ku_put16(p + 82, nvl_fp32_to_fp16(ku_uniform(0.0001f, 0.004f)));
            break;
        case NVL_GGML_TYPE_Q3_K:
            ku_put16(p + 108, nvl_fp32_to_fp16(ku_uniform(0.0001f, 0.001f)));
            break;
        case NVL_GGML_TYPE_Q4_K:
        case NVL_GGML_TYPE_Q5_K:
            ku_put16(p, nvl_fp32_to_fp16(ku_uniform(0.0001f, 0.002f)));
            ku_put16(p + 2, nvl_fp32_to_fp16(ku_uniform(0.0001f, 0.004f)));
            break;
        case NVL_GGML_TYPE_Q6_K:
            ku_put16(p + 208, nvl_fp32_to_fp16(ku_uniform(0.0001f, 0.001f)));
            break;
        default:
            break;
        }
    }
}

/* A matrix of rows x k elements of `type`; returns the bytes (malloc) and the row size. */
static inline uint8_t *ku_matrix(enum nvl_ggml_type type, int64_t rows, int64_t k,
                                 uint64_t *row_bytes)
{
    if (nvl_ggml_row_size(type, (uint64_t)k, row_bytes))
        return NULL;
    uint8_t *m = (uint8_t *)malloc((size_t)(*row_bytes * (uint64_t)rows) + 16);
    if (m)
        ku_fill_blocks(type, m, (int64_t)(*row_bytes / nvl_ggml_type_size(type)) * rows);
    return m;
}

static inline void ku_floats(float *x, int64_t n, float amp)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = ku_uniform(-amp, amp);
}

#endif
