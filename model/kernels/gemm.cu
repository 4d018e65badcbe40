/* Batched products (prompt processing) through cuBLAS: the weight is dequantized to fp16 in row
 * chunks that fit the scratch buffer, the activations are converted to fp16 once (once for all
 * the products of a group that share them: Q/K/V, gate/up), and each chunk
 * is one cublasGemmEx with fp32 accumulation and fp32 output (accumulating into y for the
 * residual products). The products run on the tensor cores. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <cublas_v2.h>
#include <cuda_fp16.h>

#include "kcommon.cuh"
#include "nvl_driver/log.h"

/* cuBLAS is loaded at run time (NVL_CUBLAS_LIB, else libcublas.so.13 / libcublas.so from the
 * library path): a machine without it still runs everything, the batched products then going
 * through the matrix-vector kernels. */
struct cublas_api {
    void *lib;
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    /* the C symbol; C++ overloads the name */
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                              const void *, const void *, cudaDataType, int, const void *,
                              cudaDataType, int, const void *, void *, cudaDataType, int,
                              cublasComputeType_t, cublasGemmAlgo_t);
};
static struct cublas_api cublas;
static pthread_once_t cublas_once = PTHREAD_ONCE_INIT;

static void cublas_load(void)
{
    const char *env = getenv("NVL_CUBLAS_LIB");
    const char *names[] = {env, "libcublas.so.13", "libcublas.so"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !cublas.lib; i++)
        if (names[i])
            cublas.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!cublas.lib) {
        nvl_log_info("kernels", "cuBLAS not found (%s): batches use the matrix-vector kernels",
                     dlerror());
        return;
    }
    cublas.create = (decltype(cublas.create))dlsym(cublas.lib, "cublasCreate_v2");
    cublas.destroy = (decltype(cublas.destroy))dlsym(cublas.lib, "cublasDestroy_v2");
    cublas.set_stream = (decltype(cublas.set_stream))dlsym(cublas.lib, "cublasSetStream_v2");
    cublas.gemm_ex = (decltype(cublas.gemm_ex))dlsym(cublas.lib, "cublasGemmEx");
    if (!cublas.create || !cublas.destroy || !cublas.set_stream || !cublas.gemm_ex) {
        nvl_log_error("kernels", "cuBLAS lacks the functions the GEMM path needs");
        dlclose(cublas.lib);
        cublas.lib = NULL;
    }
}

struct nvl_k_gemm {
    cublasHandle_t handle;
    void *w16; /* fp16 weight rows */
    size_t w16_bytes;
    __half *x16; /* fp16 activations */
    size_t x16_elems;
};

/* Activation rows (x_stride bytes apart) to packed fp16 rows of k. */
static __global__ void k_rows_to_f16(const uint8_t *__restrict__ x, size_t x_stride, int32_t n_tok,
                                     int64_t k, __half *__restrict__ y)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n_tok * k)
        return;
    const float *row = (const float *)(x + (size_t)(i / k) * x_stride);
    y[i] = __float2half_rn(row[i % k]);
}

/* The same, four elements per thread (k a multiple of 4, rows 16-byte aligned). */
static __global__ void k_rows_to_f16_x4(const uint8_t *__restrict__ x, size_t x_stride,
                                        int32_t n_tok, int64_t k, __half *__restrict__ y)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, k4 = k / 4;
    if (i >= (int64_t)n_tok * k4)
        return;
    const float4 v = ((const float4 *)(x + (size_t)(i / k4) * x_stride))[i % k4];
    const __half2 lo = __floats2half2_rn(v.x, v.y), hi = __floats2half2_rn(v.z, v.w);
    uint2 packed;
    packed.x = *(const uint32_t *)&lo;
    packed.y = *(const uint32_t *)&hi;
    ((uint2 *)y)[i] = packed;
}

extern "C" size_t nvl__k_gemm_vram_bytes(size_t scratch_bytes, int64_t max_k, int32_t max_tok)
{
    /* cuBLAS keeps a workspace of its own, a few MiB on Hopper. */
    return scratch_bytes + (size_t)max_k * (size_t)max_tok * sizeof(__half) + (32u << 20);
}

extern "C" int nvl__k_gemm_create(size_t scratch_bytes, struct nvl_k_gemm **out)
{
    *out = NULL;
    pthread_once(&cublas_once, cublas_load);
    if (!cublas.lib)
        return -ENOTSUP;
    struct nvl_k_gemm *g = (struct nvl_k_gemm *)calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    const cublasStatus_t st = cublas.create(&g->handle);
    if (st != CUBLAS_STATUS_SUCCESS) {
        nvl_log_error("kernels", "cublasCreate: status %d", (int)st);
        free(g);
        return -EIO;
    }
    if (cudaMalloc(&g->w16, scratch_bytes) != cudaSuccess) {
        cudaGetLastError();
        cublas.destroy(g->handle);
        free(g);
        return -ENOMEM;
    }
    g->w16_bytes = scratch_bytes;
    *out = g;
    return 0;
}

