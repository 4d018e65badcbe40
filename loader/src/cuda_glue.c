/* CUDA runtime calls of the loader, or their CPU-only stand-ins. */
#include "cuda_glue.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#ifdef NVL_HAVE_CUDA

#include <cuda.h>
#include <cuda_runtime_api.h>

int nvl__cuda_device_probe(int dev, char *name, size_t name_len)
{
    struct cudaDeviceProp prop;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);

    if (e != cudaSuccess) {
        snprintf(name, name_len, "no CUDA device (%s)", cudaGetErrorString(e));
        return -ENODEV;
    }
    if (dev < 0 || dev >= n) {
        snprintf(name, name_len, "CUDA device %d absent (%d present)", dev, n);
        return -ENODEV;
    }
    if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        snprintf(name, name_len, "CUDA device %d unreadable", dev);
        return -ENODEV;
    }
    snprintf(name, name_len, "%s", prop.name);
    return 0;
}

int nvl__cuda_set_device(int dev)
{
    return cudaSetDevice(dev) == cudaSuccess ? 0 : -ENODEV;
}

int nvl__cuda_host_register(void *p, size_t n, void **dev)
{
    if (cudaHostRegister(p, n, cudaHostRegisterMapped | cudaHostRegisterPortable) != cudaSuccess)
        return -EIO;
    if (cudaHostGetDevicePointer(dev, p, 0) != cudaSuccess) {
        cudaHostUnregister(p);
        return -EIO;
    }
    return 0;
}

void nvl__cuda_host_unregister(void *p)
{
    cudaHostUnregister(p);
}

int nvl__cuda_host_alloc(size_t n, void **host, void **dev)
{
    if (cudaHostAlloc(host, n, cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess)
        return -ENOMEM;
    memset(*host, 0, n);
    if (cudaHostGetDevicePointer(dev, *host, 0) != cudaSuccess) {
        cudaFreeHost(*host);
        return -EIO;
    }
    return 0;
}

void nvl__cuda_host_free(void *host)
{
    cudaFreeHost(host);
}

int nvl__cuda_is_device_ptr(const void *p)
{
    struct cudaPointerAttributes a;

    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "invalid value" of a plain host pointer */
        return 0;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

/* The copies run on the calling thread's own default stream and wait for it: cudaMemcpy would
 * use the legacy stream, which the copies of every loader thread share, and a device-to-device
 * cudaMemcpy returns before the copy is done, so the read could be reported complete (and the
 * compute stream released) while its bytes are still on their way. */
static int copy_sync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
    if (cudaMemcpyAsync(dst, src, n, kind, cudaStreamPerThread) != cudaSuccess ||
        cudaStreamSynchronize(cudaStreamPerThread) != cudaSuccess)
        return -EIO;
    return 0;
}

int nvl__cuda_memcpy_h2d(void *dst, const void *src, size_t n)
{
    return copy_sync(dst, src, n, cudaMemcpyHostToDevice);
}

int nvl__cuda_memcpy_d2h(void *dst, const void *src, size_t n)
{
    return copy_sync(dst, src, n, cudaMemcpyDeviceToHost);
}

int nvl__cuda_memcpy_d2d(void *dst, const void *src, size_t n)
{
    return copy_sync(dst, src, n, cudaMemcpyDeviceToDevice);
}

int nvl__cuda_malloc(size_t n, void **p)
{
    return cudaMalloc(p, n) == cudaSuccess ? 0 : -ENOMEM;
}

void nvl__cuda_free(void *p)
{
    cudaFree(p);
}

/* cuStreamWaitValue32 is a driver API call; take it through the runtime's entry-point query so
 * the loader needs no link against libcuda. */
typedef CUresult (*stream_wait_fn)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);

int nvl__cuda_stream_wait_word(void *stream, const uint32_t *word, uint32_t value)
{
    static stream_wait_fn fn;
    enum cudaDriverEntryPointQueryResult q;

    if (!fn) {
        void *p = NULL;

        /* cuStreamWaitValue32 has had this ABI since CUDA 8; ask for the 12.0 version. */
        if (cudaGetDriverEntryPointByVersion("cuStreamWaitValue32", &p, 12000, cudaEnableDefault,
                                             &q) != cudaSuccess ||
            q != cudaDriverEntryPointSuccess || !p)
            return -ENOTSUP;
        fn = (stream_wait_fn)p;
    }
    if (fn((CUstream)stream, (CUdeviceptr)(uintptr_t)word, value, CU_STREAM_WAIT_VALUE_GEQ) !=
        CUDA_SUCCESS)
        return -EIO;
    return 0;
}

#else

int nvl__cuda_device_probe(int dev, char *name, size_t name_len)
{
    (void)dev;
    snprintf(name, name_len, "built without CUDA");
    return -ENOTSUP;
}

int nvl__cuda_set_device(int dev)
{
    (void)dev;
    return -ENOTSUP;
}

int nvl__cuda_host_register(void *p, size_t n, void **dev)
{
    (void)p;
    (void)n;
    *dev = NULL;
    return -ENOTSUP;
}

void nvl__cuda_host_unregister(void *p)
{
    (void)p;
}

int nvl__cuda_host_alloc(size_t n, void **host, void **dev)
{
    (void)n;
    *host = NULL;
    *dev = NULL;
    return -ENOTSUP;
}

void nvl__cuda_host_free(void *host)
{
    (void)host;
}

int nvl__cuda_is_device_ptr(const void *p)
{
    (void)p;
    return 0;
}

int nvl__cuda_memcpy_h2d(void *dst, const void *src, size_t n)
{
    (void)dst;
    (void)src;
    (void)n;
    return -ENOTSUP;
}

int nvl__cuda_memcpy_d2h(void *dst, const void *src, size_t n)
{
    (void)dst;
    (void)src;
    (void)n;
    return -ENOTSUP;
}

int nvl__cuda_memcpy_d2d(void *dst, const void *src, size_t n)
{
    (void)dst;
    (void)src;
    (void)n;
    return -ENOTSUP;
}

int nvl__cuda_malloc(size_t n, void **p)
{
    (void)n;
    *p = NULL;
    return -ENOTSUP;
}

void nvl__cuda_free(void *p)
{
    (void)p;
}

int nvl__cuda_stream_wait_word(void *stream, const uint32_t *word, uint32_t value)
{
    (void)stream;
    (void)word;
    (void)value;
    return -ENOTSUP;
}

#endif
