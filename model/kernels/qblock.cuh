/* Block arithmetic of the quantized formats for the GPU kernels (private, CUDA C++).
 *
 * Everything here is __host__ __device__, so tests/kernels can check it on a machine without a
 * GPU against the CPU backend's dot products and nvl_dequantize_row().
 *
 * Matrix-vector products (matvec.cu) stage a row's weight blocks in shared memory and give each
 * thread a *unit* of whole blocks, loaded into registers: on the fast path 8 Q4_0 blocks = 144 B,
 * 4 Q4_1 = 80 B, 8 Q5_0 = 176 B, 2 Q5_1 = 48 B, 4 Q8_0 = 136 B, one Q2_K = 84 B, one Q3_K =
 * 110 B, one Q4_K = 144 B, one Q5_K = 176 B, one Q6_K = 210 B (Q3_K and Q6_K are only 2-byte
 * aligned: aligned words and funnel shifts), 8 plain elements. The unit then sits in a register
 * array w[], and the block functions below read its fields at byte offsets that are compile-time
 * constants once the loops are unrolled, so the array never leaves registers. Activations (struct
 * nvl_k_block_q8 or nvl_block_q8_K) are read with plain loads: from shared memory on the GPU, where
 * matvec.cu stages them. */
#ifndef NVL_MODEL_QBLOCK_CUH
#define NVL_MODEL_QBLOCK_CUH

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define K_HD __host__ __device__ __forceinline__
#else
#define K_HD inline
#endif
/* Loop unrolling for the device pass only (the host compiler does not know the pragma). */
#if defined(__CUDA_ARCH__)
#define K_UNROLL _Pragma("unroll")
#else
#define K_UNROLL
#endif

#include "kernels.h"

/* ------------------------------------------------------------------------------------------ */
/* Scalar helpers */

static K_HD int k_dp4a(int a, int b, int c)
{
#if defined(__CUDA_ARCH__)
    return __dp4a(a, b, c);
#else
    for (int i = 0; i < 4; i++)
        c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
#endif
}

/* c + the dot of a's four unsigned bytes with b's four signed ones. With a = q & 0xf0f0f0f0 it
 * gives 16 times the dot of q's high nibbles without shifting them down first (one instruction a
 * word fewer); the caller shifts the exact multiple of 16 back once. */
