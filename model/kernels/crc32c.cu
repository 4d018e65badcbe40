/* CRC32C on the GPU (the checksum of the on-drive image's extents, crc32c.h), for --verify on the
 * GPU path: a layer that arrived in a pinned slot or in VRAM is checked where it lies, without a
 * copy back to the CPU.
 *
 * CRC32C is linear over GF(2): with raw(M) the CRC register after M from a zero start (no pre-
 * or post-inversion), raw(A || B) = raw(A) * x^(8|B|) + raw(B) mod P, and leading zero bytes do
 * not change raw(). So the buffer is cut into chunks of CRC_CHUNK bytes, counted from its end
 * (the first chunk takes the remainder), each thread computes raw() of its chunks with
 * slice-by-8 tables in shared memory, shifts each by x^(8 * CRC_CHUNK * chunks after it), and
 * the shifted values are XORed: per warp by shuffles, per block in shared memory, and across
 * blocks on the host (no atomics, so the result does not depend on scheduling). The host then
 * applies the standard CRC's inversions and the caller's running value:
 *   crc(prev || M) = (prev ^ ~0) * x^(8|M|) + raw(M) ^ ~0, all mod P (zlib's crc32_combine).
 * Polynomials are in the reflected bit order (x^0 is bit 31), as in zlib. */
#include <errno.h>
#include <pthread.h>

#include <cuda_runtime_api.h>

#include "nvl_driver/log.h"
#include "nvl_model/crc32c.h"

#define CRC_POLY       0x82F63B78u /* 0x1EDC6F41 reflected */
#define CRC_CHUNK      4096u       /* bytes per chunk: x^(8 * 4096) = x^(2^15) */
#define CRC_CHUNK_LOG2 15          /* log2(8 * CRC_CHUNK) */
#define CRC_THREADS    256
#define CRC_MAX_BLOCKS 1024

/* x^(2^k) mod P for k = 0..63, passed by value (kernel parameter space). */
struct crc_x2n {
    uint32_t v[64];
};

/* a * b mod P. a must not be 0 (it is always a power of x here). From zlib's multmodp. */
static __host__ __device__ uint32_t gf_mul(uint32_t a, uint32_t b)
{
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0)
                break;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ CRC_POLY : b >> 1;
    }
    return p;
}

/* v * x^(n * 2^k) mod P. */
static __host__ __device__ uint32_t gf_shift(const struct crc_x2n *t, uint32_t v, uint64_t n,
                                             unsigned k)
{
    while (n && v) {
        if (n & 1)
            v = gf_mul(t->v[k], v);
        n >>= 1;
        k++;
    }
    return v;
}

static void x2n_init(struct crc_x2n *t)
{
    uint32_t p = 1u << 30; /* x^1 */
    t->v[0] = p;
    for (int k = 1; k < 64; k++)
        t->v[k] = p = gf_mul(p, p);
}

/* raw() of n bytes at p from register c: bytes until 8-aligned, then slice-by-8. */
static __device__ uint32_t crc_raw(uint32_t c, const uint8_t *p, uint64_t n,
                                   const uint32_t (*t)[256])
{
    while (n && ((uintptr_t)p & 7)) {
        c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        n--;
    }
    for (; n >= 8; n -= 8, p += 8) {
        const uint64_t w = *(const uint64_t *)p; /* little-endian, like the CPU's loads */
        const uint32_t lo = (uint32_t)w ^ c, hi = (uint32_t)(w >> 32);
        c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
            t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    }
    while (n--)
        c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

/* Chunk 0 is [0, first), chunk j > 0 is [first + (j - 1) * CRC_CHUNK, + CRC_CHUNK). partial[b] is
 * block b's XOR of its chunks' shifted raw() values. */
static __global__ void k_crc32c(const uint8_t *__restrict__ buf, uint64_t n_chunks, uint32_t first,
                                struct crc_x2n x2n, uint32_t *__restrict__ partial)
{
    __shared__ uint32_t t[8][256];
    __shared__ uint32_t warp_x[CRC_THREADS / 32];
    for (unsigned i = threadIdx.x; i < 256; i += blockDim.x) {
        uint32_t c = i;
        for (int b = 0; b < 8; b++)
            c = (c & 1) ? (c >> 1) ^ CRC_POLY : c >> 1;
        t[0][i] = c;
    }
    __syncthreads();
    for (int k = 1; k < 8; k++) {
        for (unsigned i = threadIdx.x; i < 256; i += blockDim.x)
            t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
        __syncthreads();
    }
    uint32_t x = 0;
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t j = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; j < n_chunks; j += stride) {
        const uint64_t start = j ? first + (j - 1) * CRC_CHUNK : 0;
        const uint32_t c = crc_raw(0, buf + start, j ? CRC_CHUNK : first, t);
        x ^= gf_shift(&x2n, c, n_chunks - 1 - j, CRC_CHUNK_LOG2);
    }
    for (int o = 16; o; o >>= 1)
        x ^= __shfl_xor_sync(0xffffffffu, x, o);
    if ((threadIdx.x & 31) == 0)
        warp_x[threadIdx.x >> 5] = x;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < CRC_THREADS / 32; w++)
            x ^= warp_x[w];
        partial[blockIdx.x] = x;
    }
}

