/* Portable CPU kernels and the run-time kernel selection. See cpu_ops.h. */
#include "cpu_ops.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops_impl.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ------------------------------------------------------------------------------------------ */
/* Activation quantization */

static void act_quantize_q8(const float *x, void *dst, int64_t n)
{
    struct cpu_block_q8 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            int v = (int)lrintf(x[j] * id);
            b[i].qs[j] = (int8_t)v;
            sum += v;
        }
        b[i].d = d;
        b[i].s = d * (float)sum;
        b[i].sum = sum;
    }
}

/* Q8_K with a symmetric [-127, 127] range (ggml uses [-128, 127]); the kernels then never meet
 * -128, which keeps the AVX2 sign trick exact. */
static void act_quantize_q8k(const float *x, void *dst, int64_t n)
{
    struct nvl_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / NVL_QK_K; i++, x += NVL_QK_K) {
        float amax = 0.0f;
        for (int j = 0; j < NVL_QK_K; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        for (int j = 0; j < NVL_QK_K; j++)
            b[i].qs[j] = (int8_t)lrintf(x[j] * id);
        for (int g = 0; g < NVL_QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++)
                sum += b[i].qs[g * 16 + j];
            b[i].bsums[g] = (int16_t)sum;
        }
        b[i].d = d;
    }
}

size_t nvl__cpu_act_row_bytes(enum cpu_act act, int64_t n)
{
    switch (act) {
    case CPU_ACT_Q8:
        return (size_t)(n / 32) * sizeof(struct cpu_block_q8);
    case CPU_ACT_Q8K:
        return (size_t)(n / NVL_QK_K) * sizeof(struct nvl_block_q8_K);
    default:
        return (size_t)n * sizeof(float);
    }
}

