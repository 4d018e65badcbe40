/* GPU-side waits and signals on 32-bit completion words, so compute streams wait for a read on
 * the GPU rather than the CPU synchronising per layer.
 *
 * Both use stream memory operations (cuStreamWaitValue32 / cuStreamWriteValue32, reached through
 * the runtime's driver entry-point query so nothing links libcuda) and fall back to a one-thread
 * kernel of device/ where those are unavailable. Words compare wrap-safe:
 * (int32_t)(*word - value) >= 0. */
#ifndef NVL_HOST_STREAM_H
#define NVL_HOST_STREAM_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Makes `stream` wait until *word (a device pointer: device memory or mapped pinned memory)
 * reaches value. The fallback kernel gives up after timeout_ns so a lost wake-up is no hang.
 * Returns 0 or -EIO. Costs the CPU one enqueue. */
int nvl_host_stream_wait_word(cudaStream_t stream, const uint32_t *word, uint32_t value,
                              uint64_t timeout_ns);

/* Makes `stream` store value to *word once the work before it on the stream is done (e.g. a copy
 * out of a staging buffer, so the engine may overwrite it). Returns 0 or -EIO. */
int nvl_host_stream_write_word(cudaStream_t stream, uint32_t *word, uint32_t value);

/* Which mechanism the two calls use here: "stream memory operations" or "wait kernel". */
const char *nvl_host_stream_mechanism(void);

#ifdef __cplusplus
}
#endif

#endif
