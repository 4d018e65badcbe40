/* AVX2/FMA/F16C kernels, selected at run time by cpu_ops.c when the CPU has all three. Each
 * function carries its own target attribute, so the rest of the library stays baseline x86-64.
 *
 * Integer dot products use vpmaddubsw (u8 x s8 -> s16 pairs) and vpmaddwd (-> s32). The weight
 * quants are unsigned (the offset -8/-16/-32 or min is applied per block through the activation's
 * sums), the activations are in [-127, 127], so no s16 pair sum can saturate: at most
 * 2 * 63 * 127 = 16002.
 *
 * The portable kernels in cpu_ops.c reproduce every float operation here in the same order (lanes,
 * fused multiply-adds, horizontal sums, scalar corrections), so a change to the arithmetic of a
 * kernel here must be made there too; test_llama_cpu_ops compares the two bit for bit. */
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_ops_impl.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

static inline AVX2 float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline AVX2 float f16(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* The fp16 pair at p (Q4_1/Q5_1's d and m) as floats, with one conversion. */
static inline AVX2 __m128 f16x2(const uint16_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)v));
}

/* 16 bytes of packed nibbles -> 32 bytes: low nibbles first (elements 0-15), then high. */
static inline AVX2 __m256i nibbles32(const uint8_t *qs)
{
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

/* Bit j of a 32-bit word -> byte j = 0xff or 0 (ggml's bytes_from_bits_32). */
static inline AVX2 __m256i bits32(const uint8_t *p)
{
    uint32_t x;
    memcpy(&x, p, sizeof(x));
    const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                            0x0202020202020202, 0x0303030303030303);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

/* Unsigned bytes times signed bytes, summed into 8 s32 lanes. */
static inline AVX2 __m256i dot_u8s8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

float nvl__cpu_dot_f32_avx2(const float *a, const float *b, int64_t n) AVX2;
float nvl__cpu_dot_f32_avx2(const float *a, const float *b, int64_t n)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

float nvl__cpu_dot_f16_avx2(const float *a, const uint16_t *b, int64_t n) AVX2;
float nvl__cpu_dot_f16_avx2(const float *a, const uint16_t *b, int64_t n)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 b0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i)));
        __m256 b1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8)));
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), b0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), b1, acc1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 b0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i)));
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), b0, acc0);
    }
    float sum = hsum_ps(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++)
        sum += a[i] * f16(b[i]);
    return sum;
}

void nvl__cpu_axpy_f16_avx2(float *y, float a, const uint16_t *x, int64_t n) AVX2;
void nvl__cpu_axpy_f16_avx2(float *y, float a, const uint16_t *x, int64_t n)
{
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 vx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, vx, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++)
        y[i] += a * f16(x[i]);
}

