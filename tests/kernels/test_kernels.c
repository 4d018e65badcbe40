/* The GPU kernels of model/kernels against independent references on fresh random inputs:
 * activation quantization against the CPU's definition (bit-exact), every matrix-vector format
 * against a double-precision product of nvl_dequantize_row() and the dequantized activations
 * (relative error 2e-6 of the sum of |terms|: the integer sums are exact, only float rounding
 * differs), the results bit-identical when the weights sit at another alignment, the GEMM path
 * against the unquantized product (fp16 activations: 4e-3), dequantization, embedding lookup,
 * RMSNorm, RoPE with the KV store, attention, SwiGLU, argmax and the sampler (against
 * nvl_sampler_sample with the same random draw). Exits 77 without a CUDA device. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "kernels.h"
#include "kernels_test_util.h"
#include "nvl_model/sampler.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define CUDA_OK(call)                                                                              \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            printf("FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void *dev_copy(const void *src, size_t n)
{
    void *d;
    CUDA_OK(cudaMalloc(&d, n + 256));
    CUDA_OK(cudaMemcpy(d, src, n, cudaMemcpyHostToDevice));
    return d;
}

static void *dev_alloc(size_t n)
{
    void *d;
    CUDA_OK(cudaMalloc(&d, n + 256));
    /* Poisoned, so an element the kernel forgets to write shows. */
    CUDA_OK(cudaMemset(d, 0xff, n + 256));
    return d;
}

static void to_host(void *dst, const void *src, size_t n)
{
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost));
}

/* ------------------------------------------------------------------------------------------ */
/* Reference activation quantization: d = amax / 127, q = rint(x * (1 / d)) (the CPU's). */

static void ref_quantize(enum nvl_k_act act, const float *x, int64_t k, uint8_t *out, float *deq)
{
    if (act == NVL_K_ACT_F32) {
        memcpy(out, x, (size_t)k * sizeof(float));
        memcpy(deq, x, (size_t)k * sizeof(float));
        return;
    }
    const int bl = act == NVL_K_ACT_Q8 ? 32 : 256;
    for (int64_t b = 0; b < k / bl; b++) {
        const float *xb = x + b * bl;
        float amax = 0.0f;
        for (int j = 0; j < bl; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int8_t q[256];
        int sum = 0;
        for (int j = 0; j < bl; j++) {
            q[j] = (int8_t)lrintf(xb[j] * id);
            sum += q[j];
            deq[b * bl + j] = d * (float)q[j];
        }
        if (act == NVL_K_ACT_Q8) {
            struct nvl_k_block_q8 blk = {.d = d, .sum = sum};
            memcpy(blk.qs, q, 32);
            memcpy(out + (size_t)b * sizeof(blk), &blk, sizeof(blk));
        } else {
            struct nvl_block_q8_K blk = {.d = d};
            memcpy(blk.qs, q, 256);
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int j = 0; j < 16; j++)
                    s += q[g * 16 + j];
                blk.bsums[g] = (int16_t)s;
            }
            memcpy(out + (size_t)b * sizeof(blk), &blk, sizeof(blk));
        }
    }
}

static void test_quantize(void)
{
    const int64_t k = 1024;
    const int32_t n_tok = 3;
    float *x = malloc((size_t)(k * n_tok) * sizeof(float));
    ku_floats(x, k * n_tok, 3.0f);
    x[5] = 0.0f; /* a zero block keeps d = 0 */
    for (int j = 0; j < 32; j++)
        x[k + j] = 0.0f;
    float *dx = dev_copy(x, (size_t)(k * n_tok) * sizeof(float));
    for (int a = NVL_K_ACT_Q8; a <= NVL_K_ACT_Q8K; a++) {
        const size_t rb = nvl__k_act_row_bytes((enum nvl_k_act)a, k);
        uint8_t *dq = dev_alloc(rb * (size_t)n_tok);
        uint8_t *got = malloc(rb * (size_t)n_tok), *want = malloc(rb * (size_t)n_tok);
        float *deq = malloc((size_t)k * sizeof(float));
        CHECK(nvl__k_quantize((enum nvl_k_act)a, dx, (size_t)k, n_tok, k, dq, 0) == 0, "launch");
        to_host(got, dq, rb * (size_t)n_tok);
        for (int t = 0; t < n_tok; t++)
            ref_quantize((enum nvl_k_act)a, x + t * k, k, want + (size_t)t * rb, deq);
        CHECK(memcmp(got, want, rb * (size_t)n_tok) == 0, "quantize act %d differs from the CPU's",
              a);
        cudaFree(dq);
        free(got);
        free(want);
        free(deq);
    }
    cudaFree(dx);
    free(x);
}

/* ------------------------------------------------------------------------------------------ */
/* Matrix-vector products */

static const enum nvl_ggml_type mv_types[] = {
    NVL_GGML_TYPE_F32,  NVL_GGML_TYPE_F16,  NVL_GGML_TYPE_BF16, NVL_GGML_TYPE_Q4_0,
    NVL_GGML_TYPE_Q4_1, NVL_GGML_TYPE_Q5_0, NVL_GGML_TYPE_Q5_1, NVL_GGML_TYPE_Q8_0,
    NVL_GGML_TYPE_Q2_K, NVL_GGML_TYPE_Q3_K, NVL_GGML_TYPE_Q4_K, NVL_GGML_TYPE_Q5_K,
    NVL_GGML_TYPE_Q6_K,
};

static void check_matvec(enum nvl_ggml_type type, int64_t k, int64_t rows, int32_t n_tok,
                         bool accumulate)
{
    const char *name = nvl_ggml_type_name(type);
    const enum nvl_k_act act = nvl__k_act_for(type);
    uint64_t rb;
    uint8_t *w = ku_matrix(type, rows, k, &rb);
    const size_t wbytes = (size_t)(rb * (uint64_t)rows);
    float *x = malloc((size_t)(k * n_tok) * sizeof(float));
    float *xd = malloc((size_t)(k * n_tok) * sizeof(float));
    const size_t xrb = nvl__k_act_row_bytes(act, k);
    uint8_t *xq = malloc(xrb * (size_t)n_tok);
    float *wd = malloc((size_t)k * sizeof(float));
    float *y0 = malloc((size_t)(rows * n_tok) * sizeof(float));
    float *y = malloc((size_t)(rows * n_tok) * sizeof(float));
    float *y2 = malloc((size_t)(rows * n_tok) * sizeof(float));
    ku_floats(x, k * n_tok, 1.5f);
    ku_floats(y0, rows * n_tok, 1.0f);
    for (int t = 0; t < n_tok; t++)
        ref_quantize(act, x + t * k, k, xq + (size_t)t * xrb, xd + t * k);

    /* The weights at a 256-byte aligned address, and again 2 bytes further (every format is
     * 2-byte aligned in a GGUF file): the second takes the unaligned load path. */
    uint8_t *dw = dev_copy(w, wbytes);
    uint8_t *dw2;
    CUDA_OK(cudaMalloc((void **)&dw2, wbytes + 256));
    CUDA_OK(cudaMemcpy(dw2 + 2, w, wbytes, cudaMemcpyHostToDevice));
    uint8_t *dxq = dev_copy(xq, xrb * (size_t)n_tok);
    float *dy = dev_copy(y0, (size_t)(rows * n_tok) * sizeof(float));
    float *dy2 = dev_copy(y0, (size_t)(rows * n_tok) * sizeof(float));
    struct nvl_k_matmul mm = {
        .w = dw,
        .type = type,
        .row_bytes = rb,
        .k = k,
        .rows = rows,
        .x = dxq,
        .x_stride = xrb,
        .y = dy,
        .y_stride = (size_t)rows,
        .n_tok = n_tok,
        .accumulate = accumulate,
    };
    CHECK(nvl__k_matvec(&mm, 0) == 0, "%s matvec launch", name);
    mm.w = dw2 + 2;
    mm.y = dy2;
    CHECK(nvl__k_matvec(&mm, 0) == 0, "%s matvec launch (unaligned)", name);
    to_host(y, dy, (size_t)(rows * n_tok) * sizeof(float));
    to_host(y2, dy2, (size_t)(rows * n_tok) * sizeof(float));

    double worst = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        nvl_dequantize_row(type, w + (uint64_t)r * rb, wd, k);
        for (int t = 0; t < n_tok; t++) {
            double ref = 0.0, mag = 0.0;
            for (int64_t i = 0; i < k; i++) {
                ref += (double)wd[i] * xd[t * k + i];
                mag += fabs((double)wd[i] * xd[t * k + i]);
            }
            const double base = accumulate ? y0[t * rows + r] : 0.0;
            const double err = fabs(y[t * rows + r] - (base + ref)) / (mag + fabs(base) + 1e-30);
            worst = err > worst ? err : worst;
        }
    }
    CHECK(worst <= 2e-6, "%s k=%lld rows=%lld n_tok=%d acc=%d: relative error %.3g", name,
          (long long)k, (long long)rows, n_tok, accumulate, worst);
    CHECK(memcmp(y, y2, (size_t)(rows * n_tok) * sizeof(float)) == 0,
          "%s k=%lld: the result depends on the weights' alignment", name, (long long)k);
    printf("matvec %-5s k=%-5lld rows=%-4lld tokens=%d acc=%d: rel err %.2e\n", name, (long long)k,
           (long long)rows, n_tok, accumulate, worst);
    cudaFree(dw);
    cudaFree(dw2);
    cudaFree(dxq);
    cudaFree(dy);
    cudaFree(dy2);
    free(w);
    free(x);
    free(xd);
    free(xq);
    free(wd);
    free(y0);
    free(y);
    free(y2);
}