static K_HD int k_dp4a_us(uint32_t a, int b, int c)
{
#if defined(__CUDA_ARCH__)
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
#else
    for (int i = 0; i < 4; i++)
        c += (int)(uint8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
#endif
}

static K_HD float k_h2f(uint32_t h)
{
#if defined(__CUDA_ARCH__)
    return __half2float(__ushort_as_half((unsigned short)h));
#else
    return nvl_fp16_to_fp32((uint16_t)h);
#endif
}

/* Reads of the register array w at byte offset off (off even; constant after unrolling). */
static K_HD uint32_t k_w32(const uint32_t *w, int off)
{
    const int i = off >> 2;
    return (off & 2) ? ((w[i] >> 16) | (w[i + 1] << 16)) : w[i];
}

static K_HD uint32_t k_w16(const uint32_t *w, int off)
{
    return (w[off >> 2] >> (8 * (off & 3))) & 0xffffu;
}

static K_HD uint32_t k_w8(const uint32_t *w, int off)
{
    return (w[off >> 2] >> (8 * (off & 3))) & 0xffu;
}

/* Loads from activation memory (4-byte aligned; global or shared memory on the GPU). */
static K_HD int k_ld32(const uint8_t *p)
{
#if defined(__CUDA_ARCH__)
    return *(const int *)p;
#else
    int v;
    memcpy(&v, p, sizeof(v));
    return v;
#endif
}

static K_HD float k_ldf(const uint8_t *p)
{
#if defined(__CUDA_ARCH__)
    return *(const float *)p;
#else
    float v;
    memcpy(&v, p, sizeof(v));
    return v;
#endif
}

/* The 32 quants of a struct nvl_k_block_q8 (8-byte aligned) as 8 words, with 8-byte loads: half
 * the load instructions of word loads, and without bank conflicts when the lanes of a warp read
 * consecutive 40-byte blocks from shared memory. */
static K_HD void k_ld_q8(const uint8_t *xb, int *xq)
{
#if defined(__CUDA_ARCH__)
    K_UNROLL
    for (int i = 0; i < 4; i++) {
        const int2 v = *(const int2 *)(xb + 8 + 8 * i);
        xq[2 * i] = v.x;
        xq[2 * i + 1] = v.y;
    }
#else
    memcpy(xq, xb + 8, 32);
#endif
}

/* The scale and quant sum of a struct nvl_k_block_q8 (8-byte aligned) with one 8-byte load. */
static K_HD void k_ld_q8_head(const uint8_t *xb, float *d, int *sum)
{
#if defined(__CUDA_ARCH__)
    const int2 v = *(const int2 *)xb;
    *d = __int_as_float(v.x);
    *sum = v.y;
#else
    memcpy(d, xb, sizeof(*d));
    memcpy(sum, xb + 4, sizeof(*sum));
#endif
}

/* Fifth bits of four elements (bits 0..3 of t) moved to bit 4 of each byte. */
static K_HD uint32_t k_spread4(uint32_t t)
{
    return ((t & 1u) << 4) | ((t & 2u) << 11) | ((t & 4u) << 18) | ((t & 8u) << 25);
}

/* ------------------------------------------------------------------------------------------ */
/* Per-type constants */

/* The weight types of the GPU kernels, by the suffix of their NVL_GGML_TYPE_ name: the one list
 * that every per-type dispatch (matvec.cu, dequant.cu, kernels_common.cu) expands, so that a
 * type added here with its k_type below reaches all of them. */
#define K_QUANT_TYPES(X)                                                                           \
    X(Q4_0) X(Q4_1) X(Q5_0) X(Q5_1) X(Q8_0) X(Q2_K) X(Q3_K) X(Q4_K) X(Q5_K) X(Q6_K)
#define K_PLAIN_TYPES(X) X(F32) X(F16) X(BF16)

template <int T> struct k_type;
template <> struct k_type<NVL_GGML_TYPE_Q4_0> {
    static constexpr int block_bytes = 18, block_elems = 32, fast_blocks = 8;
    static constexpr int act = NVL_K_ACT_Q8;
};
template <> struct k_type<NVL_GGML_TYPE_Q4_1> {
    static constexpr int block_bytes = 20, block_elems = 32, fast_blocks = 4;
    static constexpr int act = NVL_K_ACT_Q8;
};
template <> struct k_type<NVL_GGML_TYPE_Q5_0> {
    static constexpr int block_bytes = 22, block_elems = 32, fast_blocks = 8;
    static constexpr int act = NVL_K_ACT_Q8;
};
template <> struct k_type<NVL_GGML_TYPE_Q5_1> {
    static constexpr int block_bytes = 24, block_elems = 32, fast_blocks = 2;
    static constexpr int act = NVL_K_ACT_Q8;
};
template <> struct k_type<NVL_GGML_TYPE_Q8_0> {
    static constexpr int block_bytes = 34, block_elems = 32, fast_blocks = 8;
    static constexpr int act = NVL_K_ACT_Q8;
};
template <> struct k_type<NVL_GGML_TYPE_Q2_K> {
    static constexpr int block_bytes = 84, block_elems = 256, fast_blocks = 1;
    static constexpr int act = NVL_K_ACT_Q8K;
};
template <> struct k_type<NVL_GGML_TYPE_Q3_K> {
    static constexpr int block_bytes = 110, block_elems = 256, fast_blocks = 1;
    static constexpr int act = NVL_K_ACT_Q8K;
};
template <> struct k_type<NVL_GGML_TYPE_Q4_K> {
    static constexpr int block_bytes = 144, block_elems = 256, fast_blocks = 1;
    static constexpr int act = NVL_K_ACT_Q8K;
};
template <> struct k_type<NVL_GGML_TYPE_Q5_K> {
    static constexpr int block_bytes = 176, block_elems = 256, fast_blocks = 1;
    static constexpr int act = NVL_K_ACT_Q8K;
};
template <> struct k_type<NVL_GGML_TYPE_Q6_K> {
    static constexpr int block_bytes = 210, block_elems = 256, fast_blocks = 1;
    static constexpr int act = NVL_K_ACT_Q8K;
};
/* Plain types: a "block" is one element; the fast unit is 8 elements. */
template <> struct k_type<NVL_GGML_TYPE_F16> {
    static constexpr int block_bytes = 2, block_elems = 1, fast_blocks = 8;
    static constexpr int act = NVL_K_ACT_F32;
};
template <> struct k_type<NVL_GGML_TYPE_BF16> {
    static constexpr int block_bytes = 2, block_elems = 1, fast_blocks = 8;
    static constexpr int act = NVL_K_ACT_F32;
};
template <> struct k_type<NVL_GGML_TYPE_F32> {
    static constexpr int block_bytes = 4, block_elems = 1, fast_blocks = 8;
    static constexpr int act = NVL_K_ACT_F32;
};

/* Bytes of the activation that one weight block meets. */
template <int A> struct k_act_size;
template <> struct k_act_size<NVL_K_ACT_F32> {
    static constexpr int value = (int)sizeof(float);
};
template <> struct k_act_size<NVL_K_ACT_Q8> {
    static constexpr int value = (int)sizeof(struct nvl_k_block_q8);
};
template <> struct k_act_size<NVL_K_ACT_Q8K> {
    static constexpr int value = (int)sizeof(struct nvl_block_q8_K);
};
#define K_ACT_BLOCK_BYTES(T) (k_act_size<k_type<T>::act>::value)

/* ------------------------------------------------------------------------------------------ */
/* One weight block (at byte `off` of w) dotted with its activation block xb, as the CPU computes
 * it: exact integer sums, then the CPU's float expression for the block's contribution. */

/* The integer dot of a block's 16 bytes of 4-bit quants (at qs_off of w: low nibbles elements
 * 0-15, high nibbles 16-31) with its q8 activations; the high nibbles are dotted in place
 * (k_dp4a_us) and the exact multiple of 16 shifted back once. */
static K_HD int k_isum_q4(const uint32_t *w, int qs_off, const uint8_t *xb)
{
    int xq[8];
    k_ld_q8(xb, xq);
    int isum = 0, hsum = 0;
    K_UNROLL
    for (int i = 0; i < 4; i++) {
        const uint32_t q = k_w32(w, qs_off + 4 * i);
        isum = k_dp4a((int)(q & 0x0f0f0f0fu), xq[i], isum);
        hsum = k_dp4a_us(q & 0xf0f0f0f0u, xq[4 + i], hsum);
    }
    return isum + (hsum >> 4);
}

static K_HD float k_dot_q4_0(const uint32_t *w, int off, const uint8_t *xb)
{
    const int isum = k_isum_q4(w, off + 2, xb);
    float xd;
    int xsum;
    k_ld_q8_head(xb, &xd, &xsum);
    return k_h2f(k_w16(w, off)) * xd * (float)(isum - 8 * xsum);
}

static K_HD float k_dot_q4_1(const uint32_t *w, int off, const uint8_t *xb)
{
    const int isum = k_isum_q4(w, off + 4, xb);
    float xd;
    int xsum;
    k_ld_q8_head(xb, &xd, &xsum);
    return xd * (k_h2f(k_w16(w, off)) * (float)isum + k_h2f(k_w16(w, off + 2)) * (float)xsum);
}

static K_HD int k_isum_q5(const uint32_t *w, int qh_off, int qs_off, const uint8_t *xb)
{
    const uint32_t qh = k_w32(w, qh_off);
    int xq[8];
    k_ld_q8(xb, xq);
    int isum = 0;
    K_UNROLL
    for (int i = 0; i < 4; i++) {
        const uint32_t q = k_w32(w, qs_off + 4 * i);
        const uint32_t lo = (q & 0x0f0f0f0fu) | k_spread4((qh >> (4 * i)) & 15u);
        const uint32_t hi = ((q >> 4) & 0x0f0f0f0fu) | k_spread4((qh >> (16 + 4 * i)) & 15u);
        isum = k_dp4a((int)lo, xq[i], isum);
        isum = k_dp4a((int)hi, xq[4 + i], isum);
    }
    return isum;
}

static K_HD float k_dot_q5_0(const uint32_t *w, int off, const uint8_t *xb)
{
    const int isum = k_isum_q5(w, off + 2, off + 6, xb);
    float xd;
    int xsum;
    k_ld_q8_head(xb, &xd, &xsum);
    return k_h2f(k_w16(w, off)) * xd * (float)(isum - 16 * xsum);
}

static K_HD float k_dot_q5_1(const uint32_t *w, int off, const uint8_t *xb)
{
    const int isum = k_isum_q5(w, off + 4, off + 8, xb);
    float xd;
    int xsum;
    k_ld_q8_head(xb, &xd, &xsum);
    return xd * (k_h2f(k_w16(w, off)) * (float)isum + k_h2f(k_w16(w, off + 2)) * (float)xsum);
}

static K_HD float k_dot_q8_0(const uint32_t *w, int off, const uint8_t *xb)
{
    int xq[8];
    k_ld_q8(xb, xq);
    int isum = 0;
    K_UNROLL
    for (int i = 0; i < 8; i++)
        isum = k_dp4a((int)k_w32(w, off + 2 + 4 * i), xq[i], isum);
    return k_h2f(k_w16(w, off)) * k_ldf(xb) * (float)isum;
}

/* Q8_K activation fields: d at 0, qs at 4, bsums (int16) at 260. */
#define K_Q8K_QS    4
#define K_Q8K_BSUMS 260

/* bsums[2s] + bsums[2s + 1]: one aligned 4-byte word. */
static K_HD int k_bsum_pair(const uint8_t *xb, int s)
{
    const int v = k_ld32(xb + K_Q8K_BSUMS + 4 * s);
    return (int)(int16_t)(v & 0xffff) + (v >> 16);
}

static K_HD int k_bsum(const uint8_t *xb, int g)
{
    const int v = k_ld32(xb + K_Q8K_BSUMS + 4 * (g >> 1));
    return (g & 1) ? (v >> 16) : (int)(int16_t)(v & 0xffff);
}

/* Q2_K and Q3_K hold 2-bit quants as ggml lays them out: byte l of the 32-byte half h carries
 * elements 128h + 32sh + l in its bit pairs sh = 0..3, so word i of the half gives, for each sh,
 * four consecutive elements of 16-element sub-block 8h + 2sh + i / 4. part[s] collects the
 * integer dot of sub-block s; q3 adds Q3_K's high bits (hmask bit 4h + sh of byte l, at byte 0
 * of the block) as bit 2 of each quant, so the quants are unsigned (q + 4 for Q3_K's q in
 * [-4, 3]) and the offset meets the activation's per-16 sums afterwards. */
template <bool Q3> static K_HD void k_parts_q23(const uint32_t *w, const uint8_t *xb, int *part)
{
    constexpr int qs_off = Q3 ? 32 : 16;
    K_UNROLL
    for (int s = 0; s < 16; s++)
        part[s] = 0;
    K_UNROLL
    for (int h = 0; h < 2; h++) {
        K_UNROLL
        for (int i = 0; i < 8; i++) {
            const uint32_t q = k_w32(w, qs_off + 32 * h + 4 * i);
            const uint32_t hm = Q3 ? k_w32(w, 4 * i) : 0u;
            K_UNROLL
            for (int sh = 0; sh < 4; sh++) {
                uint32_t v = (q >> (2 * sh)) & 0x03030303u;
                if (Q3)
                    v |= ((hm >> (4 * h + sh)) & 0x01010101u) << 2;
                const int s = 8 * h + 2 * sh + (i >> 2);
                part[s] =
                    k_dp4a((int)v, k_ld32(xb + K_Q8K_QS + 128 * h + 32 * sh + 4 * i), part[s]);
            }
        }
    }
}

/* Q2_K block (at byte 0 of w): 4-bit scale and min per sub-block at 0, qs at 16, d at 80, dmin
 * at 82. */
static K_HD float k_dot_q2_K(const uint32_t *w, const uint8_t *xb)
{
    int part[16];
    k_parts_q23<false>(w, xb, part);
    int isum = 0, msum = 0;
    K_UNROLL
    for (int s = 0; s < 16; s++) {
        const int sc = (int)k_w8(w, s);
        isum += (sc & 15) * part[s];
        msum += (sc >> 4) * k_bsum(xb, s);
    }
    return k_ldf(xb) * (k_h2f(k_w16(w, 80)) * (float)isum - k_h2f(k_w16(w, 82)) * (float)msum);
}

/* Q3_K's sixteen 6-bit scales (biased by 32) from the 12 bytes a0, a1, a2 (little-endian words):
 * low nibbles of a0 and a1 for scales 0-7, their high nibbles for 8-15, the top two bits from
 * a2 (ggml's kmask unpacking). Returns the four bytes of scales 4g .. 4g + 3. */
static K_HD uint32_t k_q3_scales4(uint32_t a0, uint32_t a1, uint32_t a2, int g)
{
    const uint32_t lo = (g & 1) ? a1 : a0;
    const uint32_t nib = (g & 2) ? (lo >> 4) & 0x0f0f0f0fu : lo & 0x0f0f0f0fu;
    return nib | (((a2 >> (2 * g)) & 0x03030303u) << 4);
}

/* Q3_K block (at byte 0 of w): hmask at 0, qs at 32, packed scales at 96, d at 108. */
static K_HD float k_dot_q3_K(const uint32_t *w, const uint8_t *xb)
{
    int part[16];
    k_parts_q23<true>(w, xb, part);
    const uint32_t a0 = k_w32(w, 96), a1 = k_w32(w, 100), a2 = k_w32(w, 104);
    int isum = 0;
    K_UNROLL
    for (int g = 0; g < 4; g++) {
        const uint32_t sc4 = k_q3_scales4(a0, a1, a2, g);
        K_UNROLL
        for (int j = 0; j < 4; j++) {
            const int s = 4 * g + j;
            isum += ((int)((sc4 >> (8 * j)) & 0xffu) - 32) * (part[s] - 4 * k_bsum(xb, s));
        }
    }
    return k_ldf(xb) * k_h2f(k_w16(w, 108)) * (float)isum;
}

/* Q4_K and Q5_K pack 8 six-bit scales and 8 six-bit mins into 12 bytes at byte 4 of the block. */
static K_HD void k_scale_min_k4(const uint32_t *w, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = (int)(k_w8(w, 4 + j) & 63u);
        *m = (int)(k_w8(w, 8 + j) & 63u);
    } else {
        *sc = (int)((k_w8(w, 8 + j) & 0x0fu) | ((k_w8(w, 4 + j - 4) >> 6) << 4));
        *m = (int)((k_w8(w, 8 + j) >> 4) | ((k_w8(w, 4 + j) >> 6) << 4));
    }
}

