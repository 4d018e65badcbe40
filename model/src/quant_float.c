/* F16 and BF16 rows <-> fp32. The scalar converters in quant.h are branch-free, so these loops
 * vectorize; they run in fixed chunks of 16 because GCC's -O2 cost model only vectorizes loops
 * that need no scalar epilogue. The two formats share one loop per direction: it is always
 * inlined with a constant converter, so each entry point still compiles to its own vector loop. */
#include <string.h>

#include "quant_internal.h"

static inline __attribute__((always_inline)) void
half_to_fp32(const uint8_t *restrict s, float *restrict dst, int64_t n, float (*cvt)(uint16_t))
{
    int64_t i = 0;

    for (; i + 16 <= n; i += 16) {
        for (int j = 0; j < 16; j++) {
            uint16_t h;

            memcpy(&h, s + 2 * (i + j), 2);
            dst[i + j] = cvt(h);
        }
    }
    for (; i < n; i++) {
        uint16_t h;

        memcpy(&h, s + 2 * i, 2);
        dst[i] = cvt(h);
    }
}

static inline __attribute__((always_inline)) void
fp32_to_half(const float *restrict src, uint8_t *restrict d, int64_t n, uint16_t (*cvt)(float))
{
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = cvt(src[i]);

        memcpy(d + 2 * i, &h, 2);
    }
}

void nvl__dequant_f16(const void *restrict src, float *restrict dst, int64_t n)
{
    half_to_fp32(src, dst, n, nvl_fp16_to_fp32);
}

void nvl__dequant_bf16(const void *restrict src, float *restrict dst, int64_t n)
{
    half_to_fp32(src, dst, n, nvl_bf16_to_fp32);
}

void nvl__quant_f16(const float *restrict src, void *restrict dst, int64_t n)
{
    fp32_to_half(src, dst, n, nvl_fp32_to_fp16);
}

void nvl__quant_bf16(const float *restrict src, void *restrict dst, int64_t n)
{
    fp32_to_half(src, dst, n, nvl_fp32_to_bf16);
}
