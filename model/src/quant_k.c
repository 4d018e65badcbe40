/* The 256-element super-block formats ("K-quants"): Q2_K .. Q6_K and Q8_K.
 *
 * Dequantization follows ggml's dequantize_row_*_K with the same operation order, so results are
 * bit-identical. Quantization (Q4_K, Q6_K, Q8_K) follows ggml's quantize_row_*_ref: a per
 * sub-block scale (and min) search minimizing weighted squared error, then the sub-block scales
 * are themselves quantized against one fp16 super-block scale. */
#include <math.h>
#include <string.h>

#include "quant_internal.h"

/* ggml's GROUP_MAX_EPS: a group whose largest magnitude is below this quantizes to zero. */
#define GROUP_MAX_EPS 1e-15f

/* Round to nearest, ties to even, for |v| <= 2^22 (adding 1.5 * 2^23 puts the integer in the
 * mantissa). */
static inline int nearest_int(float v)
{
    float f = v + 12582912.f;
    int32_t i;

    memcpy(&i, &f, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

/* Q4_K/Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes: entries 0-3 in the low
 * six bits of bytes 0-3 (scales) and 4-7 (mins); entries 4-7 split as low nibbles in bytes 8-11
 * and high two bits in the top bits of bytes 0-7. */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

void nvl__dequant_q2_K(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q2_K *x = src;
    const int64_t nb = n / NVL_QK_K;
    float *y = dst;

    for (int64_t i = 0; i < nb; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        const float min = nvl_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;

        for (int n128 = 0; n128 < NVL_QK_K; n128 += 128) {
            int shift = 0;

            for (int j = 0; j < 4; j++) {
                for (int half = 0; half < 2; half++) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 0xF);
                    const float ml = min * (float)(sc >> 4);

                    for (int l = 0; l < 16; l++)
                        *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
                }
                shift += 2;
            }
            q += 32;
        }
    }
}