/* Q4_K / Q5_K block (at byte 0 of w); qh_off < 0 for Q4_K. */
template <bool Q5> static K_HD float k_dot_qk45(const uint32_t *w, const uint8_t *xb)
{
    constexpr int qs_off = Q5 ? 48 : 16;
    int isum = 0, msum = 0;
    K_UNROLL
    for (int c = 0; c < 4; c++) {
        int sc0, m0, sc1, m1;
        k_scale_min_k4(w, 2 * c, &sc0, &m0);
        k_scale_min_k4(w, 2 * c + 1, &sc1, &m1);
        msum += m0 * k_bsum_pair(xb, 2 * c) + m1 * k_bsum_pair(xb, 2 * c + 1);
        int s_lo = 0, s_hi = 0;
        K_UNROLL
        for (int i = 0; i < 8; i++) {
            const uint32_t q = k_w32(w, qs_off + 32 * c + 4 * i);
            const int xlo = k_ld32(xb + K_Q8K_QS + 64 * c + 4 * i);
            const int xhi = k_ld32(xb + K_Q8K_QS + 64 * c + 32 + 4 * i);
            if (Q5) {
                const uint32_t qh = k_w32(w, 16 + 4 * i);
                const uint32_t lo = (q & 0x0f0f0f0fu) | (((qh >> (2 * c)) & 0x01010101u) << 4);
                const uint32_t hi =
                    ((q >> 4) & 0x0f0f0f0fu) | (((qh >> (2 * c + 1)) & 0x01010101u) << 4);
                s_lo = k_dp4a((int)lo, xlo, s_lo);
                s_hi = k_dp4a((int)hi, xhi, s_hi);
            } else { /* high nibbles in place: s_hi is 16 times their dot (k_dp4a_us) */
                s_lo = k_dp4a((int)(q & 0x0f0f0f0fu), xlo, s_lo);
                s_hi = k_dp4a_us(q & 0xf0f0f0f0u, xhi, s_hi);
            }
        }
        if (!Q5)
            s_hi >>= 4;
        isum += sc0 * s_lo + sc1 * s_hi;
    }
    return k_ldf(xb) * (k_h2f(k_w16(w, 0)) * (float)isum - k_h2f(k_w16(w, 2)) * (float)msum);
}

