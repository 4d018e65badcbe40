/* Stream waits and writes on completion words (nvl_host/stream.h). */
#include "nvl_host/stream.h"

#include <errno.h>
#include <pthread.h>

#include <cuda.h>

#include "nvl_device/engine.h"

typedef CUresult (*wait_fn)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);
typedef CUresult (*write_fn)(CUstream, CUdeviceptr, cuuint32_t, unsigned int);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static wait_fn wait_value;
static write_fn write_value;

static void *entry(const char *name)
{
    enum cudaDriverEntryPointQueryResult q;
    void *p = NULL;

    /* The CUDA 12.0 signature of the call (the v2 of the stream memory operations). */
    if (cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

/* Since CUDA 12 the stream memory operations are always available (the device attribute that
 * gated them is gone); the fallbacks cover drivers that still refuse them. */
static void resolve(void)
{
    wait_value = (wait_fn)entry("cuStreamWaitValue32");
    write_value = (write_fn)entry("cuStreamWriteValue32");
}

int nvl_host_stream_wait_word(cudaStream_t stream, const uint32_t *word, uint32_t value,
                              uint64_t timeout_ns)
{
    pthread_once(&once, resolve);
    if (wait_value) {
        if (wait_value((CUstream)stream, (CUdeviceptr)(uintptr_t)word, value,
                       CU_STREAM_WAIT_VALUE_GEQ) == CUDA_SUCCESS)
            return 0;
    }
    return nvl_engine_wait_word_launch(word, value, timeout_ns, NULL, stream);
}

int nvl_host_stream_write_word(cudaStream_t stream, uint32_t *word, uint32_t value)
{
    pthread_once(&once, resolve);
    if (write_value) {
        if (write_value((CUstream)stream, (CUdeviceptr)(uintptr_t)word, value,
                        CU_STREAM_WRITE_VALUE_DEFAULT) == CUDA_SUCCESS)
            return 0;
    }
    return nvl_engine_write_word_launch(word, value, stream);
}

const char *nvl_host_stream_mechanism(void)
{
    pthread_once(&once, resolve);
    return wait_value && write_value ? "stream memory operations" : "wait kernel";
}
