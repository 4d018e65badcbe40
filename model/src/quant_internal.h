/* Per-format row kernels behind nvl_dequantize_row() and nvl_quantize_row(). n is a multiple of
 * the format's block size (checked by the dispatcher); src and dst need no alignment beyond the
 * element type's. */
#ifndef NVL_MODEL_QUANT_INTERNAL_H
#define NVL_MODEL_QUANT_INTERNAL_H

#include <stdint.h>

#include "nvl_model/quant.h"

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