/* Q6_K block (at byte 0 of w): ql at 0, qh at 128, int8 scales at 192, d at 208. The -32 offset
 * of the quants meets the activation's per-16 sums. */
static K_HD float k_dot_q6_K(const uint32_t *w, const uint8_t *xb)
{
    int part[16];
    K_UNROLL
    for (int s = 0; s < 16; s++)
        part[s] = 0;
    K_UNROLL
    for (int h = 0; h < 2; h++) {
        K_UNROLL
        for (int i = 0; i < 8; i++) {
            const uint32_t a = k_w32(w, 64 * h + 4 * i);
            const uint32_t b = k_w32(w, 64 * h + 32 + 4 * i);
            const uint32_t qh = k_w32(w, 128 + 32 * h + 4 * i);
            const uint32_t q0 = (a & 0x0f0f0f0fu) | ((qh << 4) & 0x30303030u);
            const uint32_t q1 = (b & 0x0f0f0f0fu) | ((qh << 2) & 0x30303030u);
            const uint32_t q2 = ((a >> 4) & 0x0f0f0f0fu) | (qh & 0x30303030u);
            const uint32_t q3 = ((b >> 4) & 0x0f0f0f0fu) | ((qh >> 2) & 0x30303030u);
            const int sb = 8 * h + (i >> 2);
            const uint8_t *xq = xb + K_Q8K_QS + 128 * h + 4 * i;
            part[sb + 0] = k_dp4a((int)q0, k_ld32(xq), part[sb + 0]);
            part[sb + 2] = k_dp4a((int)q1, k_ld32(xq + 32), part[sb + 2]);
            part[sb + 4] = k_dp4a((int)q2, k_ld32(xq + 64), part[sb + 4]);
            part[sb + 6] = k_dp4a((int)q3, k_ld32(xq + 96), part[sb + 6]);
        }
    }
    int isum = 0;
    K_UNROLL
    for (int s = 0; s < 16; s++)
        isum += (int)(int8_t)k_w8(w, 192 + s) * (part[s] - 32 * k_bsum(xb, s));
    return k_ldf(xb) * k_h2f(k_w16(w, 208)) * (float)isum;
}