/* Q/K/V-like and gate/up-like groups in one launch against their references. */
static void test_matvec_group(void)
{
    const enum nvl_ggml_type types[] = {NVL_GGML_TYPE_Q4_K, NVL_GGML_TYPE_Q8_0, NVL_GGML_TYPE_F16};
    const int64_t k = 1024, rows[3] = {300, 100, 100};
    for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
        const enum nvl_ggml_type type = types[ti];
        const enum nvl_k_act act = nvl__k_act_for(type);
        const size_t xrb = nvl__k_act_row_bytes(act, k);
        float *x = malloc((size_t)k * sizeof(float)), *xd = malloc((size_t)k * sizeof(float));
        float *wd = malloc((size_t)k * sizeof(float));
        uint8_t *xq = malloc(xrb);
        ku_floats(x, k, 1.0f);
        ref_quantize(act, x, k, xq, xd);
        uint8_t *dxq = dev_copy(xq, xrb);
        struct nvl_k_matmul mm[3];
        uint8_t *w[3];
        uint64_t rb[3];
        for (int i = 0; i < 3; i++) {
            w[i] = ku_matrix(type, rows[i], k, &rb[i]);
            mm[i] = (struct nvl_k_matmul){.w = dev_copy(w[i], (size_t)(rb[i] * (uint64_t)rows[i])),
                                          .type = type,
                                          .row_bytes = rb[i],
                                          .k = k,
                                          .rows = rows[i],
                                          .x = dxq,
                                          .x_stride = xrb,
                                          .y = dev_alloc((size_t)rows[i] * sizeof(float)),
                                          .y_stride = (size_t)rows[i],
                                          .n_tok = 1};
        }
        CHECK(nvl__k_matvec_group(mm, 3, 0) == 0, "group launch");
        double worst = 0.0;
        for (int i = 0; i < 3; i++) {
            float *y = malloc((size_t)rows[i] * sizeof(float));
            to_host(y, mm[i].y, (size_t)rows[i] * sizeof(float));
            for (int64_t r = 0; r < rows[i]; r++) {
                nvl_dequantize_row(type, w[i] + (uint64_t)r * rb[i], wd, k);
                double ref = 0.0, mag = 1e-30;
                for (int64_t j = 0; j < k; j++) {
                    ref += (double)wd[j] * xd[j];
                    mag += fabs((double)wd[j] * xd[j]);
                }
                worst = fmax(worst, fabs(y[r] - ref) / mag);
            }
            free(y);
            cudaFree((void *)mm[i].w);
            cudaFree(mm[i].y);
            free(w[i]);
        }
        CHECK(worst <= 2e-6, "matvec group %s: relative error %.3g", nvl_ggml_type_name(type),
              worst);
        printf("matvec group of 3 %-5s: rel err %.2e\n", nvl_ggml_type_name(type), worst);
        cudaFree(dxq);
        free(x);
        free(xd);
        free(wd);
        free(xq);
    }
}

/* The gate/up launch with SwiGLU fused (nvl__k_matvec_swiglu) against the group launch then
 * nvl__k_swiglu on the same inputs: the same bits, for single tokens and batches (a 4-token pass
 * and a single one), with a partial last row group and the RMSNorm prologue. */
static void test_matvec_swiglu(void)
{
    const enum nvl_ggml_type types[] = {NVL_GGML_TYPE_Q4_0, NVL_GGML_TYPE_Q4_K, NVL_GGML_TYPE_Q6_K,
                                        NVL_GGML_TYPE_Q8_0, NVL_GGML_TYPE_F16};
    const int64_t k = 1024, rows = 301;
    const int32_t n_toks[] = {1, 5};
    float *x = malloc((size_t)(k * 5) * sizeof(float)), *norm = malloc((size_t)k * sizeof(float));
    ku_floats(x, k * 5, 2.0f);
    ku_floats(norm, k, 1.0f);
    float *dx = dev_copy(x, (size_t)(k * 5) * sizeof(float)),
          *dnorm = dev_copy(norm, (size_t)k * sizeof(float));
    for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++)
        for (size_t ni = 0; ni < 2; ni++) {
            const enum nvl_ggml_type type = types[ti];
            const int32_t n_tok = n_toks[ni];
            const bool quant = nvl__k_act_for(type) != NVL_K_ACT_F32;
            const size_t ybytes = (size_t)(rows * n_tok) * sizeof(float);
            struct nvl_k_matmul mm[2];
            uint8_t *w[2];
            uint64_t rb[2];
            for (int i = 0; i < 2; i++) {
                w[i] = ku_matrix(type, rows, k, &rb[i]);
                mm[i] = (struct nvl_k_matmul){.w = dev_copy(w[i], (size_t)(rb[i] * rows)),
                                              .type = type,
                                              .row_bytes = rb[i],
                                              .k = k,
                                              .rows = rows,
                                              .x = dx,
                                              .x_stride = (size_t)k * sizeof(float),
                                              .y = dev_alloc(ybytes),
                                              .y_stride = (size_t)rows,
                                              .n_tok = n_tok,
                                              .in = quant ? NVL_K_MV_IN_RMSNORM : NVL_K_MV_IN_READY,
                                              .norm = quant ? dnorm : NULL,
                                              .eps = quant ? 1e-5f : 0.0f};
            }
            float *sep = malloc(ybytes), *fused = malloc(ybytes);
            CHECK(nvl__k_matvec_group(mm, 2, 0) == 0, "group launch");
            CHECK(nvl__k_swiglu(mm[0].y, mm[1].y, rows * n_tok, 0) == 0, "swiglu");
            to_host(sep, mm[0].y, ybytes);
            CUDA_OK(cudaMemset(mm[0].y, 0xff, ybytes));
            CHECK(nvl__k_matvec_swiglu(mm, 0) == 0, "matvec_swiglu launch");
            to_host(fused, mm[0].y, ybytes);
            CHECK(memcmp(sep, fused, ybytes) == 0,
                  "matvec_swiglu %s, %d tokens: differs from the group launch then swiglu",
                  nvl_ggml_type_name(type), n_tok);
            printf("matvec_swiglu %-5s %d token(s): bit-identical to matvec group + swiglu\n",
                   nvl_ggml_type_name(type), n_tok);
            for (int i = 0; i < 2; i++) {
                cudaFree((void *)mm[i].w);
                cudaFree(mm[i].y);
                free(w[i]);
            }
            free(sep);
            free(fused);
        }
    cudaFree(dx);
    cudaFree(dnorm);
    free(x);
    free(norm);
}