void nvl__cpu_act_quantize(enum cpu_act act, const float *x, void *dst, int64_t n)
{
    switch (act) {
    case CPU_ACT_Q8:
        act_quantize_q8(x, dst, n);
        break;
    case CPU_ACT_Q8K:
        act_quantize_q8k(x, dst, n);
        break;
    default:
        memcpy(dst, x, (size_t)n * sizeof(float));
        break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Portable dot products.
 *
 * They compute the same floating-point operations in the same order as the AVX2 kernels
 * (cpu_ops_avx2.c), so the two kernel sets give bit-identical logits and a model's output does not
 * depend on the host CPU. The AVX2 kernels keep eight fp32 lanes: per block, lane l holds the
 * integer dot of elements 4l..4l+3 (what vpmaddubsw + vpmaddwd leave), scaled and added with one
 * fused multiply-add; the lanes are summed at the end in hsum_ps()'s order. Integer sums are exact
 * in any order, so only the float steps have to match; they are spelled out below. */

/* a * b + c with one rounding, as vfmadd. Without a hardware fmaf this is exact emulation, not a
 * libm call (glibc's switches the rounding mode, several times slower): the product of two floats
 * is exact in double, and rounding the double sum to float again is wrong only when that sum is
 * exactly halfway between two floats, which needs its low 28 significand bits clear. Then (rare)
 * TwoSum gives the sum's error, the sum is rounded to odd instead (53 >= 2 * 24 + 2 bits make the
 * final rounding correct from there). */
static inline float fma_f32(float a, float b, float c)
{
#if defined(FP_FAST_FMAF)
    return fmaf(a, b, c);
#else
    const double p = (double)a * (double)b;
    double s = p + (double)c;
    uint64_t u;
    memcpy(&u, &s, sizeof(u));
    if (__builtin_expect((u & 0x0fffffffu) == 0, 0)) {
        const double bb = s - p;
        const double err = (p - (s - bb)) + ((double)c - bb);
        if (err != 0.0 && err == err && !(u & 1)) {
            uint64_t e;
            memcpy(&e, &err, sizeof(e));
            /* Inexact and even: the round-to-odd result is the neighbour on the error's side. */
            u += ((e ^ u) >> 63) ? (uint64_t)-1 : 1;
            memcpy(&s, &u, sizeof(s));
        }
    }
    return (float)s;
#endif
}

/* hsum_ps() of the AVX2 kernels: the upper four lanes onto the lower, then pairs. */
static inline float hsum8(const float v[8])
{
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

/* The eight lanes' integer dots of a block of 32: p[l] = q[4l..4l+3] . x[4l..4l+3]. Integer sums
 * are exact, so any method gives the AVX2 kernels' values; x86-64's baseline SSE2 does it with
 * pmaddwd (this is still the portable kernel set). */
static inline void block_lanes(const int8_t *q, const int8_t *x, int32_t p[8])
{
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    for (int h = 0; h < 2; h++) {
        const __m128i qv = _mm_loadu_si128((const __m128i *)(q + 16 * h));
        const __m128i xv = _mm_loadu_si128((const __m128i *)(x + 16 * h));
        const __m128i qsign = _mm_cmpgt_epi8(zero, qv), xsign = _mm_cmpgt_epi8(zero, xv);
        /* Sums of element pairs (2k, 2k + 1) of elements 0-7 and 8-15, then adjacent pairs. */
        const __m128i lo =
            _mm_madd_epi16(_mm_unpacklo_epi8(qv, qsign), _mm_unpacklo_epi8(xv, xsign));
        const __m128i hi =
            _mm_madd_epi16(_mm_unpackhi_epi8(qv, qsign), _mm_unpackhi_epi8(xv, xsign));
        const __m128 a = _mm_castsi128_ps(lo), b = _mm_castsi128_ps(hi);
        const __m128i even = _mm_castps_si128(_mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
        const __m128i odd = _mm_castps_si128(_mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
        _mm_storeu_si128((__m128i *)(p + 4 * h), _mm_add_epi32(even, odd));
    }
#else
    for (int l = 0; l < 8; l++)
        p[l] = q[4 * l] * x[4 * l] + q[4 * l + 1] * x[4 * l + 1] + q[4 * l + 2] * x[4 * l + 2] +
               q[4 * l + 3] * x[4 * l + 3];
#endif
}

/* acc[l] += d * p[l] for the eight lanes of a block of 32. q holds the unsigned quants (the AVX2
 * kernels apply offsets and mins through the activation's sums). */
static inline void block_fma(float acc[8], float d, const int8_t *q, const int8_t *x)
{
    int32_t p[8];
    block_lanes(q, x, p);
#if defined(__SSE2__) && !defined(FP_FAST_FMAF)
    /* fma_f32's common path on two lanes at a time: |p| <= 4 * 128 * 127 is exact as a float, so
     * converting it straight to double is the same; any lane that may sit on a float midpoint
     * sends the block through the scalar function. */
    const __m128d dd = _mm_set1_pd((double)d);
    const __m128i low28 = _mm_set_epi32(0, 0x0fffffff, 0, 0x0fffffff);
    __m128d sum[4];
    int midpoint = 0;
    for (int k = 0; k < 4; k++) {
        const __m128d pp =
            _mm_mul_pd(dd, _mm_cvtepi32_pd(_mm_loadl_epi64((const void *)(p + 2 * k))));
        const __m128d a =
            _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const void *)(acc + 2 * k))));
        sum[k] = _mm_add_pd(pp, a);
        const __m128i z =
            _mm_cmpeq_epi32(_mm_and_si128(_mm_castpd_si128(sum[k]), low28), _mm_setzero_si128());
        midpoint |= _mm_movemask_ps(_mm_castsi128_ps(z)) & 0x5;
    }
    if (__builtin_expect(!midpoint, 1)) {
        for (int k = 0; k < 4; k++)
            _mm_storel_epi64((void *)(acc + 2 * k), _mm_castps_si128(_mm_cvtpd_ps(sum[k])));
        return;
    }
#endif
    for (int l = 0; l < 8; l++)
        acc[l] = fma_f32(d, (float)p[l], acc[l]);
}

float nvl__cpu_dot_f32_generic(const float *a, const float *b, int64_t n)
{
    /* Four vectors of eight lanes over 32 elements, one vector over a tail of eight, the four
     * vectors added pairwise, then hsum and a scalar tail: nvl__cpu_dot_f32_avx2's order. */
    float acc[4][8] = {{0}};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int v = 0; v < 4; v++)
            for (int l = 0; l < 8; l++)
                acc[v][l] = fma_f32(a[i + 8 * v + l], b[i + 8 * v + l], acc[v][l]);
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[0][l] = fma_f32(a[i + l], b[i + l], acc[0][l]);
    float lanes[8];
    for (int l = 0; l < 8; l++)
        lanes[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    float sum = hsum8(lanes);
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

float nvl__cpu_dot_f16_generic(const float *a, const uint16_t *b, int64_t n)
{
    float acc[2][8] = {{0}};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int v = 0; v < 2; v++)
            for (int l = 0; l < 8; l++)
                acc[v][l] =
                    fma_f32(a[i + 8 * v + l], nvl_fp16_to_fp32(b[i + 8 * v + l]), acc[v][l]);
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[0][l] = fma_f32(a[i + l], nvl_fp16_to_fp32(b[i + l]), acc[0][l]);
    float lanes[8];
    for (int l = 0; l < 8; l++)
        lanes[l] = acc[0][l] + acc[1][l];
    float sum = hsum8(lanes);
    for (; i < n; i++)
        sum += a[i] * nvl_fp16_to_fp32(b[i]);
    return sum;
}

void nvl__cpu_axpy_f16_generic(float *y, float a, const uint16_t *x, int64_t n)
{
    const int64_t n8 = n - n % 8; /* the AVX2 kernel's vector part, fused */
    int64_t i = 0;
    for (; i < n8; i++)
        y[i] = fma_f32(a, nvl_fp16_to_fp32(x[i]), y[i]);
    for (; i < n; i++)
        y[i] += a * nvl_fp16_to_fp32(x[i]);
}

void nvl__cpu_f32_to_f16_generic(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = nvl_fp32_to_fp16(x[i]);
}

static float dot_f32_row(const void *w, const void *x, int64_t n)
{
    return nvl__cpu_dot_f32(w, x, n);
}

/* Q4_0/Q4_1 quants of a block in element order: low nibbles are elements 0-15, high 16-31. */
static inline void unpack_q4(const uint8_t *qs, int8_t q[32])
{
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(qs[j] & 0x0f);
        q[j + 16] = (int8_t)(qs[j] >> 4);
    }
}

