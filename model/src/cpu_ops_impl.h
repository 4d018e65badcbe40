/* The kernel variants behind cpu_ops.h's dispatch: portable ones (cpu_ops.c) and AVX2/FMA/F16C
 * ones (cpu_ops_avx2.c, compiled with per-function target attributes so the file builds without
 * -mavx2). Tests compare each variant with the dequantizer, and the two sets with each other bit
 * for bit (they compute the same float operations in the same order). */
#ifndef NVL_MODEL_CPU_OPS_IMPL_H
#define NVL_MODEL_CPU_OPS_IMPL_H

#include <stddef.h>
#include <stdint.h>

float nvl__cpu_dot_f32_generic(const float *a, const float *b, int64_t n);
float nvl__cpu_dot_f16_generic(const float *a, const uint16_t *b, int64_t n);
void nvl__cpu_axpy_f16_generic(float *y, float a, const uint16_t *x, int64_t n);
void nvl__cpu_f32_to_f16_generic(const float *x, uint16_t *y, int64_t n);
float nvl__cpu_dot_q4_0_generic(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q4_1_generic(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q5_0_generic(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q5_1_generic(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q8_0_generic(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q2_K_generic(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q3_K_generic(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q4_K_generic(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q5_K_generic(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q6_K_generic(const void *w, const void *x, int64_t n);

#if defined(__x86_64__)
float nvl__cpu_dot_f32_avx2(const float *a, const float *b, int64_t n);
float nvl__cpu_dot_f16_avx2(const float *a, const uint16_t *b, int64_t n);
void nvl__cpu_axpy_f16_avx2(float *y, float a, const uint16_t *x, int64_t n);
void nvl__cpu_f32_to_f16_avx2(const float *x, uint16_t *y, int64_t n);
float nvl__cpu_dot_q4_0_avx2(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q4_1_avx2(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q5_0_avx2(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q5_1_avx2(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q8_0_avx2(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q4_K_avx2(const void *w, const void *x, int64_t n);
float nvl__cpu_dot_q6_K_avx2(const void *w, const void *x, int64_t n);
void nvl__cpu_dot4_q4_0_avx2(const void *w, const void *x, size_t stride, int64_t n, float *out);
void nvl__cpu_dot4_q4_1_avx2(const void *w, const void *x, size_t stride, int64_t n, float *out);
void nvl__cpu_dot4_q5_0_avx2(const void *w, const void *x, size_t stride, int64_t n, float *out);
void nvl__cpu_dot4_q8_0_avx2(const void *w, const void *x, size_t stride, int64_t n, float *out);
#endif

#endif
