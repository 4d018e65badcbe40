/* nvl_crc32c_gpu() (model/kernels/crc32c.cu) against the CPU's nvl_crc32c() on random buffers of
 * odd sizes and alignments, in device memory and in mapped pinned host memory (where a loader
 * slot lives), with running values carried across calls, and one buffer larger than the kernel's
 * grid covers in one pass. Exits 77 without a CUDA GPU. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "nvl_model/crc32c.h"

static int failures;

static void check(const char *where, const uint8_t *dev, const uint8_t *host, uint64_t len,
                  uint32_t seed)
{
    uint32_t got = 0;
    const uint32_t want = nvl_crc32c(seed, host, len);
    const int rc = nvl_crc32c_gpu(seed, dev, len, NULL, &got);
    if (rc || got != want) {
        printf("FAIL %s: %llu bytes at +%u, seed 0x%08x: GPU 0x%08x (rc %d), CPU 0x%08x\n", where,
               (unsigned long long)len, (unsigned)((uintptr_t)dev & 63), seed, got, rc, want);
        failures++;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(void)
{
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("test_crc32c_gpu: no CUDA GPU, skipped\n");
        return 77;
    }
    /* Larger than one launch's grid (1024 blocks x 256 threads x 4 KiB = 1 GiB) would cost too
     * much memory; 300 MiB + 5 still gives every thread several chunks. */
    const uint64_t big = (300ull << 20) + 5;
    uint8_t *host = malloc(big + 64), *pinned = NULL, *dev = NULL, *pinned_dev = NULL;
    if (!host || cudaMalloc((void **)&dev, big + 64) != cudaSuccess ||
        cudaHostAlloc((void **)&pinned, (16u << 20) + 64, cudaHostAllocMapped) != cudaSuccess ||
        cudaHostGetDevicePointer((void **)&pinned_dev, pinned, 0) != cudaSuccess) {
        printf("test_crc32c_gpu: cannot allocate the buffers\n");
        return 1;
    }
    srand(20261121);
    for (uint64_t i = 0; i < big + 64; i++)
        host[i] = (uint8_t)rand();
    if (cudaMemcpy(dev, host, big + 64, cudaMemcpyHostToDevice) != cudaSuccess)
        return 1;
    memcpy(pinned, host, (16u << 20) + 64);

    static const uint64_t lens[] = {1,     2,     3,     7,       8,           9,
                                    31,    255,   4095,  4096,    4097,        8191,
                                    12289, 65537, 99991, 1048573, 4 << 20 | 1, (16u << 20) - 3};
    int cases = 0;
    for (unsigned li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
        for (unsigned off = 0; off < 64; off += 13) {
            const uint32_t seed = li & 1 ? (uint32_t)rand() : 0;
            check("device", dev + off, host + off, lens[li], seed);
            check("mapped pinned", pinned_dev + off, host + off, lens[li], seed);
            cases += 2;
        }
    }
    /* A running value carried over uneven pieces equals the CRC of the whole. */
    uint32_t run = 0;
    uint64_t at = 0;
    for (uint64_t piece = 1; at + piece <= (8u << 20); piece = piece * 3 + 7) {
        if (nvl_crc32c_gpu(run, dev + at, piece, NULL, &run))
            failures++;
        at += piece;
    }
    if (run != nvl_crc32c(0, host, at)) {
        printf("FAIL pieces: %llu bytes in pieces: GPU 0x%08x, CPU 0x%08x\n",
               (unsigned long long)at, run, nvl_crc32c(0, host, at));
        failures++;
    }
    /* Empty: the running value unchanged. */
    uint32_t same = 0;
    if (nvl_crc32c_gpu(0x1234abcdu, dev, 0, NULL, &same) || same != 0x1234abcdu)
        failures++;
    /* The big one, with its speed (device memory). */
    uint32_t warm;
    nvl_crc32c_gpu(0, dev, 1u << 20, NULL, &warm);
    const double t0 = now_s();
    uint32_t got = 0;
    nvl_crc32c_gpu(0, dev + 3, big, NULL, &got);
    const double dt = now_s() - t0;
    const uint32_t want = nvl_crc32c(0, host + 3, big);
    if (got != want) {
        printf("FAIL big: GPU 0x%08x, CPU 0x%08x\n", got, want);
        failures++;
    }
    /* A known value: RFC 3720 B.4, 32 bytes of zeros. */
    cudaMemset(dev, 0, 32);
    if (nvl_crc32c_gpu(0, dev, 32, NULL, &got) || got != 0x8A9136AAu) {
        printf("FAIL RFC 3720 zeros: 0x%08x\n", got);
        failures++;
    }
    printf("test_crc32c_gpu: %d cases, pieces, empty, RFC 3720 vector; %llu MiB in %.1f ms "
           "(%.1f GB/s from device memory): %s\n",
           cases, (unsigned long long)(big >> 20), dt * 1e3, big / dt / 1e9,
           failures ? "FAILED" : "all equal to the CPU");
    cudaFreeHost(pinned);
    cudaFree(dev);
    free(host);
    return failures ? 1 : 0;
}