/* The 5-bit formats: bit j of qh is the fifth bit of element j. */
static inline void unpack_q5(const uint8_t *qs, const uint8_t *qh_bytes, int8_t q[32])
{
    uint32_t qh;
    memcpy(&qh, qh_bytes, sizeof(qh));
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4));
        q[j + 16] = (int8_t)((qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4));
    }
}

/* The offset formats (Q4_0: 8, Q5_0: 16): sum d * (q . x) over the lanes, minus off * sum of
 * dw * x.s (x.s = x.d * x.sum, precomputed by the activation quantizer). */
float nvl__cpu_dot_q4_0_generic(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q4_0 *w = vw;
    const struct cpu_block_q8 *x = vx;
    float acc[8] = {0};
    float corr = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int8_t q[32];
        unpack_q4(w[i].qs, q);
        const float dw = nvl_fp16_to_fp32(w[i].d);
        block_fma(acc, dw * x[i].d, q, x[i].qs);
        corr += dw * x[i].s;
    }
    return hsum8(acc) - 8.0f * corr;
}

float nvl__cpu_dot_q4_1_generic(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q4_1 *w = vw;
    const struct cpu_block_q8 *x = vx;
    float acc[8] = {0};
    float mins = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int8_t q[32];
        unpack_q4(w[i].qs, q);
        block_fma(acc, nvl_fp16_to_fp32(w[i].d) * x[i].d, q, x[i].qs);
        mins += nvl_fp16_to_fp32(w[i].m) * x[i].s;
    }
    return hsum8(acc) + mins;
}