/* One set of per-block partials per process, taken under a mutex: verification is not on any
 * hot path, and a call must not allocate (cudaFree would synchronise the whole device, the
 * persistent I/O engine included). */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t *g_partial_dev;
static uint32_t *g_partial_host;
static int g_partial_device = -1;

static int crc_fail(const char *what, cudaError_t e)
{
    nvl_log_error("crc32c-gpu", "%s: %s", what, cudaGetErrorString(e));
    return -EIO;
}

extern "C" int nvl_crc32c_gpu(uint32_t crc, const void *buf, uint64_t len, void *stream,
                              uint32_t *out)
{
    struct crc_x2n x2n;
    cudaStream_t s = (cudaStream_t)stream, own = NULL;
    cudaError_t e;
    int dev, rc = 0;

    if (!out || (!buf && len))
        return -EINVAL;
    if (len == 0) {
        *out = crc;
        return 0;
    }
    if ((e = cudaGetDevice(&dev)) != cudaSuccess)
        return crc_fail("cudaGetDevice", e);
    x2n_init(&x2n);
    const uint64_t n_chunks = (len + CRC_CHUNK - 1) / CRC_CHUNK;
    const uint32_t first = (uint32_t)(len - (n_chunks - 1) * CRC_CHUNK);
    const uint64_t want = (n_chunks + CRC_THREADS - 1) / CRC_THREADS;
    const unsigned blocks = want < CRC_MAX_BLOCKS ? (unsigned)want : CRC_MAX_BLOCKS;

    pthread_mutex_lock(&g_lock);
    if (g_partial_device != dev) {
        /* A new device (or the first call): buffers on it. The old device's are left alone. */
        if ((e = cudaMalloc((void **)&g_partial_dev, CRC_MAX_BLOCKS * sizeof(uint32_t))) !=
            cudaSuccess) {
            rc = crc_fail("cudaMalloc", e);
            goto out_unlock;
        }
        if (!g_partial_host &&
            (e = cudaMallocHost((void **)&g_partial_host, CRC_MAX_BLOCKS * sizeof(uint32_t))) !=
                cudaSuccess) {
            rc = crc_fail("cudaMallocHost", e);
            goto out_unlock;
        }
        g_partial_device = dev;
    }
    /* Without a stream of the caller's: a private non-blocking one, so the legacy default
     * stream's implicit waits (on the engine's persistent kernel, say) cannot hold us. */
    if (!s) {
        if ((e = cudaStreamCreateWithFlags(&own, cudaStreamNonBlocking)) != cudaSuccess) {
            rc = crc_fail("cudaStreamCreateWithFlags", e);
            goto out_unlock;
        }
        s = own;
    }
    k_crc32c<<<blocks, CRC_THREADS, 0, s>>>((const uint8_t *)buf, n_chunks, first, x2n,
                                            g_partial_dev);
    if ((e = cudaGetLastError()) != cudaSuccess) {
        rc = crc_fail("crc32c kernel launch", e);
        goto out_stream;
    }
    if ((e = cudaMemcpyAsync(g_partial_host, g_partial_dev, blocks * sizeof(uint32_t),
                             cudaMemcpyDeviceToHost, s)) != cudaSuccess ||
        (e = cudaStreamSynchronize(s)) != cudaSuccess) {
        rc = crc_fail("crc32c kernel", e);
        goto out_stream;
    }
    {
        uint32_t raw = 0;
        for (unsigned b = 0; b < blocks; b++)
            raw ^= g_partial_host[b];
        /* x^(8 len) = x^(len * 2^3) */
        *out = gf_shift(&x2n, crc ^ 0xffffffffu, len, 3) ^ raw ^ 0xffffffffu;
    }
out_stream:
    if (own)
        cudaStreamDestroy(own);
out_unlock:
    pthread_mutex_unlock(&g_lock);
    return rc;
}
