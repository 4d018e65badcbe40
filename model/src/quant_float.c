/* F16 and BF16 rows <-> fp32. The scalar converters in quant.h are branch-free, so these loops
 * vectorize. */
#include <string.h>

#include "quant_internal.h"

void nvl__dequant_f16(const void *src, float *dst, int64_t n)
{
    const uint8_t *s = src;

    for (int64_t i = 0; i < n; i++) {
        uint16_t h;

        memcpy(&h, s + 2 * i, 2);
        dst[i] = nvl_fp16_to_fp32(h);
    }
}

void nvl__dequant_bf16(const void *src, float *dst, int64_t n)
{
    const uint8_t *s = src;

    for (int64_t i = 0; i < n; i++) {
        uint16_t h;

        memcpy(&h, s + 2 * i, 2);
        dst[i] = nvl_bf16_to_fp32(h);
    }
}

void nvl__quant_f16(const float *src, void *dst, int64_t n)
{
    uint8_t *d = dst;

    for (int64_t i = 0; i < n; i++) {
        uint16_t h = nvl_fp32_to_fp16(src[i]);

        memcpy(d + 2 * i, &h, 2);
    }
}

void nvl__quant_bf16(const float *src, void *dst, int64_t n)
{
    uint8_t *d = dst;

    for (int64_t i = 0; i < n; i++) {
        uint16_t h = nvl_fp32_to_bf16(src[i]);

        memcpy(d + 2 * i, &h, 2);
    }
}