/* The fused RMSNorm + quantize and SwiGLU + quantize produce exactly what the separate kernels
 * produce. */
static void test_fused_quantize(void)
{
    const int64_t n = 2048;
    const int32_t n_tok = 2;
    float *x = malloc((size_t)(n * n_tok) * 4), *g = malloc((size_t)n * 4);
    ku_floats(x, n * n_tok, 3.0f);
    ku_floats(g, n, 1.0f);
    for (int a = NVL_K_ACT_Q8; a <= NVL_K_ACT_Q8K; a++) {
        const size_t rb = nvl__k_act_row_bytes((enum nvl_k_act)a, n) * (size_t)n_tok;
        float *dx = dev_copy(x, (size_t)(n * n_tok) * 4), *dg = dev_copy(g, (size_t)n * 4);
        float *dy1 = dev_alloc((size_t)(n * n_tok) * 4), *dy2 = dev_alloc((size_t)(n * n_tok) * 4);
        uint8_t *dq1 = dev_alloc(rb), *dq2 = dev_alloc(rb);
        uint8_t *q1 = malloc(rb), *q2 = malloc(rb);
        float *y1 = malloc((size_t)(n * n_tok) * 4), *y2 = malloc((size_t)(n * n_tok) * 4);
        CHECK(nvl__k_rmsnorm(dx, dg, dy1, n, n_tok, 1e-5f, 0) == 0, "rmsnorm");
        CHECK(nvl__k_quantize((enum nvl_k_act)a, dy1, (size_t)n, n_tok, n, dq1, 0) == 0, "quant");
        CHECK(nvl__k_rmsnorm_quantize(dx, dg, dy2, n, n_tok, 1e-5f, (enum nvl_k_act)a, dq2, 0) == 0,
              "rmsnorm_quantize");
        to_host(q1, dq1, rb);
        to_host(q2, dq2, rb);
        to_host(y1, dy1, (size_t)(n * n_tok) * 4);
        to_host(y2, dy2, (size_t)(n * n_tok) * 4);
        CHECK(memcmp(q1, q2, rb) == 0 && memcmp(y1, y2, (size_t)(n * n_tok) * 4) == 0,
              "rmsnorm_quantize (act %d) differs from rmsnorm then quantize", a);

        /* SwiGLU: g <- silu(g) * u on copies of the same rows. */
        float *dg1 = dev_copy(x, (size_t)(n * n_tok) * 4),
              *dg2 = dev_copy(x, (size_t)(n * n_tok) * 4);
        CHECK(nvl__k_swiglu(dg1, dy1, n * n_tok, 0) == 0, "swiglu");
        CHECK(nvl__k_quantize((enum nvl_k_act)a, dg1, (size_t)n, n_tok, n, dq1, 0) == 0, "quant");
        CHECK(nvl__k_swiglu_quantize(dg2, dy1, n, n_tok, (enum nvl_k_act)a, dq2, 0) == 0,
              "swiglu_quantize");
        to_host(q1, dq1, rb);
        to_host(q2, dq2, rb);
        to_host(y1, dg1, (size_t)(n * n_tok) * 4);
        to_host(y2, dg2, (size_t)(n * n_tok) * 4);
        CHECK(memcmp(q1, q2, rb) == 0 && memcmp(y1, y2, (size_t)(n * n_tok) * 4) == 0,
              "swiglu_quantize (act %d) differs from swiglu then quantize", a);
        cudaFree(dx);
        cudaFree(dg);
        cudaFree(dy1);
        cudaFree(dy2);
        cudaFree(dq1);
        cudaFree(dq2);
        cudaFree(dg1);
        cudaFree(dg2);
        free(q1);
        free(q2);
        free(y1);
        free(y2);
    }
    free(x);
    free(g);
}

/* The matrix-vector prologue (NVL_K_MV_IN_F32 / NVL_K_MV_IN_RMSNORM) makes exactly the
 * activations the separate quantize / rmsnorm_quantize kernels make: the products must be
 * bit-identical to the unfused ones, for one and several tokens and for a group. */
static void check_matvec_prologue(enum nvl_ggml_type type, int64_t k, int32_t n_tok)
{
    const char *name = nvl_ggml_type_name(type);
    const enum nvl_k_act act = nvl__k_act_for(type);
    const int64_t rows[3] = {1000, 256, 256};
    const size_t xrb = nvl__k_act_row_bytes(act, k);
    float *x = malloc((size_t)(k * n_tok) * 4), *g = malloc((size_t)k * 4);
    ku_floats(x, k * n_tok, 2.0f);
    ku_floats(g, k, 1.0f);
    float *dx = dev_copy(x, (size_t)(k * n_tok) * 4), *dg = dev_copy(g, (size_t)k * 4);
    float *dxn = dev_alloc((size_t)(k * n_tok) * 4);
    uint8_t *dq = dev_alloc(xrb * (size_t)n_tok);
    struct nvl_k_matmul ref[3], fused[3];
    uint8_t *w[3];
    for (int i = 0; i < 3; i++) {
        uint64_t rb;
        w[i] = ku_matrix(type, rows[i], k, &rb);
        ref[i] = (struct nvl_k_matmul){.w = dev_copy(w[i], (size_t)(rb * (uint64_t)rows[i])),
                                       .type = type,
                                       .row_bytes = rb,
                                       .k = k,
                                       .rows = rows[i],
                                       .x = dq,
                                       .x_stride = xrb,
                                       .y = dev_alloc((size_t)(rows[i] * n_tok) * 4),
                                       .y_stride = (size_t)rows[i],
                                       .n_tok = n_tok};
        fused[i] = ref[i];
        fused[i].y = dev_alloc((size_t)(rows[i] * n_tok) * 4);
        fused[i].x = dx;
        fused[i].x_stride = (size_t)k * 4;
    }
    for (int mode = NVL_K_MV_IN_F32; mode <= NVL_K_MV_IN_RMSNORM; mode++) {
        const bool rms = mode == NVL_K_MV_IN_RMSNORM;
        if (rms)
            CHECK(nvl__k_rmsnorm_quantize(dx, dg, dxn, k, n_tok, 1e-5f, act, dq, 0) == 0,
                  "rmsnorm_quantize");
        else
            CHECK(nvl__k_quantize(act, dx, (size_t)k, n_tok, k, dq, 0) == 0, "quantize");
        for (int i = 0; i < 3; i++) {
            fused[i].in = (enum nvl_k_mv_in)mode;
            fused[i].norm = rms ? dg : NULL;
            fused[i].eps = rms ? 1e-5f : 0.0f;
        }
        CHECK(nvl__k_matvec_group(ref, 3, 0) == 0, "%s group launch", name);
        CHECK(nvl__k_matvec_group(fused, 3, 0) == 0, "%s group launch (prologue %d)", name, mode);
        CHECK(nvl__k_matvec(&fused[0], 0) == 0, "%s single launch (prologue %d)", name, mode);
        bool same = true;
        for (int i = 0; i < 3; i++) {
            const size_t nb = (size_t)(rows[i] * n_tok) * 4;
            float *a = malloc(nb), *b = malloc(nb);
            to_host(a, ref[i].y, nb);
            to_host(b, fused[i].y, nb);
            same = same && memcmp(a, b, nb) == 0;
            free(a);
            free(b);
        }
        CHECK(same, "%s k=%lld n_tok=%d: the %s prologue differs from the separate kernels", name,
              (long long)k, n_tok, rms ? "RMSNorm" : "quantizing");
        printf("matvec prologue %-5s %-7s k=%-5lld tokens=%d: bit-identical to the separate "
               "kernels%s\n",
               name, rms ? "rmsnorm" : "f32", (long long)k, n_tok, same ? "" : " NO");
    }
    /* Weights with fp32 activations have no prologue. */
    struct nvl_k_matmul bad = fused[0];
    bad.type = NVL_GGML_TYPE_F16;
    bad.row_bytes = (uint64_t)k * 2;
    CHECK(nvl__k_matvec(&bad, 0) == -EINVAL, "F16 with a prologue is refused");
    for (int i = 0; i < 3; i++) {
        cudaFree((void *)ref[i].w);
        cudaFree(ref[i].y);
        cudaFree(fused[i].y);
        free(w[i]);
    }
    cudaFree(dx);
    cudaFree(dg);
    cudaFree(dxn);
    cudaFree(dq);
    free(x);
    free(g);
}