float nvl__cpu_dot_q5_0_generic(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q5_0 *w = vw;
    const struct cpu_block_q8 *x = vx;
    float acc[8] = {0};
    float corr = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int8_t q[32];
        unpack_q5(w[i].qs, w[i].qh, q);
        const float dw = nvl_fp16_to_fp32(w[i].d);
        block_fma(acc, dw * x[i].d, q, x[i].qs);
        corr += dw * x[i].s;
    }
    return hsum8(acc) - 16.0f * corr;
}

float nvl__cpu_dot_q5_1_generic(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q5_1 *w = vw;
    const struct cpu_block_q8 *x = vx;
    float acc[8] = {0};
    float mins = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int8_t q[32];
        unpack_q5(w[i].qs, w[i].qh, q);
        block_fma(acc, nvl_fp16_to_fp32(w[i].d) * x[i].d, q, x[i].qs);
        mins += nvl_fp16_to_fp32(w[i].m) * x[i].s;
    }
    return hsum8(acc) + mins;
}

float nvl__cpu_dot_q8_0_generic(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q8_0 *w = vw;
    const struct cpu_block_q8 *x = vx;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / 32; i++)
        block_fma(acc, nvl_fp16_to_fp32(w[i].d) * x[i].d, w[i].qs, x[i].qs);
    return hsum8(acc);
}

/* K-quants: each super-block of 256 is unpacked to 8-bit quants and per-sub-block integer scales
 * (and mins), then dotted with the Q8_K activation; the mins meet the activation's bsums. The
 * bit layouts follow ggml's dequantize_row_q*_K. */

/* Q4_K and Q5_K pack 8 six-bit scales and 8 six-bit mins into 12 bytes. */
static void k4_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Sum over 8 sub-blocks of 32 of sc[s] * (q . x). */
static int32_t k_isum32(const int8_t *q, const int8_t *x, const int *sc)
{
    int32_t isum = 0;
    for (int s = 0; s < 8; s++) {
        int32_t part = 0;
        for (int l = 0; l < 32; l++)
            part += q[s * 32 + l] * x[s * 32 + l];
        isum += sc[s] * part;
    }
    return isum;
}

/* Sum over 16 sub-blocks of 16 of sc[s] * (q . x). */
static int32_t k_isum16(const int8_t *q, const int8_t *x, const int *sc)
{
    int32_t isum = 0;
    for (int s = 0; s < 16; s++) {
        int32_t part = 0;
        for (int l = 0; l < 16; l++)
            part += q[s * 16 + l] * x[s * 16 + l];
        isum += sc[s] * part;
    }
    return isum;
}

float nvl__cpu_dot_q2_K_generic(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q2_K *w = vw;
    const struct nvl_block_q8_K *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / NVL_QK_K; i++) {
        int8_t q[NVL_QK_K];
        int sc[16];
        int32_t msum = 0;
        const uint8_t *qs = w[i].qs;
        for (int half = 0; half < 2; half++, qs += 32)
            for (int shift = 0; shift < 4; shift++)
                for (int l = 0; l < 32; l++)
                    q[half * 128 + shift * 32 + l] = (int8_t)((qs[l] >> (2 * shift)) & 3);
        for (int s = 0; s < 16; s++) {
            sc[s] = w[i].scales[s] & 0x0f;
            msum += (w[i].scales[s] >> 4) * x[i].bsums[s];
        }
        int32_t isum = k_isum16(q, x[i].qs, sc);
        sum += x[i].d *
               (nvl_fp16_to_fp32(w[i].d) * (float)isum - nvl_fp16_to_fp32(w[i].dmin) * (float)msum);
    }
    return sum;
}