void nvl__cpu_f32_to_f16_avx2(const float *x, uint16_t *y, int64_t n) AVX2;
void nvl__cpu_f32_to_f16_avx2(const float *x, uint16_t *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

float nvl__cpu_dot_q4_0_avx2(const void *vw, const void *vx, int64_t n) AVX2;
float nvl__cpu_dot_q4_0_avx2(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q4_0 *w = vw;
    const struct cpu_block_q8 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        const float d = f16(w[i].d) * x[i].d;
        const __m256i p = dot_u8s8(nibbles32(w[i].qs), _mm256_loadu_si256((const void *)x[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
        corr += f16(w[i].d) * x[i].s;
    }
    return hsum_ps(acc) - 8.0f * corr;
}

float nvl__cpu_dot_q4_1_avx2(const void *vw, const void *vx, int64_t n) AVX2;
float nvl__cpu_dot_q4_1_avx2(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q4_1 *w = vw;
    const struct cpu_block_q8 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        const __m128 dm = f16x2(&w[i].d);
        const float d = _mm_cvtss_f32(dm) * x[i].d;
        const __m256i p = dot_u8s8(nibbles32(w[i].qs), _mm256_loadu_si256((const void *)x[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
        mins += _mm_cvtss_f32(_mm_movehdup_ps(dm)) * x[i].s;
    }
    return hsum_ps(acc) + mins;
}

float nvl__cpu_dot_q5_0_avx2(const void *vw, const void *vx, int64_t n) AVX2;
float nvl__cpu_dot_q5_0_avx2(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q5_0 *w = vw;
    const struct cpu_block_q8 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        const float d = f16(w[i].d) * x[i].d;
        const __m256i hi = _mm256_and_si256(bits32(w[i].qh), _mm256_set1_epi8(0x10));
        const __m256i q = _mm256_or_si256(nibbles32(w[i].qs), hi);
        const __m256i p = dot_u8s8(q, _mm256_loadu_si256((const void *)x[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
        corr += f16(w[i].d) * x[i].s;
    }
    return hsum_ps(acc) - 16.0f * corr;
}

float nvl__cpu_dot_q5_1_avx2(const void *vw, const void *vx, int64_t n) AVX2;
float nvl__cpu_dot_q5_1_avx2(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q5_1 *w = vw;
    const struct cpu_block_q8 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        const __m128 dm = f16x2(&w[i].d);
        const float d = _mm_cvtss_f32(dm) * x[i].d;
        const __m256i hi = _mm256_and_si256(bits32(w[i].qh), _mm256_set1_epi8(0x10));
        const __m256i q = _mm256_or_si256(nibbles32(w[i].qs), hi);
        const __m256i p = dot_u8s8(q, _mm256_loadu_si256((const void *)x[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
        mins += _mm_cvtss_f32(_mm_movehdup_ps(dm)) * x[i].s;
    }
    return hsum_ps(acc) + mins;
}

float nvl__cpu_dot_q8_0_avx2(const void *vw, const void *vx, int64_t n) AVX2;
float nvl__cpu_dot_q8_0_avx2(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q8_0 *w = vw;
    const struct cpu_block_q8 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        const float d = f16(w[i].d) * x[i].d;
        const __m256i a = _mm256_loadu_si256((const void *)w[i].qs);
        const __m256i b = _mm256_loadu_si256((const void *)x[i].qs);
        /* |a| * (b with a's sign): a signed product through the unsigned-by-signed instruction.
         * A weight of -128 would give |a| = 128 as an unsigned byte, which is still exact. */
        const __m256i p = dot_u8s8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum_ps(acc);
}

float nvl__cpu_dot_q4_K_avx2(const void *vw, const void *vx, int64_t n) AVX2;
float nvl__cpu_dot_q4_K_avx2(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q4_K *w = vw;
    const struct nvl_block_q8_K *x = vx;
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t i = 0; i < n / NVL_QK_K; i++) {
        const uint8_t *s = w[i].scales;
        int16_t sc[8];
        int32_t msum = 0;
        for (int j = 0; j < 8; j++) {
            int scale, m;
            if (j < 4) {
                scale = s[j] & 63;
                m = s[j + 4] & 63;
            } else {
                scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
                m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
            }
            sc[j] = (int16_t)scale;
            msum += m * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        }
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i q = _mm256_loadu_si256((const void *)(w[i].qs + 32 * c));
            const __m256i qlo = _mm256_and_si256(q, low);
            const __m256i qhi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
            const __m256i xlo = _mm256_loadu_si256((const void *)(x[i].qs + 64 * c));
            const __m256i xhi = _mm256_loadu_si256((const void *)(x[i].qs + 64 * c + 32));
            const __m256i plo =
                _mm256_madd_epi16(_mm256_maddubs_epi16(qlo, xlo), _mm256_set1_epi16(sc[2 * c]));
            const __m256i phi =
                _mm256_madd_epi16(_mm256_maddubs_epi16(qhi, xhi), _mm256_set1_epi16(sc[2 * c + 1]));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(plo, phi));
        }
        const float d = f16(w[i].d) * x[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
        mins -= f16(w[i].dmin) * x[i].d * (float)msum;
    }
    return hsum_ps(acc) + mins;
}

float nvl__cpu_dot_q6_K_avx2(const void *vw, const void *vx, int64_t n) AVX2;
float nvl__cpu_dot_q6_K_avx2(const void *vw, const void *vx, int64_t n)
{
    const struct nvl_block_q6_K *w = vw;
    const struct nvl_block_q8_K *x = vx;
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i two = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.0f;
    for (int64_t i = 0; i < n / NVL_QK_K; i++) {
        const int8_t *sc = w[i].scales;
        /* The quants are stored +32: sum (q - 32) x = sum q x - 32 sum x, and the sums of x per
         * 16 are the activation's bsums. */
        int32_t offset = 0;
        for (int g = 0; g < 16; g++)
            offset += sc[g] * x[i].bsums[g];
        __m256i isum = _mm256_setzero_si256();
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = w[i].ql + 64 * half;
            const uint8_t *qh = w[i].qh + 32 * half;
            const int8_t *xs = x[i].qs + 128 * half;
            const int8_t *scs = sc + 8 * half;
            const __m256i l0 = _mm256_loadu_si256((const void *)ql);
            const __m256i l1 = _mm256_loadu_si256((const void *)(ql + 32));
            const __m256i h = _mm256_loadu_si256((const void *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, low),
                                   _mm256_slli_epi16(_mm256_and_si256(h, two), 4));
            q[1] = _mm256_or_si256(
                _mm256_and_si256(l1, low),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), two), 4));
            q[2] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l0, 4), low),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), two), 4));
            q[3] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l1, 4), low),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), two), 4));
            for (int k = 0; k < 4; k++) {
                const __m256i xv = _mm256_loadu_si256((const void *)(xs + 32 * k));
                /* Lanes 0-7 of the s16 products are the first 16 elements (scale 2k), lanes
                 * 8-15 the next 16 (scale 2k + 1). */
                const __m256i s =
                    _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(scs[2 * k])),
                                            _mm_set1_epi16(scs[2 * k + 1]), 1);
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], xv), s));
            }
        }
        const float d = f16(w[i].d) * x[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
        corr -= d * 32.0f * (float)offset;
    }
    return hsum_ps(acc) + corr;
}