static void test_matvec_prologue(void)
{
    const enum nvl_ggml_type types[] = {NVL_GGML_TYPE_Q4_0, NVL_GGML_TYPE_Q8_0, NVL_GGML_TYPE_Q4_K,
                                        NVL_GGML_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        check_matvec_prologue(types[i], 4096, 1);
        check_matvec_prologue(types[i], 2048, 6);
    }
    check_matvec_prologue(NVL_GGML_TYPE_Q4_0, 14336, 1);
}

static void test_matvec(void)
{
    /* Tall matrices (several rows per warp), and rows of the 8B down projection (several
     * staged chunks, the last one partial), one token and a batch of four. */
    check_matvec(NVL_GGML_TYPE_Q4_0, 1024, 20000, 1, false);
    for (int i = 0; i < 3; i++) {
        const enum nvl_ggml_type big[3] = {NVL_GGML_TYPE_Q4_0, NVL_GGML_TYPE_Q8_0,
                                           NVL_GGML_TYPE_Q4_K};
        check_matvec(big[i], 14336, 300, 1, false);
        check_matvec(big[i], 14336, 70, 4, true);
    }
    check_matvec(NVL_GGML_TYPE_Q4_K, 1024, 9000, 1, true);
    check_matvec(NVL_GGML_TYPE_Q6_K, 2048, 5000, 1, false);
    check_matvec(NVL_GGML_TYPE_Q3_K, 2048, 5000, 1, false);
    for (size_t i = 0; i < sizeof(mv_types) / sizeof(mv_types[0]); i++) {
        check_matvec(mv_types[i], 2048, 100, 1, false);
        check_matvec(mv_types[i], 4096, 77, 5, true);
        if (nvl_ggml_block_size(mv_types[i]) == 32 || nvl_ggml_block_size(mv_types[i]) == 1)
            check_matvec(mv_types[i], 576, 65, 2, false); /* one-block units (SmolLM2 rows) */
        if (nvl_ggml_block_size(mv_types[i]) == 1)
            check_matvec(mv_types[i], 172, 64, 3, true); /* stories260K's n_ff */
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Dequantization, embedding lookup, GEMM */

/* Dequantization of packed rows (the tiled kernel: one partial segment of 256 chunks, then
 * several and a partial one), of rows with a padded stride and of a source at an odd 2-byte
 * offset (the per-chunk kernel), and the embedding lookup. */
static void check_dequant(enum nvl_ggml_type type, int64_t rows, int64_t k, uint64_t pad,
                          size_t src_off)
{
    uint64_t prb;
    uint8_t *packed = ku_matrix(type, rows, k, &prb);
    const uint64_t rb = prb + pad;
    uint8_t *w = calloc(1, (size_t)(rb * (uint64_t)rows) + src_off);
    for (int64_t r = 0; r < rows; r++)
        memcpy(w + src_off + (uint64_t)r * rb, packed + (uint64_t)r * prb, (size_t)prb);
    float *want = malloc((size_t)(rows * k) * sizeof(float));
    float *got = malloc((size_t)(rows * k) * sizeof(float));
    uint16_t *got16 = malloc((size_t)(rows * k) * sizeof(uint16_t));
    for (int64_t r = 0; r < rows; r++)
        nvl_dequantize_row(type, packed + (uint64_t)r * prb, want + r * k, k);
    uint8_t *dw_base = dev_copy(w, (size_t)(rb * (uint64_t)rows) + src_off);
    const uint8_t *dw = dw_base + src_off;
    float *d32 = dev_alloc((size_t)(rows * k) * sizeof(float));
    uint16_t *d16 = dev_alloc((size_t)(rows * k) * sizeof(uint16_t));
    CHECK(nvl__k_dequant(type, dw, rb, rows, k, d32, false, 0) == 0, "dequant launch");
    CHECK(nvl__k_dequant(type, dw, rb, rows, k, d16, true, 0) == 0, "dequant launch");
    to_host(got, d32, (size_t)(rows * k) * sizeof(float));
    to_host(got16, d16, (size_t)(rows * k) * sizeof(uint16_t));
    int bad = 0;
    for (int64_t j = 0; j < rows * k; j++) {
        if (!(fabsf(got[j] - want[j]) <= 1e-6f * fabsf(want[j])))
            bad++;
        if (!(fabsf(nvl_fp16_to_fp32(got16[j]) - want[j]) <= 1e-3f * fabsf(want[j]) + 1e-7f))
            bad++;
    }
    CHECK(bad == 0, "dequant %s (%lld x %lld, pad %llu, offset %zu): %d elements differ",
          nvl_ggml_type_name(type), (long long)rows, (long long)k, (unsigned long long)pad, src_off,
          bad);

    /* Embedding rows by id. */
    const int32_t ids[4] = {3, 0, 4, 3};
    int32_t *dids = dev_copy(ids, sizeof(ids));
    CHECK(nvl__k_get_rows(type, dw, rb, k, dids, 4, d32, 0) == 0, "get_rows launch");
    to_host(got, d32, (size_t)(4 * k) * sizeof(float));
    bad = 0;
    for (int t = 0; t < 4; t++)
        for (int64_t j = 0; j < k; j++)
            if (!(fabsf(got[t * k + j] - want[ids[t] * k + j]) <=
                  1e-6f * fabsf(want[ids[t] * k + j])))
                bad++;
    CHECK(bad == 0, "get_rows %s: %d elements differ", nvl_ggml_type_name(type), bad);
    cudaFree(dids);
    cudaFree(dw_base);
    cudaFree(d32);
    cudaFree(d16);
    free(packed);
    free(w);
    free(want);
    free(got);
    free(got16);
}

static void test_dequant(void)
{
    for (size_t i = 0; i < sizeof(mv_types) / sizeof(mv_types[0]); i++) {
        check_dequant(mv_types[i], 9, 512, 0, 0);
        check_dequant(mv_types[i], 37, 1024, 0, 0);
        check_dequant(mv_types[i], 5, 512, 16, 0);
        check_dequant(mv_types[i], 5, 512, 0, mv_types[i] == NVL_GGML_TYPE_F32 ? 4 : 2);
    }
}

static void test_gemm(void)
{
    const enum nvl_ggml_type types[] = {NVL_GGML_TYPE_F16,  NVL_GGML_TYPE_Q4_0, NVL_GGML_TYPE_Q8_0,
                                        NVL_GGML_TYPE_Q2_K, NVL_GGML_TYPE_Q3_K, NVL_GGML_TYPE_Q4_K,
                                        NVL_GGML_TYPE_Q6_K, NVL_GGML_TYPE_F32};
    const int64_t rows = 300;
    const int32_t n_tok = 37;
    struct nvl_k_gemm *g;
    /* A small scratch: the product goes through several row chunks. */
    const int grc = nvl__k_gemm_create(128 * 1024 * sizeof(uint16_t), &g);
    if (grc == -ENOTSUP) {
        printf("gemm: no cuBLAS on this machine, skipped\n");
        return;
    }
    CHECK(grc == 0, "gemm create");
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        /* stories260K's n_ff: rows that are not whole 32-element chunks */
        const int64_t k = types[i] == NVL_GGML_TYPE_F32 ? 172 : 1024;
        uint64_t rb;
        uint8_t *w = ku_matrix(types[i], rows, k, &rb);
        float *x = malloc((size_t)(k * n_tok) * sizeof(float));
        float *y0 = malloc((size_t)(rows * n_tok) * sizeof(float));
        float *y = malloc((size_t)(rows * n_tok) * sizeof(float));
        float *wd = malloc((size_t)k * sizeof(float));
        ku_floats(x, k * n_tok, 1.0f);
        ku_floats(y0, rows * n_tok, 1.0f);
        uint8_t *dw = dev_copy(w, (size_t)(rb * (uint64_t)rows));
        float *dx = dev_copy(x, (size_t)(k * n_tok) * sizeof(float));
        float *dy = dev_copy(y0, (size_t)(rows * n_tok) * sizeof(float));
        struct nvl_k_matmul mm = {.w = dw,
                                  .type = types[i],
                                  .row_bytes = rb,
                                  .k = k,
                                  .rows = rows,
                                  .x = dx,
                                  .x_stride = (size_t)k * sizeof(float),
                                  .y = dy,
                                  .y_stride = (size_t)rows,
                                  .n_tok = n_tok,
                                  .accumulate = true};
        CHECK(nvl__k_gemm(g, &mm, 0) == 0, "gemm run");
        to_host(y, dy, (size_t)(rows * n_tok) * sizeof(float));
        double worst = 0.0;
        for (int64_t r = 0; r < rows; r++) {
            nvl_dequantize_row(types[i], w + (uint64_t)r * rb, wd, k);
            for (int t = 0; t < n_tok; t++) {
                double ref = y0[t * rows + r], mag = fabs(ref);
                for (int64_t j = 0; j < k; j++) {
                    ref += (double)wd[j] * x[t * k + j];
                    mag += fabs((double)wd[j] * x[t * k + j]);
                }
                const double err = fabs(y[t * rows + r] - ref) / mag;
                worst = err > worst ? err : worst;
            }
        }
        CHECK(worst <= 4e-3, "gemm %s: relative error %.3g", nvl_ggml_type_name(types[i]), worst);
        printf("gemm   %-5s k=%lld rows=%lld tokens=%d: rel err %.2e\n",
               nvl_ggml_type_name(types[i]), (long long)k, (long long)rows, n_tok, worst);
        cudaFree(dw);
        cudaFree(dx);
        cudaFree(dy);
        free(w);
        free(x);
        free(y0);
        free(y);
        free(wd);
    }
    nvl__k_gemm_destroy(g);
}

/* Three products of different types and sizes sharing one input (rows x_pad floats apart beyond
 * k, so 0 takes the vectorized conversion and 1 the scalar one), through one group call. */
static void check_gemm_group(int64_t x_pad)
{
    const enum nvl_ggml_type types[3] = {NVL_GGML_TYPE_Q4_0, NVL_GGML_TYPE_Q6_K, NVL_GGML_TYPE_F16};
    const int64_t rows[3] = {300, 64, 96}, k = 512;
    const int32_t n_tok = 20;
    const size_t xs = (size_t)(k + x_pad);
    struct nvl_k_gemm *g;
    const int grc = nvl__k_gemm_create(128 * 1024 * sizeof(uint16_t), &g);
    if (grc == -ENOTSUP)
        return;
    CHECK(grc == 0, "gemm create");
    float *x = malloc(xs * (size_t)n_tok * sizeof(float));
    ku_floats(x, (int64_t)xs * n_tok, 1.0f);
    float *dx = dev_copy(x, xs * (size_t)n_tok * sizeof(float));
    struct nvl_k_matmul mm[3];
    uint8_t *w[3];
    uint64_t rb[3];
    for (int i = 0; i < 3; i++) {
        w[i] = ku_matrix(types[i], rows[i], k, &rb[i]);
        mm[i] = (struct nvl_k_matmul){.w = dev_copy(w[i], (size_t)(rb[i] * (uint64_t)rows[i])),
                                      .type = types[i],
                                      .row_bytes = rb[i],
                                      .k = k,
                                      .rows = rows[i],
                                      .x = dx,
                                      .x_stride = xs * sizeof(float),
                                      .y = dev_alloc((size_t)(rows[i] * n_tok) * sizeof(float)),
                                      .y_stride = (size_t)rows[i],
                                      .n_tok = n_tok,
                                      .accumulate = false};
    }
    CHECK(nvl__k_gemm_group(g, mm, 3, 0) == 0, "gemm group run");
    float *wd = malloc((size_t)k * sizeof(float));
    for (int i = 0; i < 3; i++) {
        float *y = malloc((size_t)(rows[i] * n_tok) * sizeof(float));
        to_host(y, mm[i].y, (size_t)(rows[i] * n_tok) * sizeof(float));
        double worst = 0.0;
        for (int64_t r = 0; r < rows[i]; r++) {
            nvl_dequantize_row(types[i], w[i] + (uint64_t)r * rb[i], wd, k);
            for (int t = 0; t < n_tok; t++) {
                double ref = 0.0, mag = 0.0;
                for (int64_t j = 0; j < k; j++) {
                    ref += (double)wd[j] * x[(size_t)t * xs + (size_t)j];
                    mag += fabs((double)wd[j] * x[(size_t)t * xs + (size_t)j]);
                }
                double err = fabs(y[t * rows[i] + r] - ref) / mag;
                if (!(err == err))
                    err = INFINITY;
                worst = err > worst ? err : worst;
            }
        }
        CHECK(worst <= 4e-3, "gemm group %s (x pad %lld): relative error %.3g",
              nvl_ggml_type_name(types[i]), (long long)x_pad, worst);
        cudaFree((void *)mm[i].w);
        cudaFree(mm[i].y);
        free(w[i]);
        free(y);
    }
    printf("gemm group of 3 (x pad %lld): within 4e-3\n", (long long)x_pad);
    /* Products that do not share their input are refused. */
    mm[1].k = 256;
    CHECK(nvl__k_gemm_group(g, mm, 3, 0) == -EINVAL, "gemm group with mixed inputs accepted");
    cudaFree(dx);
    free(x);
    free(wd);
    nvl__k_gemm_destroy(g);
}

/* ------------------------------------------------------------------------------------------ */
/* Vector operations */

static void test_rmsnorm_swiglu(void)
{
    const int64_t n = 4096;
    const int32_t n_tok = 3;
    float *x = malloc((size_t)(n * n_tok) * sizeof(float)), *g = malloc((size_t)n * sizeof(float));
    float *y = malloc((size_t)(n * n_tok) * sizeof(float)), *u = malloc((size_t)n * sizeof(float));
    ku_floats(x, n * n_tok, 4.0f);
    ku_floats(g, n, 1.0f);
    ku_floats(u, n, 2.0f);
    float *dx = dev_copy(x, (size_t)(n * n_tok) * sizeof(float)), *dg = dev_copy(g, (size_t)n * 4);
    float *dy = dev_alloc((size_t)(n * n_tok) * sizeof(float)), *du = dev_copy(u, (size_t)n * 4);
    CHECK(nvl__k_rmsnorm(dx, dg, dy, n, n_tok, 1e-5f, 0) == 0, "rmsnorm launch");
    to_host(y, dy, (size_t)(n * n_tok) * sizeof(float));
    double worst = 0.0;
    for (int t = 0; t < n_tok; t++) {
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++)
            ss += (double)x[t * n + i] * x[t * n + i];
        const double sc = 1.0 / sqrt(ss / (double)n + 1e-5);
        for (int64_t i = 0; i < n; i++) {
            const double ref = x[t * n + i] * sc * g[i];
            const double err = fabs(y[t * n + i] - ref) / (fabs(ref) + 1e-30);
            worst = err > worst ? err : worst;
        }
    }
    CHECK(worst <= 1e-6, "rmsnorm: relative error %.3g", worst);

    CHECK(nvl__k_swiglu(dx, du, n, 0) == 0, "swiglu launch");
    to_host(y, dx, (size_t)n * sizeof(float));
    worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double ref = x[i] / (1.0 + exp(-(double)x[i])) * u[i];
        const double err = fabs(y[i] - ref) / (fabs(ref) + 1e-30);
        worst = err > worst ? err : worst;
    }
    CHECK(worst <= 2e-6, "swiglu: relative error %.3g", worst);
    cudaFree(dx);
    cudaFree(dg);
    cudaFree(dy);
    cudaFree(du);
    free(x);
    free(g);
    free(y);
    free(u);
}