float nvl__cpu_dot_q3_K_generic(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q3_K *w = vw;
    const struct nvl_block_q8_K *x = vx;
    const uint32_t kmask1 = 0x03030303u, kmask2 = 0x0f0f0f0fu;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / NVL_QK_K; i++) {
        uint32_t aux[4];
        memcpy(aux, w[i].scales, 12);
        const uint32_t tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        uint8_t sc6[16];
        memcpy(sc6, aux, 16);
        int sc[16];
        for (int s = 0; s < 16; s++)
            sc[s] = (int)sc6[s] - 32;

        int8_t q[NVL_QK_K];
        const uint8_t *qs = w[i].qs;
        const uint8_t *hm = w[i].hmask;
        int bit = 0;
        for (int half = 0; half < 2; half++, qs += 32)
            for (int shift = 0; shift < 4; shift++, bit++)
                for (int l = 0; l < 32; l++)
                    q[half * 128 + shift * 32 + l] =
                        (int8_t)(((qs[l] >> (2 * shift)) & 3) - ((hm[l] >> bit) & 1 ? 0 : 4));
        int32_t isum = k_isum16(q, x[i].qs, sc);
        sum += x[i].d * nvl_fp16_to_fp32(w[i].d) * (float)isum;
    }
    return sum;
}

/* sc[s] * (q . x) of each 32-element sub-block s, split into the eight AVX2 lanes (elements
 * 32s + 4l..4l+3 go to lane l). */
static inline void k_lanes32(const int8_t *q, const int8_t *x, const int *sc, int32_t lanes[8])
{
    for (int l = 0; l < 8; l++)
        lanes[l] = 0;
    for (int s = 0; s < 8; s++)
        for (int l = 0; l < 8; l++) {
            const int8_t *qq = q + 32 * s + 4 * l, *xx = x + 32 * s + 4 * l;
            lanes[l] += sc[s] * (qq[0] * xx[0] + qq[1] * xx[1] + qq[2] * xx[2] + qq[3] * xx[3]);
        }
}

/* Q4_K in nvl__cpu_dot_q4_K_avx2's order: lanes of scaled integer sums, one fused multiply-add
 * per lane and super-block, the mins subtracted in a scalar. */
float nvl__cpu_dot_q4_K_generic(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q4_K *w = vw;
    const struct nvl_block_q8_K *x = vx;
    float acc[8] = {0};
    float mins = 0.0f;
    for (int64_t i = 0; i < n / NVL_QK_K; i++) {
        int8_t q[NVL_QK_K];
        int sc[8], mn[8];
        int32_t msum = 0;
        for (int s = 0; s < 8; s++) {
            k4_scale_min(s, w[i].scales, &sc[s], &mn[s]);
            msum += mn[s] * (x[i].bsums[2 * s] + x[i].bsums[2 * s + 1]);
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                q[c * 64 + l] = (int8_t)(w[i].qs[c * 32 + l] & 0x0f);
                q[c * 64 + 32 + l] = (int8_t)(w[i].qs[c * 32 + l] >> 4);
            }
        int32_t lanes[8];
        k_lanes32(q, x[i].qs, sc, lanes);
        const float d = nvl_fp16_to_fp32(w[i].d) * x[i].d;
        for (int l = 0; l < 8; l++)
            acc[l] = fma_f32(d, (float)lanes[l], acc[l]);
        mins -= nvl_fp16_to_fp32(w[i].dmin) * x[i].d * (float)msum;
    }
    return hsum8(acc) + mins;
}

