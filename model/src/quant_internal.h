/* Per-format row kernels behind nvl_dequantize_row() and nvl_quantize_row(). n is a multiple of
 * the format's block size (checked by the dispatcher); src and dst need no alignment beyond the
 * element type's. */
#ifndef NVL_MODEL_QUANT_INTERNAL_H
#define NVL_MODEL_QUANT_INTERNAL_H

#include <math.h>
#include <stdint.h>

#include "nvl_model/quant.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* The first of x[0..n) with the largest magnitude (0 when all are zero), as ggml's quantizers pick
 * it: symmetric formats map this value exactly to the end of their grid. Its magnitude goes to
 * *amax when amax is not NULL. */
static inline float nvl__max_magnitude(const float *x, int n, float *amax)
{
    float max = 0.0f, a = 0.0f;

    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);

        if (ax > a) {
            a = ax;
            max = x[i];
        }
    }
    if (amax)
        *amax = a;
    return max;
}

void nvl__dequant_f16(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_bf16(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q4_0(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q4_1(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q5_0(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q5_1(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q8_0(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q8_1(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q2_K(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q3_K(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q4_K(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q5_K(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q6_K(const void *restrict src, float *restrict dst, int64_t n);
void nvl__dequant_q8_K(const void *restrict src, float *restrict dst, int64_t n);

void nvl__quant_f16(const float *restrict src, void *restrict dst, int64_t n);
void nvl__quant_bf16(const float *restrict src, void *restrict dst, int64_t n);
void nvl__quant_q4_0(const float *restrict src, void *restrict dst, int64_t n);
void nvl__quant_q4_1(const float *restrict src, void *restrict dst, int64_t n);
void nvl__quant_q5_0(const float *restrict src, void *restrict dst, int64_t n);
void nvl__quant_q5_1(const float *restrict src, void *restrict dst, int64_t n);
void nvl__quant_q8_0(const float *restrict src, void *restrict dst, int64_t n);
void nvl__quant_q8_1(const float *restrict src, void *restrict dst, int64_t n);
void nvl__quant_q4_K(const float *restrict src, void *restrict dst, int64_t n);
void nvl__quant_q6_K(const float *restrict src, void *restrict dst, int64_t n);
void nvl__quant_q8_K(const float *restrict src, void *restrict dst, int64_t n);

#endif