/* Plain types: element j of the unit (at byte 0 of w) times x[j]. */
template <int T> static K_HD float k_plain(const uint32_t *w, int j)
{
    if (T == NVL_GGML_TYPE_F32)
        return nvl_quant_f32_from_bits(w[j]);
    const uint32_t h = k_w16(w, 2 * j);
    if (T == NVL_GGML_TYPE_BF16)
        return nvl_quant_f32_from_bits(h << 16);
    return k_h2f(h);
}

/* acc += the unit of NB blocks in w dotted with its activations at xu. */
template <int T, int NB>
static K_HD void k_unit_dot(const uint32_t *w, const uint8_t *xu, float &acc)
{
    constexpr int BB = k_type<T>::block_bytes, XB = K_ACT_BLOCK_BYTES(T);
    K_UNROLL
    for (int b = 0; b < NB; b++) {
        const uint8_t *xb = xu + XB * b;
        if (T == NVL_GGML_TYPE_Q4_0)
            acc += k_dot_q4_0(w, BB * b, xb);
        else if (T == NVL_GGML_TYPE_Q4_1)
            acc += k_dot_q4_1(w, BB * b, xb);
        else if (T == NVL_GGML_TYPE_Q5_0)
            acc += k_dot_q5_0(w, BB * b, xb);
        else if (T == NVL_GGML_TYPE_Q5_1)
            acc += k_dot_q5_1(w, BB * b, xb);
        else if (T == NVL_GGML_TYPE_Q8_0)
            acc += k_dot_q8_0(w, BB * b, xb);
        else if (T == NVL_GGML_TYPE_Q2_K)
            acc += k_dot_q2_K(w, xb);
        else if (T == NVL_GGML_TYPE_Q3_K)
            acc += k_dot_q3_K(w, xb);
        else if (T == NVL_GGML_TYPE_Q4_K)
            acc += k_dot_qk45<false>(w, xb);
        else if (T == NVL_GGML_TYPE_Q5_K)
            acc += k_dot_qk45<true>(w, xb);
        else if (T == NVL_GGML_TYPE_Q6_K)
            acc += k_dot_q6_K(w, xb);
        else
            acc += k_plain<T>(w, b) * k_ldf(xb);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Dequantization of 32 consecutive elements (chunk `sub` of a block at `blk`), with the CPU's
 * expressions (quant_legacy.c, quant_k.c). Byte reads: the dequantizer feeds the GEMM path,
 * whose cost is the matrix product, not these loads. */

static K_HD uint32_t k_b16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

template <int T> static K_HD void k_dequant32(const uint8_t *blk, int sub, float *y)
{
    if (T == NVL_GGML_TYPE_Q4_0) {
        const float d = k_h2f(k_b16(blk));
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((blk[2 + j] & 0x0f) - 8) * d;
            y[j + 16] = (float)((blk[2 + j] >> 4) - 8) * d;
        }
    } else if (T == NVL_GGML_TYPE_Q4_1) {
        const float d = k_h2f(k_b16(blk)), m = k_h2f(k_b16(blk + 2));
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(blk[4 + j] & 0x0f) * d + m;
            y[j + 16] = (float)(blk[4 + j] >> 4) * d + m;
        }
    } else if (T == NVL_GGML_TYPE_Q5_0 || T == NVL_GGML_TYPE_Q5_1) {
        const bool q51 = T == NVL_GGML_TYPE_Q5_1;
        const float d = k_h2f(k_b16(blk)), m = q51 ? k_h2f(k_b16(blk + 2)) : 0.0f;
        const uint8_t *qhp = blk + (q51 ? 4 : 2), *qs = blk + (q51 ? 8 : 6);
        const uint32_t qh = (uint32_t)qhp[0] | ((uint32_t)qhp[1] << 8) | ((uint32_t)qhp[2] << 16) |
                            ((uint32_t)qhp[3] << 24);
        for (int j = 0; j < 16; j++) {
            const int lo = (qs[j] & 0x0f) | (int)(((qh >> j) & 1u) << 4);
            const int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            if (q51) {
                y[j] = (float)lo * d + m;
                y[j + 16] = (float)hi * d + m;
            } else {
                y[j] = (float)(lo - 16) * d;
                y[j + 16] = (float)(hi - 16) * d;
            }
        }
    } else if (T == NVL_GGML_TYPE_Q8_0) {
        const float d = k_h2f(k_b16(blk));
        for (int j = 0; j < 32; j++)
            y[j] = (float)(int8_t)blk[2 + j] * d;
    } else if (T == NVL_GGML_TYPE_Q2_K) {
        /* sub = 4h + sh: elements 128h + 32sh + l are bit pair sh of qs[32h + l]. */
        const float d = k_h2f(k_b16(blk + 80)), dmin = k_h2f(k_b16(blk + 82));
        const int h = sub >> 2, sh = sub & 3;
        const uint8_t *qs = blk + 16 + 32 * h;
        for (int half = 0; half < 2; half++) {
            const int sc = blk[8 * h + 2 * sh + half];
            const float dl = d * (float)(sc & 0x0f), ml = dmin * (float)(sc >> 4);
            for (int l = 16 * half; l < 16 * half + 16; l++)
                y[l] = dl * (float)((qs[l] >> (2 * sh)) & 3) - ml;
        }
    } else if (T == NVL_GGML_TYPE_Q3_K) {
        /* As Q2_K, with the high bit 4h + sh of hmask[l] (clear: q - 4). */
        const float d = k_h2f(k_b16(blk + 108));
        const int h = sub >> 2, sh = sub & 3;
        const uint8_t *hm = blk, *qs = blk + 32 + 32 * h, *sc = blk + 96;
        for (int half = 0; half < 2; half++) {
            /* Scale s = 8h + 2sh + half: byte s % 4 of group g = s / 4 (k_q3_scales4). */
            const int s = 8 * h + 2 * sh + half, g = s >> 2, j = s & 3;
            const int lo = sc[j + 4 * (g & 1)];
            const int nib = (g & 2) ? (lo >> 4) : (lo & 0x0f);
            const int scale = (nib | (((sc[8 + j] >> (2 * g)) & 3) << 4)) - 32;
            const float dl = d * (float)scale;
            for (int l = 16 * half; l < 16 * half + 16; l++)
                y[l] = dl *
                       (float)(((qs[l] >> (2 * sh)) & 3) - (((hm[l] >> (4 * h + sh)) & 1) ? 0 : 4));
        }
    } else if (T == NVL_GGML_TYPE_Q4_K || T == NVL_GGML_TYPE_Q5_K) {
        /* sub = 2c + hi: elements 64c + 32hi + l use nibble hi of qs[32c + l]. */
        const bool q5 = T == NVL_GGML_TYPE_Q5_K;
        const float d = k_h2f(k_b16(blk)), dmin = k_h2f(k_b16(blk + 2));
        const uint8_t *sc = blk + 4, *qh = blk + 16, *qs = blk + (q5 ? 48 : 16);
        int s, m;
        if (sub < 4) {
            s = sc[sub] & 63;
            m = sc[sub + 4] & 63;
        } else {
            s = (sc[sub + 4] & 0x0f) | ((sc[sub - 4] >> 6) << 4);
            m = (sc[sub + 4] >> 4) | ((sc[sub] >> 6) << 4);
        }
        const float d1 = d * (float)s, m1 = dmin * (float)m;
        const int c = sub >> 1, hi = sub & 1;
        for (int l = 0; l < 32; l++) {
            int q = hi ? (qs[32 * c + l] >> 4) : (qs[32 * c + l] & 0x0f);
            if (q5)
                q += ((qh[l] >> sub) & 1) ? 16 : 0;
            y[l] = d1 * (float)q - m1;
        }
    } else if (T == NVL_GGML_TYPE_Q6_K) {
        /* sub = 4h + j: elements 128h + 32j + l. */
        const float d = k_h2f(k_b16(blk + 208));
        const int h = sub >> 2, j = sub & 3;
        const uint8_t *ql = blk + 64 * h + (j & 1) * 32, *qh = blk + 128 + 32 * h;
        const int8_t *sc = (const int8_t *)(blk + 192) + 8 * h;
        for (int l = 0; l < 32; l++) {
            const int lo = (j < 2) ? (ql[l] & 0x0f) : (ql[l] >> 4);
            const int q = (lo | (((qh[l] >> (2 * j)) & 3) << 4)) - 32;
            /* ggml's order: (d * scale) * q, scale of the 16-element half. */
            y[l] = (d * (float)sc[2 * j + (l >> 4)]) * (float)q;
        }
    } else if (T == NVL_GGML_TYPE_F16) {
        for (int j = 0; j < 32; j++)
            y[j] = k_h2f(k_b16(blk + 2 * j));
    } else if (T == NVL_GGML_TYPE_BF16) {
        for (int j = 0; j < 32; j++)
            y[j] = nvl_quant_f32_from_bits(k_b16(blk + 2 * j) << 16);
    } else {
        for (int j = 0; j < 32; j++) {
            uint32_t u = (uint32_t)blk[4 * j] | ((uint32_t)blk[4 * j + 1] << 8) |
                         ((uint32_t)blk[4 * j + 2] << 16) | ((uint32_t)blk[4 * j + 3] << 24);
            y[j] = nvl_quant_f32_from_bits(u);
        }
    }
    (void)sub;
}

/* Byte offset, within a row, of the block that holds 32-element chunk c, and the chunk's index
 * inside that block. */
template <int T> static K_HD void k_chunk_pos(int64_t c, int64_t *byte_off, int *sub)
{
    constexpr int BE = k_type<T>::block_elems, BB = k_type<T>::block_bytes;
    if constexpr (BE >= 32) {
        constexpr int per = BE / 32;
        *byte_off = (c / per) * BB;
        *sub = (int)(c % per);
    } else {
        *byte_off = c * 32 * BB;
        *sub = 0;
    }
}

#endif