float nvl__cpu_dot_q5_K_generic(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q5_K *w = vw;
    const struct nvl_block_q8_K *x = vx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / NVL_QK_K; i++) {
        int8_t q[NVL_QK_K];
        int sc[8], mn[8];
        int32_t msum = 0;
        for (int s = 0; s < 8; s++) {
            k4_scale_min(s, w[i].scales, &sc[s], &mn[s]);
            msum += mn[s] * (x[i].bsums[2 * s] + x[i].bsums[2 * s + 1]);
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo_hi = (w[i].qh[l] >> (2 * c)) & 1;
                int hi_hi = (w[i].qh[l] >> (2 * c + 1)) & 1;
                q[c * 64 + l] = (int8_t)((w[i].qs[c * 32 + l] & 0x0f) | (lo_hi << 4));
                q[c * 64 + 32 + l] = (int8_t)((w[i].qs[c * 32 + l] >> 4) | (hi_hi << 4));
            }
        int32_t isum = k_isum32(q, x[i].qs, sc);
        sum += x[i].d *
               (nvl_fp16_to_fp32(w[i].d) * (float)isum - nvl_fp16_to_fp32(w[i].dmin) * (float)msum);
    }
    return sum;
}

/* Q6_K in nvl__cpu_dot_q6_K_avx2's order: the quants unsigned (stored +32), the offset applied
 * through the activation's bsums in a scalar. */
float nvl__cpu_dot_q6_K_generic(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q6_K *w = vw;
    const struct nvl_block_q8_K *x = vx;
    float acc[8] = {0};
    float corr = 0.0f;
    for (int64_t i = 0; i < n / NVL_QK_K; i++) {
        const int8_t *sc = w[i].scales;
        int32_t offset = 0;
        for (int g = 0; g < 16; g++)
            offset += sc[g] * x[i].bsums[g];
        int8_t q[NVL_QK_K];
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = w[i].ql + half * 64;
            const uint8_t *qh = w[i].qh + half * 32;
            int8_t *o = q + half * 128;
            for (int l = 0; l < 32; l++) {
                o[l] = (int8_t)((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4));
                o[l + 32] = (int8_t)((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4));
                o[l + 64] = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                o[l + 96] = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
            }
        }
        /* Lane l of sub-block s takes elements 32s + 4l..4l+3, all in the 16 of scale 2s + l/4. */
        int32_t lanes[8] = {0};
        for (int s = 0; s < 8; s++)
            for (int l = 0; l < 8; l++) {
                const int8_t *qq = q + 32 * s + 4 * l, *xx = x[i].qs + 32 * s + 4 * l;
                lanes[l] += sc[2 * s + l / 4] *
                            (qq[0] * xx[0] + qq[1] * xx[1] + qq[2] * xx[2] + qq[3] * xx[3]);
            }
        const float d = nvl_fp16_to_fp32(w[i].d) * x[i].d;
        for (int l = 0; l < 8; l++)
            acc[l] = fma_f32(d, (float)lanes[l], acc[l]);
        corr -= d * 32.0f * (float)offset;
    }
    return hsum8(acc) + corr;
}

/* ------------------------------------------------------------------------------------------ */
/* Kernel selection */

static struct cpu_type_ops type_ops[NVL_GGML_TYPE_COUNT];
static bool type_ops_valid[NVL_GGML_TYPE_COUNT];
static const char *kernels_name = "generic";
static float (*dot_f32_impl)(const float *, const float *, int64_t) = nvl__cpu_dot_f32_generic;
static float (*dot_f16_impl)(const float *, const uint16_t *, int64_t) = nvl__cpu_dot_f16_generic;
static void (*axpy_f16_impl)(float *, float, const uint16_t *, int64_t) = nvl__cpu_axpy_f16_generic;
static void (*f32_to_f16_impl)(const float *, uint16_t *, int64_t) = nvl__cpu_f32_to_f16_generic;
static pthread_once_t ops_once = PTHREAD_ONCE_INIT;

static void set_ops(enum nvl_ggml_type t, enum cpu_act act, cpu_vec_dot_fn dot)
{
    type_ops[t] = (struct cpu_type_ops){.act = act, .dot = dot};
    type_ops_valid[t] = true;
}

