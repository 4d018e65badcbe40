/* Random blocks of the quantized formats with small finite scales: the weights of synthetic
 * models (nvgguf synth) and of benchmarks, so that every generator of test weights makes the
 * same kind of block. */
#include <string.h>

#include "nvl_model/quant.h"

uint64_t nvl_splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A uniform float in [lo, hi) from 24 random bits. */
static float rnd_range(uint64_t r, float lo, float hi)
{
    return lo + (hi - lo) * (float)(r >> 40) / 16777216.0f;
}

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, sizeof(v));
}

void nvl_quant_random_block(uint32_t type, uint8_t *p, uint64_t state)
{
    const uint32_t bs = nvl_ggml_type_size(type);
    uint32_t i = 0;
    for (; i + 8 <= bs; i += 8) {
        const uint64_t r = nvl_splitmix64(&state);
        memcpy(p + i, &r, 8);
    }
    if (i < bs) {
        const uint64_t r = nvl_splitmix64(&state);
        memcpy(p + i, &r, bs - i);
    }
    const uint64_t r = nvl_splitmix64(&state);
    switch (type) {
    case NVL_GGML_TYPE_F32: {
        const float v = rnd_range(r, -0.05f, 0.05f);
        memcpy(p, &v, 4);
        break;
    }
    case NVL_GGML_TYPE_F16:
        put16(p, nvl_fp32_to_fp16(rnd_range(r, -0.05f, 0.05f)));
        break;
    case NVL_GGML_TYPE_BF16:
        put16(p, nvl_fp32_to_bf16(rnd_range(r, -0.05f, 0.05f)));
        break;
    case NVL_GGML_TYPE_Q4_0:
    case NVL_GGML_TYPE_Q5_0:
        put16(p, nvl_fp32_to_fp16(rnd_range(r, 0.001f, 0.004f)));
        break;
    case NVL_GGML_TYPE_Q8_0:
        put16(p, nvl_fp32_to_fp16(rnd_range(r, 0.0002f, 0.0005f)));
        break;
    case NVL_GGML_TYPE_Q4_1:
    case NVL_GGML_TYPE_Q5_1:
        put16(p, nvl_fp32_to_fp16(rnd_range(r, 0.001f, 0.004f)));
        put16(p + 2, nvl_fp32_to_fp16(-rnd_range(r << 24, 0.01f, 0.03f)));
        break;
    case NVL_GGML_TYPE_Q4_K:
    case NVL_GGML_TYPE_Q5_K:
        put16(p, nvl_fp32_to_fp16(rnd_range(r, 0.00005f, 0.0001f)));
        put16(p + 2, nvl_fp32_to_fp16(rnd_range(r << 24, 0.0001f, 0.0003f)));
        break;
    case NVL_GGML_TYPE_Q6_K:
        put16(p + 208, nvl_fp32_to_fp16(rnd_range(r, 0.00001f, 0.00003f)));
        break;
    default:
        break;
    }
}
