/* ggml tensor types: numeric type ids, on-disk block layouts, and row (de)quantization.
 *
 * The type ids and block layouts are the ones GGUF files store (ggml's `ggml_type` and
 * `ggml-common.h`); they are file formats, so every block is a fixed-width struct with a size
 * assert. This header compiles as C11 and as CUDA C++ so GPU kernels can reuse the layouts and the
 * scalar half-precision helpers. */
#ifndef NVL_MODEL_QUANT_H
#define NVL_MODEL_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#define NVL_QUANT_STATIC_ASSERT static_assert
#else
#include <assert.h>
#define NVL_QUANT_STATIC_ASSERT _Static_assert
#endif

#if defined(__CUDACC__)
#define NVL_QUANT_HD __host__ __device__
#else
#define NVL_QUANT_HD
#endif

/* ggml type ids as stored in a GGUF tensor-info record. The gaps (4, 5, 31-33, 36-38) are ids
 * that ggml retired; a file using them is refused. */
enum nvl_ggml_type {
    NVL_GGML_TYPE_F32 = 0,
    NVL_GGML_TYPE_F16 = 1,
    NVL_GGML_TYPE_Q4_0 = 2,
    NVL_GGML_TYPE_Q4_1 = 3,
    NVL_GGML_TYPE_Q5_0 = 6,
    NVL_GGML_TYPE_Q5_1 = 7,
    NVL_GGML_TYPE_Q8_0 = 8,
    NVL_GGML_TYPE_Q8_1 = 9,
    NVL_GGML_TYPE_Q2_K = 10,
    NVL_GGML_TYPE_Q3_K = 11,
    NVL_GGML_TYPE_Q4_K = 12,
    NVL_GGML_TYPE_Q5_K = 13,
    NVL_GGML_TYPE_Q6_K = 14,
    NVL_GGML_TYPE_Q8_K = 15,
    NVL_GGML_TYPE_IQ2_XXS = 16,
    NVL_GGML_TYPE_IQ2_XS = 17,
    NVL_GGML_TYPE_IQ3_XXS = 18,
    NVL_GGML_TYPE_IQ1_S = 19,
    NVL_GGML_TYPE_IQ4_NL = 20,
    NVL_GGML_TYPE_IQ3_S = 21,
    NVL_GGML_TYPE_IQ2_S = 22,
    NVL_GGML_TYPE_IQ4_XS = 23,
    NVL_GGML_TYPE_I8 = 24,
    NVL_GGML_TYPE_I16 = 25,
    NVL_GGML_TYPE_I32 = 26,
    NVL_GGML_TYPE_I64 = 27,
    NVL_GGML_TYPE_F64 = 28,
    NVL_GGML_TYPE_IQ1_M = 29,
    NVL_GGML_TYPE_BF16 = 30,
    NVL_GGML_TYPE_TQ1_0 = 34,
    NVL_GGML_TYPE_TQ2_0 = 35,
    NVL_GGML_TYPE_MXFP4 = 39,
    NVL_GGML_TYPE_NVFP4 = 40,
    NVL_GGML_TYPE_Q1_0 = 41,
    NVL_GGML_TYPE_COUNT = 42,
};

/* Elements per block of the legacy 32-element formats and of the 256-element K-quants. */
#define NVL_QK4_0 32
#define NVL_QK4_1 32
#define NVL_QK5_0 32
#define NVL_QK5_1 32
#define NVL_QK8_0 32
#define NVL_QK8_1 32
#define NVL_QK_K  256
/* Bytes of packed 6-bit sub-block scales and mins in Q4_K and Q5_K. */
#define NVL_K_SCALE_SIZE 12

/* Half-precision values are stored as their raw IEEE binary16 / bfloat16 bits. */

/* Q4_0: x = d * (q - 8), q in [0, 15]; qs[j] holds element j (low nibble) and j + 16 (high). */
struct nvl_block_q4_0 {
    uint16_t d;                /* fp16 scale */
    uint8_t qs[NVL_QK4_0 / 2]; /* 4-bit quants */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q4_0) == 18, "block_q4_0");

/* Q4_1: x = d * q + m, q in [0, 15]; nibble order as Q4_0. */
struct nvl_block_q4_1 {
    uint16_t d;                /* fp16 scale */
    uint16_t m;                /* fp16 min */
    uint8_t qs[NVL_QK4_1 / 2]; /* 4-bit quants */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q4_1) == 20, "block_q4_1");
NVL_QUANT_STATIC_ASSERT(offsetof(struct nvl_block_q4_1, qs) == 4, "block_q4_1.qs");

/* Q5_0: x = d * (q - 16), q in [0, 31]; bit j of qh is the fifth bit of element j. */
struct nvl_block_q5_0 {
    uint16_t d;                /* fp16 scale */
    uint8_t qh[4];             /* fifth bits, little-endian uint32 */
    uint8_t qs[NVL_QK5_0 / 2]; /* low 4 bits */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q5_0) == 22, "block_q5_0");
NVL_QUANT_STATIC_ASSERT(offsetof(struct nvl_block_q5_0, qs) == 6, "block_q5_0.qs");

