/* The copy bandwidths the GPU benchmarks (nvinfer --benchmark, bench_matvec) put their figures
 * next to, measured one way for all of them. Include only in programs built with CUDA. */
#ifndef NVL_TOOLS_BENCH_CUDA_H
#define NVL_TOOLS_BENCH_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <cuda_runtime_api.h>

#define BENCH_CUDA_COPY_BYTES (1ull << 30)
#define BENCH_CUDA_COPY_REPS  10

/* Bytes per second of cudaMemcpy from src to dst (events around BENCH_CUDA_COPY_REPS copies
 * after a warm-up); 0 on failure. */
static inline double bench_cuda_copy_bw(void *dst, const void *src, size_t n,
                                        enum cudaMemcpyKind kind)
{
    cudaEvent_t a, b;
    float ms = 0.0f;
    if (cudaEventCreate(&a) != cudaSuccess || cudaEventCreate(&b) != cudaSuccess)
        return 0.0;
    cudaMemcpy(dst, src, n, kind);
    cudaEventRecord(a, 0);
    for (int i = 0; i < BENCH_CUDA_COPY_REPS; i++)
        cudaMemcpyAsync(dst, src, n, kind, 0);
    cudaEventRecord(b, 0);
    const bool ok =
        cudaEventSynchronize(b) == cudaSuccess && cudaEventElapsedTime(&ms, a, b) == cudaSuccess;
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaGetLastError();
    return ok && ms > 0 ? (double)n * BENCH_CUDA_COPY_REPS / (ms * 1e-3) : 0.0;
}

/* Device-to-device bandwidth, read + write counted (as the HBM roofline counts it), and pinned
 * host-to-device bandwidth (h2d may be NULL): the best of three rounds of BENCH_CUDA_COPY_BYTES
 * copies, since host-to-device copies in particular vary from round to round. 0 where the
 * memory could not be had. */
static inline void bench_cuda_bandwidth(double *d2d, double *h2d)
{
    void *d0 = NULL, *d1 = NULL, *h = NULL;
    *d2d = 0.0;
    if (h2d)
        *h2d = 0.0;
    if (cudaMalloc(&d0, BENCH_CUDA_COPY_BYTES) == cudaSuccess &&
        cudaMalloc(&d1, BENCH_CUDA_COPY_BYTES) == cudaSuccess) {
        cudaMemset(d0, 1, BENCH_CUDA_COPY_BYTES);
        const bool pinned =
            h2d && cudaHostAlloc(&h, BENCH_CUDA_COPY_BYTES, cudaHostAllocDefault) == cudaSuccess;
        if (pinned)
            memset(h, 1, BENCH_CUDA_COPY_BYTES);
        for (int round = 0; round < 3; round++) {
            const double d =
                2.0 * bench_cuda_copy_bw(d1, d0, BENCH_CUDA_COPY_BYTES, cudaMemcpyDeviceToDevice);
            *d2d = d > *d2d ? d : *d2d;
            if (pinned) {
                const double hd =
                    bench_cuda_copy_bw(d0, h, BENCH_CUDA_COPY_BYTES, cudaMemcpyHostToDevice);
                *h2d = hd > *h2d ? hd : *h2d;
            }
        }
        if (pinned)
            cudaFreeHost(h);
    }
    cudaFree(d0);
    cudaFree(d1);
    cudaGetLastError();
}

#endif