static void ops_select(void)
{
    set_ops(NVL_GGML_TYPE_F32, CPU_ACT_F32, dot_f32_row);
    set_ops(NVL_GGML_TYPE_Q4_0, CPU_ACT_Q8, nvl__cpu_dot_q4_0_generic);
    set_ops(NVL_GGML_TYPE_Q4_1, CPU_ACT_Q8, nvl__cpu_dot_q4_1_generic);
    set_ops(NVL_GGML_TYPE_Q5_0, CPU_ACT_Q8, nvl__cpu_dot_q5_0_generic);
    set_ops(NVL_GGML_TYPE_Q5_1, CPU_ACT_Q8, nvl__cpu_dot_q5_1_generic);
    set_ops(NVL_GGML_TYPE_Q8_0, CPU_ACT_Q8, nvl__cpu_dot_q8_0_generic);
    set_ops(NVL_GGML_TYPE_Q2_K, CPU_ACT_Q8K, nvl__cpu_dot_q2_K_generic);
    set_ops(NVL_GGML_TYPE_Q3_K, CPU_ACT_Q8K, nvl__cpu_dot_q3_K_generic);
    set_ops(NVL_GGML_TYPE_Q4_K, CPU_ACT_Q8K, nvl__cpu_dot_q4_K_generic);
    set_ops(NVL_GGML_TYPE_Q5_K, CPU_ACT_Q8K, nvl__cpu_dot_q5_K_generic);
    set_ops(NVL_GGML_TYPE_Q6_K, CPU_ACT_Q8K, nvl__cpu_dot_q6_K_generic);
    /* Everything else the dequantizer knows goes through fp32 rows. */
    for (int t = 0; t < NVL_GGML_TYPE_COUNT; t++) {
        const struct nvl_ggml_type_traits *tr = nvl_ggml_type_traits((uint32_t)t);
        if (!type_ops_valid[t] && tr && tr->can_dequantize && t != NVL_GGML_TYPE_Q8_K &&
            t != NVL_GGML_TYPE_Q8_1)
            set_ops((enum nvl_ggml_type)t, CPU_ACT_F32, NULL);
    }

#if defined(__x86_64__) && defined(__GNUC__)
    /* NVL_CPU_KERNELS=generic keeps the portable kernels, to test them on an AVX2 machine. */
    const char *want = getenv("NVL_CPU_KERNELS");
    if ((!want || strcmp(want, "generic") != 0) && nvl__cpu_has_avx2()) {
        kernels_name = "avx2";
        dot_f32_impl = nvl__cpu_dot_f32_avx2;
        dot_f16_impl = nvl__cpu_dot_f16_avx2;
        axpy_f16_impl = nvl__cpu_axpy_f16_avx2;
        f32_to_f16_impl = nvl__cpu_f32_to_f16_avx2;
        type_ops[NVL_GGML_TYPE_Q4_0].dot = nvl__cpu_dot_q4_0_avx2;
        type_ops[NVL_GGML_TYPE_Q4_1].dot = nvl__cpu_dot_q4_1_avx2;
        type_ops[NVL_GGML_TYPE_Q5_0].dot = nvl__cpu_dot_q5_0_avx2;
        type_ops[NVL_GGML_TYPE_Q5_1].dot = nvl__cpu_dot_q5_1_avx2;
        type_ops[NVL_GGML_TYPE_Q8_0].dot = nvl__cpu_dot_q8_0_avx2;
        type_ops[NVL_GGML_TYPE_Q4_K].dot = nvl__cpu_dot_q4_K_avx2;
        type_ops[NVL_GGML_TYPE_Q6_K].dot = nvl__cpu_dot_q6_K_avx2;
        type_ops[NVL_GGML_TYPE_Q4_0].dot4 = nvl__cpu_dot4_q4_0_avx2;
        type_ops[NVL_GGML_TYPE_Q4_1].dot4 = nvl__cpu_dot4_q4_1_avx2;
        type_ops[NVL_GGML_TYPE_Q5_0].dot4 = nvl__cpu_dot4_q5_0_avx2;
        type_ops[NVL_GGML_TYPE_Q8_0].dot4 = nvl__cpu_dot4_q8_0_avx2;
    }
#endif
}

