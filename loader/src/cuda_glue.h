/* The few CUDA runtime calls the loader core and the CPU backends make, behind one C interface
 * that also builds without CUDA (every function then fails -ENOTSUP or answers "no device"). */
#ifndef NVL_LOADER_CUDA_GLUE_H
#define NVL_LOADER_CUDA_GLUE_H

#include <stddef.h>
#include <stdint.h>

/* 0 when CUDA device `dev` exists, with its name in name; -ENODEV (or -ENOTSUP without CUDA)
 * otherwise, with the reason in name. */
int nvl__cuda_device_probe(int dev, char *name, size_t name_len);

/* Makes dev the calling thread's current CUDA device. */
int nvl__cuda_set_device(int dev);

/* Pins host memory [p, p + n) for the GPU (mapped, portable) and returns its device pointer. */
int nvl__cuda_host_register(void *p, size_t n, void **dev);
void nvl__cuda_host_unregister(void *p);

/* Host-mapped pinned memory (zeroed) and its device pointer. */
int nvl__cuda_host_alloc(size_t n, void **host, void **dev);
void nvl__cuda_host_free(void *host);

/* 1 when p is a CUDA device (or managed) pointer, 0 for host memory or without CUDA. */
int nvl__cuda_is_device_ptr(const void *p);

/* Synchronous copies between host and device memory. */
int nvl__cuda_memcpy_h2d(void *dst, const void *src, size_t n);
int nvl__cuda_memcpy_d2h(void *dst, const void *src, size_t n);
/* Synchronous copy within device memory (on the GPU's copy engine, not through the CPU). */
int nvl__cuda_memcpy_d2d(void *dst, const void *src, size_t n);

/* Device memory for bounce buffers. */
int nvl__cuda_malloc(size_t n, void **p);
void nvl__cuda_free(void *p);

/* Makes `stream` wait on the GPU until (int32_t)(*word - value) >= 0 (a stream memory operation,
 * cuStreamWaitValue32 with CU_STREAM_WAIT_VALUE_GEQ). word is a device pointer. */
int nvl__cuda_stream_wait_word(void *stream, const uint32_t *word, uint32_t value);

#endif