static void check_rope(int32_t head_dim, int32_t n_rot, bool factors)
{
    const int32_t n_head = 4, n_head_kv = 2, n_tok = 3, n_ctx = 64, pos0 = 37;
    const int32_t qd = n_head * head_dim, kvd = n_head_kv * head_dim;
    const float base = 10000.0f, fscale = 0.5f;
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    float *q = malloc((size_t)(n_tok * qd) * 4), *k = malloc((size_t)(n_tok * kvd) * 4);
    float *v = malloc((size_t)(n_tok * kvd) * 4), *ff = malloc((size_t)n_rot / 2 * 4);
    float *qo = malloc((size_t)(n_tok * qd) * 4);
    uint16_t *kc = malloc((size_t)(n_ctx * kvd) * 2), *vc = malloc((size_t)(n_ctx * kvd) * 2);
    ku_floats(q, n_tok * qd, 2.0f);
    ku_floats(k, n_tok * kvd, 2.0f);
    ku_floats(v, n_tok * kvd, 2.0f);
    for (int i = 0; i < n_rot / 2; i++)
        ff[i] = ku_uniform(1.0f, 8.0f);
    float *dq = dev_copy(q, (size_t)(n_tok * qd) * 4), *dk = dev_copy(k, (size_t)(n_tok * kvd) * 4);
    float *dv = dev_copy(v, (size_t)(n_tok * kvd) * 4), *dff = dev_copy(ff, (size_t)n_rot / 2 * 4);
    uint16_t *dkc = dev_alloc((size_t)(n_ctx * kvd) * 2),
             *dvc = dev_alloc((size_t)(n_ctx * kvd) * 2);
    int32_t *dpos = dev_copy(&pos0, sizeof(pos0));
    struct nvl_k_rope r = {.q = dq,
                           .k = dk,
                           .v = dv,
                           .k_cache = dkc,
                           .v_cache = dvc,
                           .pos0 = dpos,
                           .n_tok = n_tok,
                           .n_head = n_head,
                           .n_head_kv = n_head_kv,
                           .head_dim = head_dim,
                           .n_rot = n_rot,
                           .freq_scale = fscale,
                           .theta_scale = theta_scale,
                           .freq_factors = factors ? dff : NULL};
    CHECK(nvl__k_rope_kv(&r, 0) == 0, "rope launch");
    to_host(qo, dq, (size_t)(n_tok * qd) * 4);
    to_host(kc, dkc, (size_t)(n_ctx * kvd) * 2);
    to_host(vc, dvc, (size_t)(n_ctx * kvd) * 2);
    double worst_q = 0.0, worst_kv = 0.0;
    for (int t = 0; t < n_tok; t++) {
        /* The angles as the CPU builds them (float products), then rotation in double. */
        double cs[512];
        float theta = (float)(pos0 + t) * fscale;
        for (int i = 0; i < n_rot / 2; i++) {
            const float th = factors ? theta / ff[i] : theta;
            cs[2 * i] = cos((double)th);
            cs[2 * i + 1] = sin((double)th);
            theta *= theta_scale;
        }
        for (int pass = 0; pass < 2; pass++) {
            const int nh = pass ? n_head_kv : n_head;
            const float *src = pass ? k + t * kvd : q + t * qd;
            for (int h = 0; h < nh; h++)
                for (int i = 0; i < head_dim; i += 2) {
                    const float x0 = src[h * head_dim + i], x1 = src[h * head_dim + i + 1];
                    double y0 = x0, y1 = x1;
                    if (i < n_rot) {
                        y0 = x0 * cs[i] - x1 * cs[i + 1];
                        y1 = x0 * cs[i + 1] + x1 * cs[i];
                    }
                    if (pass == 0) {
                        const float *o = qo + t * qd + h * head_dim + i;
                        const double e = fmax(fabs(o[0] - y0), fabs(o[1] - y1));
                        worst_q = e > worst_q ? e : worst_q;
                    } else {
                        const uint16_t *o = kc + (pos0 + t) * kvd + h * head_dim + i;
                        const double e = fmax(fabs(nvl_fp16_to_fp32(o[0]) - y0),
                                              fabs(nvl_fp16_to_fp32(o[1]) - y1));
                        worst_kv = e > worst_kv ? e : worst_kv;
                    }
                }
        }
        for (int i = 0; i < kvd; i++) {
            const double e = fabs(nvl_fp16_to_fp32(vc[(pos0 + t) * kvd + i]) - v[t * kvd + i]);
            worst_kv = e > worst_kv ? e : worst_kv;
        }
    }
    /* Values up to about 2.8 in magnitude: fp16 holds them to 2^-9. */
    CHECK(worst_q <= 2e-5, "rope q (hd %d, rot %d): error %.3g", head_dim, n_rot, worst_q);
    CHECK(worst_kv <= 2.5e-3, "rope k/v cache (hd %d, rot %d): error %.3g", head_dim, n_rot,
          worst_kv);
    cudaFree(dq);
    cudaFree(dk);
    cudaFree(dv);
    cudaFree(dff);
    cudaFree(dkc);
    cudaFree(dvc);
    cudaFree(dpos);
    free(q);
    free(k);
    free(v);
    free(ff);
    free(qo);
    free(kc);
    free(vc);
}