/* Q5_1: x = d * q + m, q in [0, 31]. */
struct nvl_block_q5_1 {
    uint16_t d;                /* fp16 scale */
    uint16_t m;                /* fp16 min */
    uint8_t qh[4];             /* fifth bits, little-endian uint32 */
    uint8_t qs[NVL_QK5_1 / 2]; /* low 4 bits */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q5_1) == 24, "block_q5_1");
NVL_QUANT_STATIC_ASSERT(offsetof(struct nvl_block_q5_1, qs) == 8, "block_q5_1.qs");

/* Q8_0: x = d * q. */
struct nvl_block_q8_0 {
    uint16_t d;           /* fp16 scale */
    int8_t qs[NVL_QK8_0]; /* quants */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q8_0) == 34, "block_q8_0");

/* Q8_1: x = d * q, with s = d * sum(q) cached for dot products against Q4_1/Q5_1. */
struct nvl_block_q8_1 {
    uint16_t d;           /* fp16 scale */
    uint16_t s;           /* fp16 d * sum(qs) */
    int8_t qs[NVL_QK8_1]; /* quants */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q8_1) == 36, "block_q8_1");
NVL_QUANT_STATIC_ASSERT(offsetof(struct nvl_block_q8_1, qs) == 4, "block_q8_1.qs");

/* Q2_K: 16 sub-blocks of 16; x = d * (scales & 15) * q - dmin * (scales >> 4), q in [0, 3]. */
struct nvl_block_q2_K {
    uint8_t scales[NVL_QK_K / 16]; /* 4-bit scale (low) and min (high) per sub-block */
    uint8_t qs[NVL_QK_K / 4];      /* 2-bit quants */
    uint16_t d;                    /* fp16 super-block scale for scales */
    uint16_t dmin;                 /* fp16 super-block scale for mins */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q2_K) == 84, "block_q2_K");
NVL_QUANT_STATIC_ASSERT(offsetof(struct nvl_block_q2_K, d) == 80, "block_q2_K.d");

/* Q3_K: 16 sub-blocks of 16; x = d * (scale - 32) * (q - 4 * !hbit), 6-bit scales. */
struct nvl_block_q3_K {
    uint8_t hmask[NVL_QK_K / 8]; /* high bit of each quant */
    uint8_t qs[NVL_QK_K / 4];    /* low 2 bits */
    uint8_t scales[12];          /* 16 packed 6-bit scales */
    uint16_t d;                  /* fp16 super-block scale */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q3_K) == 110, "block_q3_K");
NVL_QUANT_STATIC_ASSERT(offsetof(struct nvl_block_q3_K, d) == 108, "block_q3_K.d");

/* Q4_K: 8 sub-blocks of 32; x = d * sc * q - dmin * m, 6-bit sc and m, q in [0, 15]. */
struct nvl_block_q4_K {
    uint16_t d;                       /* fp16 super-block scale for scales */
    uint16_t dmin;                    /* fp16 super-block scale for mins */
    uint8_t scales[NVL_K_SCALE_SIZE]; /* 8 scales and 8 mins, 6 bits each */
    uint8_t qs[NVL_QK_K / 2];         /* 4-bit quants */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q4_K) == 144, "block_q4_K");
NVL_QUANT_STATIC_ASSERT(offsetof(struct nvl_block_q4_K, qs) == 16, "block_q4_K.qs");

/* Q5_K: as Q4_K with a fifth bit per quant. */
struct nvl_block_q5_K {
    uint16_t d;                       /* fp16 super-block scale for scales */
    uint16_t dmin;                    /* fp16 super-block scale for mins */
    uint8_t scales[NVL_K_SCALE_SIZE]; /* 8 scales and 8 mins, 6 bits each */
    uint8_t qh[NVL_QK_K / 8];         /* fifth bits */
    uint8_t qs[NVL_QK_K / 2];         /* low 4 bits */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q5_K) == 176, "block_q5_K");
NVL_QUANT_STATIC_ASSERT(offsetof(struct nvl_block_q5_K, qs) == 48, "block_q5_K.qs");

/* Q6_K: 16 sub-blocks of 16; x = d * scale * (q - 32), q in [0, 63]. */
struct nvl_block_q6_K {
    uint8_t ql[NVL_QK_K / 2];     /* low 4 bits */
    uint8_t qh[NVL_QK_K / 4];     /* high 2 bits */
    int8_t scales[NVL_QK_K / 16]; /* 8-bit sub-block scales */
    uint16_t d;                   /* fp16 super-block scale */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q6_K) == 210, "block_q6_K");
NVL_QUANT_STATIC_ASSERT(offsetof(struct nvl_block_q6_K, d) == 208, "block_q6_K.d");

/* Q8_K: activation format for K-quant dot products; fp32 scale, per-16 sums of the quants. */
struct nvl_block_q8_K {
    float d;                      /* scale */
    int8_t qs[NVL_QK_K];          /* quants */
    int16_t bsums[NVL_QK_K / 16]; /* sum of each group of 16 quants */
};
NVL_QUANT_STATIC_ASSERT(sizeof(struct nvl_block_q8_K) == 292, "block_q8_K");
NVL_QUANT_STATIC_ASSERT(offsetof(struct nvl_block_q8_K, bsums) == 260, "block_q8_K.bsums");