void nvl__dequant_q3_K(const void *restrict src, float *restrict dst, int64_t n)
{
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    const struct nvl_block_q3_K *x = src;
    const int64_t nb = n / NVL_QK_K;
    float *y = dst;

    for (int64_t i = 0; i < nb; i++) {
        const float d_all = nvl_fp16_to_fp32(x[i].d);
        const uint8_t *q = x[i].qs;
        const uint8_t *hm = x[i].hmask;
        uint32_t aux[4], tmp;
        int8_t scales[16];
        uint8_t m = 1;
        int is = 0;

        /* Unpack the sixteen 6-bit scales (stored biased by 32). */
        memcpy(aux, x[i].scales, 12);
        tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        memcpy(scales, aux, 16);

        for (int n128 = 0; n128 < NVL_QK_K; n128 += 128) {
            int shift = 0;

            for (int j = 0; j < 4; j++) {
                for (int half = 0; half < 2; half++) {
                    const float dl = d_all * (float)(scales[is++] - 32);

                    for (int l = 16 * half; l < 16 * half + 16; l++)
                        *y++ = dl * (float)(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                }
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }
}

/* Q4_K and Q5_K: eight sub-blocks of 32, x = d * scale * q - dmin * min, with q the 4-bit quant
 * plus, for Q5_K (qh not NULL), a fifth bit from qh. Always inlined with qh constant, so each
 * format gets its own loop without the test. */
static inline __attribute__((always_inline)) void dequant_k45(const uint8_t *scales, uint16_t d16,
                                                              uint16_t dmin16, const uint8_t *ql,
                                                              const uint8_t *qh, float *restrict y)
{
    const float d = nvl_fp16_to_fp32(d16);
    const float min = nvl_fp16_to_fp32(dmin16);
    uint8_t u1 = 1, u2 = 2;

    for (int j = 0, is = 0; j < NVL_QK_K; j += 64, is += 2) {
        uint8_t sc, m;

        get_scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        get_scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;

        for (int l = 0; l < 32; l++)
            y[l] = d1 * (float)((ql[l] & 0xF) + (qh && (qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++)
            y[l + 32] = d2 * (float)((ql[l] >> 4) + (qh && (qh[l] & u2) ? 16 : 0)) - m2;
        y += 64;
        ql += 32;
        u1 = (uint8_t)(u1 << 2);
        u2 = (uint8_t)(u2 << 2);
    }
}

void nvl__dequant_q4_K(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q4_K *x = src;

    for (int64_t i = 0; i < n / NVL_QK_K; i++)
        dequant_k45(x[i].scales, x[i].d, x[i].dmin, x[i].qs, NULL, dst + i * NVL_QK_K);
}

void nvl__dequant_q5_K(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q5_K *x = src;

    for (int64_t i = 0; i < n / NVL_QK_K; i++)
        dequant_k45(x[i].scales, x[i].d, x[i].dmin, x[i].qs, x[i].qh, dst + i * NVL_QK_K);
}

void nvl__dequant_q6_K(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q6_K *x = src;
    const int64_t nb = n / NVL_QK_K;
    float *y = dst;

    for (int64_t i = 0; i < nb; i++) {
        const float d = nvl_fp16_to_fp32(x[i].d);
        const uint8_t *ql = x[i].ql;
        const uint8_t *qh = x[i].qh;
        const int8_t *sc = x[i].scales;

        for (int n128 = 0; n128 < NVL_QK_K; n128 += 128) {
            /* Two halves of 16 so that each inner loop has fixed scales (and vectorizes). The
             * products keep ggml's order: (d * scale) * q. */
            for (int half = 0; half < 2; half++) {
                const float s1 = d * (float)sc[half + 0], s2 = d * (float)sc[half + 2];
                const float s3 = d * (float)sc[half + 4], s4 = d * (float)sc[half + 6];

                for (int l = 16 * half; l < 16 * half + 16; l++) {
                    const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;

                    y[l + 0] = s1 * (float)q1;
                    y[l + 32] = s2 * (float)q2;
                    y[l + 64] = s3 * (float)q3;
                    y[l + 96] = s4 * (float)q4;
                }
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

void nvl__dequant_q8_K(const void *restrict src, float *restrict dst, int64_t n)
{
    const struct nvl_block_q8_K *x = src;
    const int64_t nb = n / NVL_QK_K;

    for (int64_t i = 0; i < nb; i++)
        for (int j = 0; j < NVL_QK_K; j++)
            dst[i * NVL_QK_K + j] = x[i].d * (float)x[i].qs[j];
}

/* Quants of x at inverse scale iscale, clamped to [-nmax, nmax - 1] and stored biased by nmax in
 * L, and the x^2-weighted sums of the least-squares fit: *sumlx = sum(w x l), *suml2 = sum(w l^2).
 */
static void qx_fit(int n, int nmax, const float *x, float iscale, int8_t *L, float *sumlx,
                   float *suml2)
{
    float slx = 0, sl2 = 0;

    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        const float w = x[i] * x[i];

        l = MAX(-nmax, MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

/* ggml's make_qx_quants with rmse_type 1: symmetric quants in [-nmax, nmax - 1] (stored biased by
 * nmax in L); tries 19 scales around -nmax / max and keeps the one with the best x^2-weighted
 * fit. Laux is scratch of n. Returns the scale. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int8_t *Laux)
{
    float amax, sumlx, suml2, scale, best;
    const float max = nvl__max_magnitude(x, n, &amax);

    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    qx_fit(n, nmax, x, -nmax / max, L, &sumlx, &suml2);
    scale = suml2 ? sumlx / suml2 : 0.0f;
    best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        qx_fit(n, nmax, x, -(nmax + 0.1f * is) / max, Laux, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            memcpy(L, Laux, (size_t)n);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* ggml's make_qkx2_quants: asymmetric quants in [0, nmax] with x ~ scale * L - the_min; a
 * weighted least-squares fit of scale and min over nstep + 1 candidate grids. Returns the scale
 * and stores the (non-negative) min. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    float iscale, scale, best_error = 0;

    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    iscale = nmax / (max - min);
    scale = 1 / iscale;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        float diff;

        L[i] = (uint8_t)MAX(0, MIN(nmax, l));
        diff = scale * L[i] + min - x[i];
        best_error += weights[i] * diff * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        float sum_l = 0, sum_l2 = 0, sum_xl = 0, D;

        iscale = (rmin + rdelta * is + nmax) / (max - min);
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            const float w = weights[i];

            l = MAX(0, MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            float cur_error = 0;

            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            for (int i = 0; i < n; i++) {
                const float diff = this_scale * Laux[i] + this_min - x[i];

                cur_error += weights[i] * diff * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

void nvl__quant_q4_K(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q4_K *y = dst;
    const int64_t nb = n / NVL_QK_K;
    uint8_t L[NVL_QK_K], Laux[32];
    float weights[32], mins[NVL_QK_K / 32], scales[NVL_QK_K / 32];

    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * NVL_QK_K;
        float max_scale = 0, max_min = 0, inv_scale, inv_min;
        uint8_t *q = y[i].qs;

        for (int j = 0; j < NVL_QK_K / 32; j++) {
            float sum_x2 = 0, av_x;

            for (int l = 0; l < 32; l++)
                sum_x2 += x[32 * j + l] * x[32 * j + l];
            av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++)
                weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                         -1.f, 0.1f, 20);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }

        inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        memset(y[i].scales, 0, sizeof(y[i].scales));
        for (int j = 0; j < NVL_QK_K / 32; j++) {
            const uint8_t ls = (uint8_t)MIN(63, nearest_int(inv_scale * scales[j]));
            const uint8_t lm = (uint8_t)MIN(63, nearest_int(inv_min * mins[j]));

            if (j < 4) {
                y[i].scales[j] = ls;
                y[i].scales[j + 4] = lm;
            } else {
                y[i].scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                y[i].scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
                y[i].scales[j - 0] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        y[i].d = nvl_fp32_to_fp16(max_scale / 63.f);
        y[i].dmin = nvl_fp32_to_fp16(max_min / 63.f);

        /* Requantize against the scales as they were stored. */
        for (int j = 0; j < NVL_QK_K / 32; j++) {
            uint8_t sc, m;

            get_scale_min_k4(j, y[i].scales, &sc, &m);
            const float d = nvl_fp16_to_fp32(y[i].d) * sc;
            if (!d)
                continue;
            const float dm = nvl_fp16_to_fp32(y[i].dmin) * m;
            for (int ii = 0; ii < 32; ii++) {
                const int l = nearest_int((x[32 * j + ii] + dm) / d);

                L[32 * j + ii] = (uint8_t)MAX(0, MIN(15, l));
            }
        }
        for (int j = 0; j < NVL_QK_K; j += 64) {
            for (int l = 0; l < 32; l++)
                q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
            q += 32;
        }
    }
}

void nvl__quant_q6_K(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q6_K *y = dst;
    const int64_t nb = n / NVL_QK_K;
    int8_t L[NVL_QK_K], Laux[16];
    float scales[NVL_QK_K / 16];

    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * NVL_QK_K;
        float max_scale = 0, max_abs_scale = 0, iscale;
        uint8_t *ql = y[i].ql, *qh = y[i].qh;

        for (int ib = 0; ib < NVL_QK_K / 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, Laux);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }

        iscale = -128.f / max_scale;
        y[i].d = nvl_fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < NVL_QK_K / 16; ib++)
            y[i].scales[ib] = (int8_t)MIN(127, nearest_int(iscale * scales[ib]));

        /* Requantize against the scales as they were stored. */
        for (int j = 0; j < NVL_QK_K / 16; j++) {
            const float d = nvl_fp16_to_fp32(y[i].d) * y[i].scales[j];

            if (!d)
                continue;
            for (int ii = 0; ii < 16; ii++) {
                const int l = nearest_int(x[16 * j + ii] / d);

                L[16 * j + ii] = (int8_t)(MAX(-32, MIN(31, l)) + 32);
            }
        }
        for (int j = 0; j < NVL_QK_K; j += 128) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = L[j + l + 0] & 0xF;
                const uint8_t q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF;
                const uint8_t q4 = L[j + l + 96] & 0xF;

                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}

/* Activations for K-quant dot products: one fp32 scale per 256, value of largest magnitude to
 * -127, plus per-16 sums. */
void nvl__quant_q8_K(const float *restrict src, void *restrict dst, int64_t n)
{
    struct nvl_block_q8_K *y = dst;
    const int64_t nb = n / NVL_QK_K;

    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * NVL_QK_K;
        float amax, iscale;
        const float max = nvl__max_magnitude(x, NVL_QK_K, &amax);

        if (!amax) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        iscale = -127.f / max;
        for (int j = 0; j < NVL_QK_K; j++)
            y[i].qs[j] = (int8_t)MIN(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < NVL_QK_K / 16; j++) {
            int sum = 0;

            for (int ii = 0; ii < 16; ii++)
                sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}