/* Attention of n_tok queries at positions pos0.. against a double-precision softmax. Cache rows
 * past the batch hold NaN, so a kernel that reads them shows. Batches of 16+ tokens with head_dim
 * 64 or 128 take the tiled kernel (nvl__k_attention_prefill), which splits q and the
 * probabilities into fp16 hi and lo parts for its tensor-core products: its error is measured
 * against sum p |v| of the output (5e-5. A host emulation of the kernel's tiles in fp32 gives up
 * to 1.8e-6 with the split and 2e-5 .. 8e-4 with plain fp16 roundings of q and p, which all but the
 * 3000-key case below would fail; the margin covers the tensor cores' truncating fp32
 * accumulation. An indexing slip gives about 1.) It must give the same bits on a second run and
 * when called directly. The scalar kernel stays within 2e-6 absolute. */
static void check_attention(int32_t head_dim, int32_t n_ctx, int32_t pos0, int32_t n_tok,
                            int32_t n_head, int32_t n_head_kv, float q_scale)
{
    const int32_t qd = n_head * head_dim, kvd = n_head_kv * head_dim;
    const bool tiled = n_tok >= 16 && (head_dim == 64 || head_dim == 128);
    const size_t qbytes = (size_t)n_tok * (size_t)qd * 4;
    float *q = malloc(qbytes), *out = malloc(qbytes), *out2 = malloc(qbytes);
    uint16_t *kc = malloc((size_t)n_ctx * kvd * 2), *vc = malloc((size_t)n_ctx * kvd * 2);
    double *sc = malloc((size_t)n_ctx * sizeof(double));
    ku_floats(q, (int64_t)n_tok * qd, q_scale);
    for (int64_t i = 0; i < (int64_t)n_ctx * kvd; i++) {
        const bool used = i < (int64_t)(pos0 + n_tok) * kvd;
        kc[i] = used ? nvl_fp32_to_fp16(ku_uniform(-1.0f, 1.0f)) : 0x7e00; /* NaN */
        vc[i] = used ? nvl_fp32_to_fp16(ku_uniform(-1.0f, 1.0f)) : 0x7e00;
    }
    float *dq = dev_copy(q, qbytes), *dout = dev_alloc(qbytes);
    uint16_t *dkc = dev_copy(kc, (size_t)n_ctx * kvd * 2),
             *dvc = dev_copy(vc, (size_t)n_ctx * kvd * 2);
    int32_t *dpos = dev_copy(&pos0, sizeof(pos0));
    struct nvl_k_attention a = {.q = dq,
                                .k_cache = dkc,
                                .v_cache = dvc,
                                .out = dout,
                                .pos0 = dpos,
                                .n_tok = n_tok,
                                .n_head = n_head,
                                .n_head_kv = n_head_kv,
                                .head_dim = head_dim,
                                .n_ctx = n_ctx};
    CHECK(nvl__k_attention(&a, 0) == 0, "attention launch");
    to_host(out, dout, qbytes);
    if (tiled) {
        CUDA_OK(cudaMemset(dout, 0xff, qbytes));
        CHECK(nvl__k_attention_prefill(&a, 0) == 0, "attention (prefill) launch");
        to_host(out2, dout, qbytes);
        CHECK(memcmp(out, out2, qbytes) == 0,
              "attention (prefill) hd %d: results differ run to run", head_dim);
    }
    double worst = 0.0;
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_head; h++) {
            const int kvh = h / (n_head / n_head_kv), n_kv = pos0 + t + 1;
            double mx = -INFINITY, sum = 0.0;
            for (int p = 0; p < n_kv; p++) {
                double s = 0.0;
                for (int d = 0; d < head_dim; d++)
                    s += (double)q[(size_t)t * qd + h * head_dim + d] *
                         nvl_fp16_to_fp32(kc[(size_t)p * kvd + kvh * head_dim + d]);
                sc[p] = s / sqrt((double)head_dim);
                mx = fmax(mx, sc[p]);
            }
            for (int p = 0; p < n_kv; p++) {
                sc[p] = exp(sc[p] - mx);
                sum += sc[p];
            }
            for (int d = 0; d < head_dim; d++) {
                double o = 0.0, mag = 0.0;
                for (int p = 0; p < n_kv; p++) {
                    const double v = nvl_fp16_to_fp32(vc[(size_t)p * kvd + kvh * head_dim + d]);
                    o += sc[p] / sum * v;
                    mag += sc[p] / sum * fabs(v);
                }
                const double got = out[(size_t)t * qd + h * head_dim + d];
                /* NaN compares false: counted as the worst error. */
                double e = fabs(got - o) / (tiled ? mag : 1.0);
                if (!(e == e))
                    e = INFINITY;
                worst = e > worst ? e : worst;
            }
        }
    CHECK(worst <= (tiled ? 5e-5 : 2e-6),
          "attention hd %d, %d heads / %d kv, %d positions: error %.3g", head_dim, n_head,
          n_head_kv, pos0 + n_tok, worst);
    printf("attention%s hd=%d heads=%d/%d positions=%d tokens=%d: max error %.2e%s\n",
           tiled ? " (tiled)" : "", head_dim, n_head, n_head_kv, pos0 + n_tok, n_tok, worst,
           tiled ? " of sum p|v|" : "");
    cudaFree(dq);
    cudaFree(dout);
    cudaFree(dkc);
    cudaFree(dvc);
    cudaFree(dpos);
    free(q);
    free(out);
    free(out2);
    free(kc);
    free(vc);
    free(sc);
}