/* Four activation rows against one weight row: the weight block is unpacked once and used four
 * times, which is what makes prompt processing cheaper per token than decoding. The arithmetic
 * per row is exactly that of the one-row kernels above, in the same order, so results do not
 * depend on how tokens are grouped into batches. The four rows are spelled out (DOT4_STEP) so
 * that the accumulators stay in registers. */
#define DOT4_ROWS(vx, stride)                                                                      \
    const struct cpu_block_q8 *x0 = (const struct cpu_block_q8 *)(vx);                             \
    const struct cpu_block_q8 *x1 =                                                                \
        (const struct cpu_block_q8 *)((const uint8_t *)(vx) + (stride));                           \
    const struct cpu_block_q8 *x2 =                                                                \
        (const struct cpu_block_q8 *)((const uint8_t *)(vx) + 2 * (stride));                       \
    const struct cpu_block_q8 *x3 =                                                                \
        (const struct cpu_block_q8 *)((const uint8_t *)(vx) + 3 * (stride));                       \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                                 \
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();                                 \
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f

#define DOT4_OUT(out)                                                                              \
    do {                                                                                           \
        (out)[0] = hsum_ps(acc0) + s0;                                                             \
        (out)[1] = hsum_ps(acc1) + s1;                                                             \
        (out)[2] = hsum_ps(acc2) + s2;                                                             \
        (out)[3] = hsum_ps(acc3) + s3;                                                             \
    } while (0)

/* One row of the offset formats (Q4_0: 8, Q5_0: 16) as in the one-row kernels: acc += d * (q . x),
 * s += dw * x.s; the offset times s is subtracted at the end. */
#define DOT4_STEP_OFFSET(q, dw, xb, acc, sacc)                                                     \
    do {                                                                                           \
        const float d_ = (dw) * (xb).d;                                                            \
        const __m256i p_ = dot_u8s8((q), _mm256_loadu_si256((const void *)(xb).qs));               \
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d_), _mm256_cvtepi32_ps(p_), acc);                    \
        sacc += (dw) * (xb).s;                                                                     \
    } while (0)

#define DOT4_OUT_OFFSET(out, off)                                                                  \
    do {                                                                                           \
        (out)[0] = hsum_ps(acc0) - (off)*s0;                                                       \
        (out)[1] = hsum_ps(acc1) - (off)*s1;                                                       \
        (out)[2] = hsum_ps(acc2) - (off)*s2;                                                       \
        (out)[3] = hsum_ps(acc3) - (off)*s3;                                                       \
    } while (0)

void nvl__cpu_dot4_q4_0_avx2(const void *vw, const void *vx, size_t stride, int64_t n,
                             float *out) AVX2;
void nvl__cpu_dot4_q4_0_avx2(const void *vw, const void *vx, size_t stride, int64_t n, float *out)
{
    const struct nvl_block_q4_0 *w = vw;
    DOT4_ROWS(vx, stride);
    for (int64_t i = 0; i < n / 32; i++) {
        const float dw = f16(w[i].d);
        const __m256i q = nibbles32(w[i].qs);
        DOT4_STEP_OFFSET(q, dw, x0[i], acc0, s0);
        DOT4_STEP_OFFSET(q, dw, x1[i], acc1, s1);
        DOT4_STEP_OFFSET(q, dw, x2[i], acc2, s2);
        DOT4_STEP_OFFSET(q, dw, x3[i], acc3, s3);
    }
    DOT4_OUT_OFFSET(out, 8.0f);
}

