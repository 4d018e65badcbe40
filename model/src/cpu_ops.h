/* CPU kernels of the forward pass: activation quantization, per-type dot products, row-parallel
 * matrix products, and the small vector operations (RMSNorm, RoPE, softmax, SwiGLU).
 *
 * Matrix products follow ggml's scheme: the activation row is quantized once to 8-bit blocks that
 * line up with the weight's blocks, and each weight row is dotted with it in integer arithmetic,
 * one scale multiply per block. Weight types without an integer kernel (F16, BF16, and any type
 * that nvl_dequantize_row() supports) are dequantized a row at a time and dotted in fp32.
 *
 * Kernels come in a portable version and, where the CPU has them, AVX2/FMA/F16C versions chosen
 * once at run time, so one binary runs on any x86-64 (or other) machine. Both versions perform the
 * same floating-point operations in the same order (the portable ones emulate the vector lanes and
 * fused multiply-adds), so results are bit-identical whichever set runs. */
#ifndef NVL_MODEL_CPU_OPS_H
#define NVL_MODEL_CPU_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvl_model/quant.h"

/* Activation block for the 32-element weight formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0):
 * x[i] ~= d * qs[i]. `sum` is the integer sum of qs, which turns the weight's offset (Q4_0's -8,
 * Q5_0's -16) or min (Q4_1, Q5_1) into one multiply per block. An in-memory format only, with an
 * fp32 scale (ggml's Q8_1 rounds d and d*sum to fp16). */
struct cpu_block_q8 {
    float d;
    float s;     /* d * sum, the block's dequantized sum (offsets and mins meet it) */
    int32_t sum; /* integer sum of qs */
    int8_t qs[32];
};
_Static_assert(sizeof(struct cpu_block_q8) == 44, "cpu_block_q8");

/* Activation formats. K-quants use struct nvl_block_q8_K (quant.h): fp32 scale, 256 quants and
 * the sums of each 16, which carry the K-quants' per-sub-block mins. */
enum cpu_act {
    CPU_ACT_F32 = 0,
    CPU_ACT_Q8 = 1,
    CPU_ACT_Q8K = 2,
    CPU_ACT_COUNT = 3,
};

/* Dot product of one weight row of n elements with one activation row. */
typedef float (*cpu_vec_dot_fn)(const void *w, const void *x, int64_t n);

/* Dot products of one weight row with four activation rows `stride` bytes apart, into out[0..4);
 * each result bit-identical to the one-row kernel's. */
typedef void (*cpu_vec_dot4_fn)(const void *w, const void *x, size_t stride, int64_t n, float *out);

/* How a weight type is multiplied. */
struct cpu_type_ops {
    enum cpu_act act;     /* activation format the dot product takes */
    cpu_vec_dot_fn dot;   /* integer (or fp32 for F32) dot; NULL: dequantize the row, fp32 dot */
    cpu_vec_dot4_fn dot4; /* four activation rows at once, or NULL */
};

/* Picks the portable or the AVX2 kernels; idempotent and thread-safe. */
void nvl__cpu_ops_init(void);
/* Whether this CPU can run the AVX2 kernels (AVX2, FMA and F16C), whichever set is selected. */
bool nvl__cpu_has_avx2(void);
/* "avx2" or "generic". */
const char *nvl__cpu_ops_kernels(void);

/* The kernels for a weight type, or NULL when the CPU backend cannot use the type at all. */
const struct cpu_type_ops *nvl__cpu_type_ops(enum nvl_ggml_type type);

/* Bytes of one activation row of n elements (n a multiple of the format's block). */
size_t nvl__cpu_act_row_bytes(enum cpu_act act, int64_t n);
/* Quantizes n floats into the activation format (a copy for F32). */
void nvl__cpu_act_quantize(enum cpu_act act, const float *x, void *dst, int64_t n);

/* fp32 dot product. */
float nvl__cpu_dot_f32(const float *a, const float *b, int64_t n);
/* Dot of an fp32 vector with an fp16 vector (the KV cache). */
float nvl__cpu_dot_f16(const float *a, const uint16_t *b, int64_t n);
/* y += a * x for an fp16 or fp32 x. */
void nvl__cpu_axpy_f16(float *y, float a, const uint16_t *x, int64_t n);
void nvl__cpu_axpy_f32(float *y, float a, const float *x, int64_t n);
void nvl__cpu_f32_to_f16(const float *x, uint16_t *y, int64_t n);

/* One matrix product y = W · x for n_tok activation rows. */
struct cpu_matmul {
    const void *w; /* weight rows */
    enum nvl_ggml_type w_type;
    uint64_t w_row_bytes; /* bytes of one weight row */
    int64_t k;            /* elements per row */
    int64_t rows;         /* rows of W (outputs per token) */
    const void *x;        /* [n_tok] activation rows in nvl__cpu_type_ops(w_type)->act format, */
    size_t x_stride;      /*   x_stride bytes apart */
    float *y;             /* [n_tok][y_stride] outputs */
    size_t y_stride;      /* floats */
    int32_t n_tok;
    bool accumulate; /* y += W · x instead of y = W · x (residual connections) */
    bool dequantize; /* x is fp32: dequantize each weight row even if an integer dot exists */
};

/* Computes outputs [r0, r1) of every token. scratch holds k floats (for dequantized rows). */
void nvl__cpu_matmul_rows(const struct cpu_matmul *mm, int64_t r0, int64_t r1, float *scratch);

/* y = x / rms(x) * g, with rms(x) = sqrt(mean(x^2) + eps). */
void nvl__cpu_rmsnorm(float *y, const float *x, const float *g, int64_t n, float eps);
/* In-place softmax. */
void nvl__cpu_softmax(float *x, int64_t n);
/* g = silu(g) * u. */
void nvl__cpu_swiglu(float *g, const float *u, int64_t n);

#endif