/* Size and capability of one type. */
struct nvl_ggml_type_traits {
    const char *name;    /* ggml's name: "f32", "q4_0", "q4_K", ... */
    uint32_t block_size; /* elements per block (1 for plain types) */
    uint32_t type_size;  /* bytes per block */
    bool is_quantized;   /* block_size > 1 */
    bool can_dequantize; /* nvl_dequantize_row() supports it */
    bool can_quantize;   /* nvl_quantize_row() supports it */
};

/* Traits of a type, or NULL for an id that is not a known ggml type (retired ids included). */
const struct nvl_ggml_type_traits *nvl_ggml_type_traits(uint32_t type);
/* ggml's name of a type, or "unknown". */
const char *nvl_ggml_type_name(uint32_t type);
/* Looks a type up by ggml's name (case-insensitive, e.g. "q4_k", "Q8_0", "bf16"). */
int nvl_ggml_type_from_name(const char *name, enum nvl_ggml_type *out);
/* Elements per block and bytes per block; 0 for unknown types. */
uint32_t nvl_ggml_block_size(uint32_t type);
uint32_t nvl_ggml_type_size(uint32_t type);
/* Bytes of a row of n elements. -EINVAL for an unknown type or n not a multiple of the block
 * size; -EOVERFLOW when the size does not fit in 64 bits. */
int nvl_ggml_row_size(uint32_t type, uint64_t n, uint64_t *bytes);

/* Converts n elements of `type` at src into fp32. n must be a multiple of the block size.
 * Returns 0, -EINVAL (n not a multiple of the block size) or -ENOTSUP (type not supported:
 * see traits.can_dequantize). Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1,
 * Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K. src must be 2-byte aligned (4 for Q8_K), as GGUF
 * tensor data is. */
int nvl_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* splitmix64: the next value of the generator whose state is *s. */
uint64_t nvl_splitmix64(uint64_t *s);
/* Fills one block of `type` (nvl_ggml_type_size bytes at blk) with random bits from seed `state`
 * and sets its scale fields to small positive values (F32/F16/BF16: one value in
 * [-0.05, 0.05)), so that dequantized rows are finite and of a sane size through the layers. */
void nvl_quant_random_block(uint32_t type, uint8_t *blk, uint64_t state);

/* Converts n fp32 elements into `type` (reference quantizers, same results as ggml's
 * quantize_row_*_ref). Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q4_K,
 * Q6_K, Q8_K. src must be finite. Returns 0, -EINVAL or -ENOTSUP as nvl_dequantize_row(). */
int nvl_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* Scalar IEEE binary16 and bfloat16 conversions (round to nearest even; NaN stays NaN). */
static inline NVL_QUANT_HD float nvl_quant_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static inline NVL_QUANT_HD uint32_t nvl_quant_f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

/* Exact binary16 -> binary32 without branches on the value (vectorizes): the normal path
 * rescales the exponent with one multiply, subnormals go through a magic-number subtraction. */
static inline NVL_QUANT_HD float nvl_fp16_to_fp32(uint16_t h)
{
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const uint32_t exp_offset = 0xE0u << 23;
    const float exp_scale = nvl_quant_f32_from_bits(0x7800000u); /* 2^-112 */
    const float normalized = nvl_quant_f32_from_bits((two_w >> 4) + exp_offset) * exp_scale;
    const uint32_t magic_mask = 126u << 23;
    const float magic_bias = 0.5f;
    const float denormalized = nvl_quant_f32_from_bits((two_w >> 17) | magic_mask) - magic_bias;
    const uint32_t denormalized_cutoff = 1u << 27;
    const uint32_t result =
        sign | (two_w < denormalized_cutoff ? nvl_quant_f32_to_bits(denormalized)
                                            : nvl_quant_f32_to_bits(normalized));
    return nvl_quant_f32_from_bits(result);
}

/* binary32 -> binary16, round to nearest even, overflow to infinity. */
static inline NVL_QUANT_HD uint16_t nvl_fp32_to_fp16(float f)
{
    const float scale_to_inf = nvl_quant_f32_from_bits(0x77800000u);  /* 2^112 */
    const float scale_to_zero = nvl_quant_f32_from_bits(0x08800000u); /* 2^-110 */
    float base = (f < 0 ? -f : f) * scale_to_inf;
    base *= scale_to_zero;
    const uint32_t w = nvl_quant_f32_to_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u)
        bias = 0x71000000u;
    base = nvl_quant_f32_from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = nvl_quant_f32_to_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

static inline NVL_QUANT_HD float nvl_bf16_to_fp32(uint16_t h)
{
    return nvl_quant_f32_from_bits((uint32_t)h << 16);
}

/* binary32 -> bfloat16, round to nearest even; a NaN stays a (quiet) NaN. */
static inline NVL_QUANT_HD uint16_t nvl_fp32_to_bf16(float f)
{
    const uint32_t u = nvl_quant_f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

#ifdef __cplusplus
}
#endif

#endif