void nvl__k_gemm_destroy(struct nvl_k_gemm *g)
{
    if (!g)
        return;
    cudaFree(g->w16);
    cudaFree(g->x16);
    cublas.destroy(g->handle);
    free(g);
}

/* Converts the shared activations of a group to fp16 (once) into g->x16. */
static int gemm_prepare_x(struct nvl_k_gemm *g, const struct nvl_k_matmul *mm, cudaStream_t stream)
{
    const size_t xe = (size_t)mm->n_tok * (size_t)mm->k;
    if (xe > g->x16_elems) {
        /* Grows outside any graph capture: batches reach this path, single tokens never do. */
        cudaFree(g->x16);
        g->x16 = NULL;
        g->x16_elems = 0;
        if (cudaMalloc((void **)&g->x16, xe * sizeof(__half)) != cudaSuccess) {
            cudaGetLastError();
            return -ENOMEM;
        }
        g->x16_elems = xe;
    }
    if (mm->k % 4 == 0 && mm->x_stride % 16 == 0 && !((uintptr_t)mm->x & 15))
        k_rows_to_f16_x4<<<k_blocks((int64_t)xe / 4, K_THREADS), K_THREADS, 0, stream>>>(
            (const uint8_t *)mm->x, mm->x_stride, mm->n_tok, mm->k, g->x16);
    else
        k_rows_to_f16<<<k_blocks((int64_t)xe, K_THREADS), K_THREADS, 0, stream>>>(
            (const uint8_t *)mm->x, mm->x_stride, mm->n_tok, mm->k, g->x16);
    return nvl__k_launch_check("gemm (activations)");
}

/* One product against the fp16 activations in g->x16. */
static int gemm_run(struct nvl_k_gemm *g, const struct nvl_k_matmul *mm, cudaStream_t stream)
{
    const int64_t chunk = (int64_t)(g->w16_bytes / ((size_t)mm->k * sizeof(__half)));
    const float alpha = 1.0f, beta = mm->accumulate ? 1.0f : 0.0f;
    for (int64_t r0 = 0; r0 < mm->rows; r0 += chunk) {
        const int64_t nr = mm->rows - r0 < chunk ? mm->rows - r0 : chunk;
        const int rc =
            nvl__k_dequant(mm->type, (const uint8_t *)mm->w + (uint64_t)r0 * mm->row_bytes,
                           mm->row_bytes, nr, mm->k, g->w16, true, stream);
        if (rc)
            return rc;
        /* Column-major view: W chunk is k x nr (lda k), X is k x n_tok (ldb k), Y is
         * nr x n_tok at y + r0 (ldc y_stride): Y = W^T X. */
        const cublasStatus_t st = cublas.gemm_ex(
            g->handle, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, mm->n_tok, (int)mm->k, &alpha, g->w16,
            CUDA_R_16F, (int)mm->k, g->x16, CUDA_R_16F, (int)mm->k, &beta, mm->y + r0, CUDA_R_32F,
            (int)mm->y_stride, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS) {
            nvl_log_error("kernels", "cublasGemmEx (%lld x %d x %lld): status %d", (long long)nr,
                          mm->n_tok, (long long)mm->k, (int)st);
            return -EIO;
        }
    }
    return 0;
}

extern "C" int nvl__k_gemm_group(struct nvl_k_gemm *g, const struct nvl_k_matmul *mm, int n,
                                 cudaStream_t stream)
{
    if (n < 1)
        return -EINVAL;
    for (int i = 0; i < n; i++) {
        const struct nvl_k_matmul *m = &mm[i];
        if (m->n_tok < 1 || m->rows < 1 || m->k < 1 || m->k % nvl_ggml_block_size(m->type) ||
            m->x != mm[0].x || m->x_stride != mm[0].x_stride || m->n_tok != mm[0].n_tok ||
            m->k != mm[0].k)
            return -EINVAL;
    }
    if (g->w16_bytes / ((size_t)mm[0].k * sizeof(__half)) < 1)
        return -ENOSPC;
    int rc = gemm_prepare_x(g, &mm[0], stream);
    if (rc)
        return rc;
    if (cublas.set_stream(g->handle, stream) != CUBLAS_STATUS_SUCCESS)
        return -EIO;
    for (int i = 0; i < n && !rc; i++)
        rc = gemm_run(g, &mm[i], stream);
    return rc;
}

extern "C" int nvl__k_gemm(struct nvl_k_gemm *g, const struct nvl_k_matmul *mm, cudaStream_t stream)
{
    return nvl__k_gemm_group(g, mm, 1, stream);
}