/* The fused decode step (nvl__k_rope_attention, one token) against nvl__k_rope_kv followed by
 * nvl__k_attention on copies of the same inputs: the output and both caches must be the same
 * bits. Cache rows past the new position hold NaN; rows before it are random. */
static void check_rope_attention(int32_t head_dim, int32_t n_rot, bool factors, int32_t n_head,
                                 int32_t n_head_kv, int32_t pos0, int32_t n_ctx)
{
    const int32_t qd = n_head * head_dim, kvd = n_head_kv * head_dim;
    const size_t cbytes = (size_t)n_ctx * (size_t)kvd * 2;
    float *q = malloc((size_t)qd * 4), *k = malloc((size_t)kvd * 4), *v = malloc((size_t)kvd * 4);
    float *ff = malloc((size_t)n_rot / 2 * 4 + 4), *out[2];
    uint16_t *kc = malloc(cbytes), *vc = malloc(cbytes), *kco[2], *vco[2];
    ku_floats(q, qd, 2.0f);
    ku_floats(k, kvd, 2.0f);
    ku_floats(v, kvd, 2.0f);
    for (int i = 0; i < n_rot / 2; i++)
        ff[i] = ku_uniform(1.0f, 8.0f);
    for (int64_t i = 0; i < (int64_t)n_ctx * kvd; i++) {
        const bool used = i < (int64_t)pos0 * kvd;
        kc[i] = used ? nvl_fp32_to_fp16(ku_uniform(-1.0f, 1.0f)) : 0x7e00;
        vc[i] = used ? nvl_fp32_to_fp16(ku_uniform(-1.0f, 1.0f)) : 0x7e00;
    }
    int32_t *dpos = dev_copy(&pos0, sizeof(pos0));
    float *dff = dev_copy(ff, (size_t)n_rot / 2 * 4 + 4);
    for (int fused = 0; fused < 2; fused++) {
        float *dq = dev_copy(q, (size_t)qd * 4), *dk = dev_copy(k, (size_t)kvd * 4);
        float *dv = dev_copy(v, (size_t)kvd * 4), *dout = dev_alloc((size_t)qd * 4);
        uint16_t *dkc = dev_copy(kc, cbytes), *dvc = dev_copy(vc, cbytes);
        const struct nvl_k_rope r = {.q = dq,
                                     .k = dk,
                                     .v = dv,
                                     .k_cache = dkc,
                                     .v_cache = dvc,
                                     .pos0 = dpos,
                                     .n_tok = 1,
                                     .n_head = n_head,
                                     .n_head_kv = n_head_kv,
                                     .head_dim = head_dim,
                                     .n_rot = n_rot,
                                     .freq_scale = 0.5f,
                                     .theta_scale = powf(10000.0f, -2.0f / (float)n_rot),
                                     .freq_factors = factors ? dff : NULL};
        const struct nvl_k_attention a = {.q = dq,
                                          .k_cache = dkc,
                                          .v_cache = dvc,
                                          .out = dout,
                                          .pos0 = dpos,
                                          .n_tok = 1,
                                          .n_head = n_head,
                                          .n_head_kv = n_head_kv,
                                          .head_dim = head_dim,
                                          .n_ctx = n_ctx};
        if (fused) {
            CHECK(nvl__k_rope_attention(&r, &a, 0) == 0, "rope_attention launch");
        } else {
            CHECK(nvl__k_rope_kv(&r, 0) == 0, "rope launch");
            CHECK(nvl__k_attention(&a, 0) == 0, "attention launch");
        }
        out[fused] = malloc((size_t)qd * 4);
        kco[fused] = malloc(cbytes);
        vco[fused] = malloc(cbytes);
        to_host(out[fused], dout, (size_t)qd * 4);
        to_host(kco[fused], dkc, cbytes);
        to_host(vco[fused], dvc, cbytes);
        cudaFree(dq);
        cudaFree(dk);
        cudaFree(dv);
        cudaFree(dout);
        cudaFree(dkc);
        cudaFree(dvc);
    }
    /* A mismatched pair is refused. */
    {
        struct nvl_k_rope r = {.q = (float *)dpos, .n_tok = 1};
        struct nvl_k_attention a = {
            .q = NULL, .n_tok = 1, .n_head = 1, .n_head_kv = 1, .head_dim = 2, .n_ctx = 4};
        CHECK(nvl__k_rope_attention(&r, &a, 0) == -EINVAL, "mismatched rope/attention accepted");
    }
    CHECK(memcmp(out[0], out[1], (size_t)qd * 4) == 0,
          "rope_attention hd %d rot %d pos %d: output differs from rope_kv + attention", head_dim,
          n_rot, pos0);
    CHECK(memcmp(kco[0], kco[1], cbytes) == 0 && memcmp(vco[0], vco[1], cbytes) == 0,
          "rope_attention hd %d rot %d pos %d: caches differ from rope_kv + attention", head_dim,
          n_rot, pos0);
    printf("rope_attention hd=%d rot=%d heads=%d/%d pos=%d: bit-identical to rope_kv + "
           "attention\n",
           head_dim, n_rot, n_head, n_head_kv, pos0);
    cudaFree(dpos);
    cudaFree(dff);
    for (int i = 0; i < 2; i++) {
        free(out[i]);
        free(kco[i]);
        free(vco[i]);
    }
    free(q);
    free(k);
    free(v);
    free(ff);
    free(kc);
    free(vc);
}