bool nvl__cpu_has_avx2(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

void nvl__cpu_ops_init(void)
{
    pthread_once(&ops_once, ops_select);
}

const char *nvl__cpu_ops_kernels(void)
{
    nvl__cpu_ops_init();
    return kernels_name;
}

const struct cpu_type_ops *nvl__cpu_type_ops(enum nvl_ggml_type type)
{
    nvl__cpu_ops_init();
    if ((unsigned)type >= NVL_GGML_TYPE_COUNT || !type_ops_valid[type])
        return NULL;
    return &type_ops[type];
}

float nvl__cpu_dot_f32(const float *a, const float *b, int64_t n)
{
    return dot_f32_impl(a, b, n);
}

float nvl__cpu_dot_f16(const float *a, const uint16_t *b, int64_t n)
{
    return dot_f16_impl(a, b, n);
}

void nvl__cpu_axpy_f16(float *y, float a, const uint16_t *x, int64_t n)
{
    axpy_f16_impl(y, a, x, n);
}

void nvl__cpu_axpy_f32(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

void nvl__cpu_f32_to_f16(const float *x, uint16_t *y, int64_t n)
{
    f32_to_f16_impl(x, y, n);
}

/* ------------------------------------------------------------------------------------------ */
/* Matrix product */

#define MATMUL_PREFETCH_BYTES 1536

void nvl__cpu_matmul_rows(const struct cpu_matmul *mm, int64_t r0, int64_t r1, float *scratch)
{
    const struct cpu_type_ops *ops = nvl__cpu_type_ops(mm->w_type);
    const uint8_t *w = (const uint8_t *)mm->w + (uint64_t)r0 * mm->w_row_bytes;
    const uint8_t *x = mm->x;
    /* Weights stream from memory once per token. The hardware prefetchers alone leave the loads
     * waiting (they stop at page boundaries and, under a hypervisor, often do less): prefetching
     * the row about MATMUL_PREFETCH_BYTES ahead measured 3.5x faster on Q4_1 rows of 576. */
    int64_t ahead = (int64_t)((MATMUL_PREFETCH_BYTES + mm->w_row_bytes - 1) / mm->w_row_bytes);
    for (int64_t r = r0; r < r1; r++, w += mm->w_row_bytes) {
        if (r + ahead < mm->rows) {
            const uint8_t *next = w + (uint64_t)ahead * mm->w_row_bytes;
            for (uint64_t off = 0; off < mm->w_row_bytes; off += 64)
                __builtin_prefetch(next + off, 0, 0);
        }
        const void *row = w;
        cpu_vec_dot_fn dot = ops->dot;
        if (mm->dequantize && mm->w_type != NVL_GGML_TYPE_F32)
            dot = NULL;
        if (!dot) {
            /* Cannot fail: load accepted only types the dequantizer supports, with rows that are
             * whole blocks. */
            nvl_dequantize_row(mm->w_type, w, scratch, mm->k);
            row = scratch;
            dot = dot_f32_row;
        }
        int32_t t = 0;
        if (dot == ops->dot && ops->dot4) {
            for (; t + 4 <= mm->n_tok; t += 4) {
                float v[4];
                ops->dot4(row, x + (size_t)t * mm->x_stride, mm->x_stride, mm->k, v);
                for (int j = 0; j < 4; j++) {
                    float *y = &mm->y[(size_t)(t + j) * mm->y_stride + (size_t)r];
                    *y = mm->accumulate ? *y + v[j] : v[j];
                }
            }
        }
        for (; t < mm->n_tok; t++) {
            float v = dot(row, x + (size_t)t * mm->x_stride, mm->k);
            float *y = &mm->y[(size_t)t * mm->y_stride + (size_t)r];
            *y = mm->accumulate ? *y + v : v;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Vector operations */

void nvl__cpu_rmsnorm(float *y, const float *x, const float *g, int64_t n, float eps)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * scale * g[i];
}

void nvl__cpu_softmax(float *x, int64_t n)
{
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        max = fmaxf(max, x[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

void nvl__cpu_swiglu(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