void nvl__cpu_dot4_q5_0_avx2(const void *vw, const void *vx, size_t stride, int64_t n,
                             float *out) AVX2;
void nvl__cpu_dot4_q5_0_avx2(const void *vw, const void *vx, size_t stride, int64_t n, float *out)
{
    const struct nvl_block_q5_0 *w = vw;
    DOT4_ROWS(vx, stride);
    for (int64_t i = 0; i < n / 32; i++) {
        const float dw = f16(w[i].d);
        const __m256i hi = _mm256_and_si256(bits32(w[i].qh), _mm256_set1_epi8(0x10));
        const __m256i q = _mm256_or_si256(nibbles32(w[i].qs), hi);
        DOT4_STEP_OFFSET(q, dw, x0[i], acc0, s0);
        DOT4_STEP_OFFSET(q, dw, x1[i], acc1, s1);
        DOT4_STEP_OFFSET(q, dw, x2[i], acc2, s2);
        DOT4_STEP_OFFSET(q, dw, x3[i], acc3, s3);
    }
    DOT4_OUT_OFFSET(out, 16.0f);
}

/* One row of Q4_1: acc += d * (q . x), s += m * x.s. */
#define DOT4_STEP_MIN(q, dw, mw, xb, acc, sacc)                                                    \
    do {                                                                                           \
        const float d_ = (dw) * (xb).d;                                                            \
        const __m256i p_ = dot_u8s8((q), _mm256_loadu_si256((const void *)(xb).qs));               \
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d_), _mm256_cvtepi32_ps(p_), acc);                    \
        sacc += (mw) * (xb).s;                                                                     \
    } while (0)

void nvl__cpu_dot4_q4_1_avx2(const void *vw, const void *vx, size_t stride, int64_t n,
                             float *out) AVX2;
void nvl__cpu_dot4_q4_1_avx2(const void *vw, const void *vx, size_t stride, int64_t n, float *out)
{
    const struct nvl_block_q4_1 *w = vw;
    DOT4_ROWS(vx, stride);
    for (int64_t i = 0; i < n / 32; i++) {
        const __m128 dm = f16x2(&w[i].d);
        const float dw = _mm_cvtss_f32(dm), mw = _mm_cvtss_f32(_mm_movehdup_ps(dm));
        const __m256i q = nibbles32(w[i].qs);
        DOT4_STEP_MIN(q, dw, mw, x0[i], acc0, s0);
        DOT4_STEP_MIN(q, dw, mw, x1[i], acc1, s1);
        DOT4_STEP_MIN(q, dw, mw, x2[i], acc2, s2);
        DOT4_STEP_MIN(q, dw, mw, x3[i], acc3, s3);
    }
    DOT4_OUT(out);
}

/* One row of Q8_0: signed bytes through the sign trick of nvl__cpu_dot_q8_0_avx2. */
#define DOT4_STEP_Q8(ua, a, dw, xb, acc)                                                           \
    do {                                                                                           \
        const float d_ = (dw) * (xb).d;                                                            \
        const __m256i b_ = _mm256_loadu_si256((const void *)(xb).qs);                              \
        const __m256i p_ = dot_u8s8((ua), _mm256_sign_epi8(b_, (a)));                              \
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d_), _mm256_cvtepi32_ps(p_), acc);                    \
    } while (0)

void nvl__cpu_dot4_q8_0_avx2(const void *vw, const void *vx, size_t stride, int64_t n,
                             float *out) AVX2;
void nvl__cpu_dot4_q8_0_avx2(const void *vw, const void *vx, size_t stride, int64_t n, float *out)
{
    const struct nvl_block_q8_0 *w = vw;
    DOT4_ROWS(vx, stride);
    for (int64_t i = 0; i < n / 32; i++) {
        const float dw = f16(w[i].d);
        const __m256i a = _mm256_loadu_si256((const void *)w[i].qs);
        const __m256i ua = _mm256_sign_epi8(a, a);
        DOT4_STEP_Q8(ua, a, dw, x0[i], acc0);
        DOT4_STEP_Q8(ua, a, dw, x1[i], acc1);
        DOT4_STEP_Q8(ua, a, dw, x2[i], acc2);
        DOT4_STEP_Q8(ua, a, dw, x3[i], acc3);
    }
    (void)s0, (void)s1, (void)s2, (void)s3;
    out[0] = hsum_ps(acc0);
    out[1] = hsum_ps(acc1);
    out[2] = hsum_ps(acc2);
    out[3] = hsum_ps(acc3);
}

#endif
