/* F16 and BF16 rows <-> fp32. The scalar converters in quant.h are branch-free, so these loops
 * vectorize; they run in fixed chunks of 16 because GCC's -O2 cost model only vectorizes loops
 * that need no scalar epilogue. */
#include <string.h>

#include "quant_internal.h"

void nvl__dequant_f16(const void *restrict src, float *restrict dst, int64_t n)
{
    const uint8_t *s = src;
    int64_t i = 0;

    for (; i + 16 <= n; i += 16) {
        for (int j = 0; j < 16; j++) {
            uint16_t h;

            memcpy(&h, s + 2 * (i + j), 2);
            dst[i + j] = nvl_fp16_to_fp32(h);
        }
    }
    for (; i < n; i++) {
        uint16_t h;

        memcpy(&h, s + 2 * i, 2);
        dst[i] = nvl_fp16_to_fp32(h);
    }
}

void nvl__dequant_bf16(const void *restrict src, float *restrict dst, int64_t n)
{
    const uint8_t *s = src;
    int64_t i = 0;

    for (; i + 16 <= n; i += 16) {
        for (int j = 0; j < 16; j++) {
            uint16_t h;

            memcpy(&h, s + 2 * (i + j), 2);
            dst[i + j] = nvl_bf16_to_fp32(h);
        }
    }
    for (; i < n; i++) {
        uint16_t h;

        memcpy(&h, s + 2 * i, 2);
        dst[i] = nvl_bf16_to_fp32(h);
    }
}

void nvl__quant_f16(const float *restrict src, void *restrict dst, int64_t n)
{
    uint8_t *d = dst;

    for (int64_t i = 0; i < n; i++) {
        uint16_t h = nvl_fp32_to_fp16(src[i]);

        memcpy(d + 2 * i, &h, 2);
    }
}

void nvl__quant_bf16(const float *restrict src, void *restrict dst, int64_t n)
{
    uint8_t *d = dst;

    for (int64_t i = 0; i < n; i++) {
        uint16_t h = nvl_fp32_to_bf16(src[i]);

        memcpy(d + 2 * i, &h, 2);
    }
}