/* ------------------------------------------------------------------------------------------ */
/* Token selection */

static uint64_t splitmix_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void test_sampling(void)
{
    const int32_t n = 50000;
    float *l = malloc((size_t)n * sizeof(float));
    float *dl = dev_alloc((size_t)n * sizeof(float));
    int32_t *dout = dev_alloc(sizeof(int32_t)), got;
    int cases = 0;
    for (int trial = 0; trial < 6; trial++) {
        ku_floats(l, n, 8.0f);
        /* Ties at the top and at the top-k border: the smaller id must win. */
        l[100] = l[4000] = 9.5f;
        for (int i = 0; i < 60; i++)
            l[1000 + 17 * i] = 7.25f;
        if (trial == 5)
            for (int i = 0; i < n; i++)
                l[i] = (float)(i % 7); /* massive ties */
        CUDA_OK(cudaMemcpy(dl, l, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
        int32_t best = 0;
        for (int i = 1; i < n; i++)
            if (l[i] > l[best])
                best = i;
        CHECK(nvl__k_argmax(dl, n, dout, 0) == 0, "argmax launch");
        to_host(&got, dout, sizeof(got));
        CHECK(got == best, "argmax: %d, want %d", got, best);

        const int top_ks[] = {1, 40, 333, 1024};
        const float top_ps[] = {1.0f, 0.9f, 0.3f};
        const float min_ps[] = {0.0f, 0.05f};
        const float temps[] = {0.7f, 1.3f};
        for (size_t a = 0; a < 4; a++)
            for (size_t b = 0; b < 3; b++)
                for (size_t c = 0; c < 2; c++)
                    for (size_t d = 0; d < 2; d++) {
                        struct nvl_sampler_params sp;
                        nvl_sampler_params_default(&sp);
                        sp.top_k = top_ks[a];
                        sp.top_p = top_ps[b];
                        sp.min_p = min_ps[c];
                        sp.temperature = temps[d];
                        sp.seed = 1000 + (uint64_t)cases;
                        struct nvl_sampler *s;
                        CHECK(nvl_sampler_create(&sp, n, &s) == 0, "sampler");
                        const int32_t want = nvl_sampler_sample(s, l);
                        nvl_sampler_destroy(s);
                        uint64_t st = sp.seed;
                        struct nvl_k_sample kp = {
                            .top_k = sp.top_k,
                            .top_p = sp.top_p,
                            .min_p = sp.min_p,
                            .temperature = sp.temperature,
                            .u = (double)(splitmix_next(&st) >> 11) * 0x1.0p-53,
                        };
                        CHECK(nvl__k_sample(dl, n, &kp, dout, 0) == 0, "sample launch");
                        to_host(&got, dout, sizeof(got));
                        CHECK(got == want, "sample k=%d p=%g min_p=%g t=%g trial %d: %d, want %d",
                              sp.top_k, sp.top_p, sp.min_p, sp.temperature, trial, got, want);
                        cases++;
                    }
    }
    printf("sampling: %d cases against nvl_sampler_sample\n", cases);
    cudaFree(dl);
    cudaFree(dout);
    free(l);
}

int main(void)
{
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < 1) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    test_quantize();
    test_matvec();
    test_matvec_group();
    test_matvec_swiglu();
    test_matvec_prologue();
    test_fused_quantize();
    test_dequant();
    test_gemm();
    check_gemm_group(0);
    check_gemm_group(1);
    test_rmsnorm_swiglu();
    check_rope(64, 64, false);
    check_rope(64, 32, true);
    check_rope(8, 8, false);
    check_attention(64, 300, 250, 3, 8, 2, 1.0f);
    check_attention(128, 5000, 4000, 2, 8, 2, 1.0f);
    check_attention(8, 40, 0, 17, 8, 2, 1.0f);
    /* One token (decode): the scalar kernel alone, at the first position and well past the
     * block's 256 threads. */
    check_attention(128, 2048, 0, 1, 32, 8, 1.0f);
    check_attention(128, 2048, 700, 1, 32, 8, 3.0f);
    check_attention(6, 50, 20, 1, 4, 2, 1.0f);
    check_rope_attention(128, 128, false, 32, 8, 0, 256);
    check_rope_attention(128, 128, true, 32, 8, 700, 1024);
    check_rope_attention(64, 32, true, 8, 2, 37, 64);
    check_rope_attention(8, 8, false, 4, 4, 300, 512);
    check_rope_attention(6, 4, false, 4, 2, 9, 16);
    /* The tiled kernel: whole and partial query and key tiles, a batch at position 0 and later,
     * GQA and plain heads, peaked softmaxes (q scaled up) that move the running maximum. */
    check_attention(128, 600, 0, 512, 8, 2, 1.0f);
    check_attention(128, 700, 37, 77, 4, 4, 3.0f);
    check_attention(128, 4096, 3000, 40, 8, 1, 1.0f);
    check_attention(64, 1000, 300, 100, 8, 2, 3.0f);
    check_attention(64, 64, 0, 64, 2, 1, 1.0f);
    check_attention(64, 20, 3, 16, 4, 2, 8.0f);
    test_sampling();
    if (failures) {
        printf("%d failures\n", failures);
        return 1;
    }
    printf("all kernels match their references\n");
    return 0;
}
