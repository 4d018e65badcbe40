/* CRC32C (Castagnoli, polynomial 0x1EDC6F41, reflected; RFC 3720 §B.4), the checksum of the
 * on-drive image's extents (disk_image.h). Debian ships no C library for it, so it is here:
 * SSE4.2's crc32 instruction when the CPU has it (about 8 bytes per 3 cycles), slice-by-8 tables
 * otherwise. Both give the same value; tests check them against the RFC's vectors. */
#ifndef NVL_MODEL_CRC32C_H
#define NVL_MODEL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Extends crc (0 to start) over len bytes at data and returns the new value; chunks may be fed
 * in any split: nvl_crc32c(nvl_crc32c(0, a, n), b, m) == nvl_crc32c(0, a||b, n + m). The
 * pre- and post-inversion are done inside, so crc is the plain CRC32C of what came before. */
uint32_t nvl_crc32c(uint32_t crc, const void *data, size_t len);

/* The portable slice-by-8 implementation (for tests and benchmarks). */
uint32_t nvl_crc32c_sw(uint32_t crc, const void *data, size_t len);

/* nvl_crc32c() computed on the current CUDA device over len bytes at buf, an address the device
 * can read (device memory, or pinned host memory mapped for it, such as a loader slot). stream is
 * a cudaStream_t to run on, or NULL for a private one; the call waits for the result. Returns 0
 * with the new value in *out, -ENOTSUP in a build without CUDA, -EINVAL, or -EIO after a CUDA
 * error (logged). model/kernels/crc32c.cu. */
int nvl_crc32c_gpu(uint32_t crc, const void *buf, uint64_t len, void *stream, uint32_t *out);
/* "sse4.2" or "slice-by-8": what nvl_crc32c() uses on this CPU. */
const char *nvl_crc32c_impl(void);

#ifdef __cplusplus
}
#endif

#endif
