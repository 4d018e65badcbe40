/* Dequantization of weight rows to fp16 or fp32 (the GEMM path's tiles) and the embedding lookup
 * (dequantized rows picked by token id). One thread per 32-element chunk, with the CPU's
 * expressions (qblock.cuh k_dequant32).
 *
 * Weights whose rows lie back to back (the GEMM's case) go through k_dequant_tiled: a block
 * takes DQ_CHUNKS consecutive chunks, copies their bytes into shared memory with 16-byte loads,
 * dequantizes there, and writes the segment's output with 16-byte stores, consecutive lanes at
 * consecutive addresses. Reading the 18-byte Q4_0 blocks byte by byte from global memory and
 * storing 64 bytes per thread at a 64-byte stride held the simple kernel near 1 TB/s. */
#include <errno.h>

#include <cuda_fp16.h>

#include "kcommon.cuh"
#include "qblock.cuh"

template <typename O> static __device__ __forceinline__ void dq_store(O *dst, const float *v);

template <> __device__ __forceinline__ void dq_store<float>(float *dst, const float *v)
{
    float4 *d = (float4 *)dst;
#pragma unroll
    for (int i = 0; i < 8; i++)
        d[i] = make_float4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
}

template <> __device__ __forceinline__ void dq_store<__half>(__half *dst, const float *v)
{
    uint4 *d = (uint4 *)dst;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint32_t p[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const __half2 h = __floats2half2_rn(v[8 * i + 2 * j], v[8 * i + 2 * j + 1]);
            p[j] = *(const uint32_t *)&h;
        }
        d[i] = make_uint4(p[0], p[1], p[2], p[3]);
    }
}

/* Rows come from src + row_bytes * (ids ? ids[r] : r); output row r at dst + r * k. */
template <int T, typename O>
static __global__ void k_dequant(const uint8_t *__restrict__ src, uint64_t row_bytes, int64_t rows,
                                 int64_t k, const int32_t *__restrict__ ids, O *__restrict__ dst)
{
    const int64_t chunks = k / 32;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * chunks)
        return;
    const int64_t r = i / chunks, c = i % chunks;
    const int64_t sr = ids ? ids[r] : r;
    int64_t off;
    int sub;
    k_chunk_pos<T>(c, &off, &sub);
    float v[32];
    k_dequant32<T>(src + (uint64_t)sr * row_bytes + off, sub, v);
    dq_store<O>(dst + r * k + c * 32, v);
}

/* Chunks per block of the tiled kernel (one per thread). A segment's source bytes, DQ_CHUNKS * 32
 * elements' worth, are a multiple of 16 for every block size, so each segment starts 16-byte
 * aligned when src does. */
#define DQ_CHUNKS 256

/* Rows back to back (row_bytes = k / block_elems * block_bytes), src and dst 16-byte aligned:
 * chunk c of the whole matrix sits at byte (c / per) * block_bytes, sub-chunk c % per, and its
 * output at element 32c. */
template <int T, typename O>
static __global__ void __launch_bounds__(DQ_CHUNKS)
    k_dequant_tiled(const uint8_t *__restrict__ src, int64_t n_chunks, O *__restrict__ dst)
{
    constexpr int BE = k_type<T>::block_elems, BB = k_type<T>::block_bytes;
    constexpr int PER = BE / 32;                    /* chunks per block */
    constexpr int SEG_BYTES = DQ_CHUNKS / PER * BB; /* a multiple of 16 */
    static_assert(BE % 32 == 0 && SEG_BYTES % 16 == 0, "segment alignment");
    __shared__ __align__(16) uint8_t sin[SEG_BYTES];
    __shared__ __align__(16) O sout[DQ_CHUNKS * 32];

    const int64_t c0 = (int64_t)blockIdx.x * DQ_CHUNKS;
    const int n = n_chunks - c0 < DQ_CHUNKS ? (int)(n_chunks - c0) : DQ_CHUNKS;
    /* Whole blocks of the segment: n is a multiple of PER (rows hold whole blocks). */
    const int nbytes = n / PER * BB;
    const uint8_t *s = src + c0 / PER * BB;
    for (int i = threadIdx.x; i < nbytes / 16; i += DQ_CHUNKS)
        ((uint4 *)sin)[i] = ((const uint4 *)s)[i];
    for (int i = nbytes / 16 * 16 + threadIdx.x; i < nbytes; i += DQ_CHUNKS)
        sin[i] = s[i];
    __syncthreads();
    if ((int)threadIdx.x < n) {
        float v[32];
        k_dequant32<T>(sin + threadIdx.x / PER * BB, (int)(threadIdx.x % PER), v);
        dq_store<O>(sout + threadIdx.x * 32, v);
    }
    __syncthreads();
    uint4 *d = (uint4 *)(dst + c0 * 32);
    const int nvec = n * 32 * (int)sizeof(O) / 16;
    for (int i = threadIdx.x; i < nvec; i += DQ_CHUNKS)
        d[i] = ((const uint4 *)sout)[i];
}

/* Plain types, any row length: one thread per element. */
template <int T, typename O>
static __global__ void k_dequant_plain(const uint8_t *__restrict__ src, uint64_t row_bytes,
                                       int64_t rows, int64_t k, const int32_t *__restrict__ ids,
                                       O *__restrict__ dst)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * k)
        return;
    const int64_t r = i / k, c = i % k;
    const int64_t sr = ids ? ids[r] : r;
    const uint8_t *p = src + (uint64_t)sr * row_bytes;
    float v;
    if (T == NVL_GGML_TYPE_F32)
        v = ((const float *)p)[c];
    else if (T == NVL_GGML_TYPE_F16)
        v = __half2float(((const __half *)p)[c]);
    else
        v = __uint_as_float((uint32_t)((const uint16_t *)p)[c] << 16);
    dst[i] = (O)v;
}

template <typename O>
static int dq_launch_plain(enum nvl_ggml_type type, const void *src, uint64_t row_bytes,
                           int64_t rows, int64_t k, const int32_t *ids, O *dst, cudaStream_t stream)
{
    const unsigned g = k_blocks(rows * k, K_THREADS);
    const uint8_t *s = (const uint8_t *)src;
    if (type == NVL_GGML_TYPE_F32)
        k_dequant_plain<NVL_GGML_TYPE_F32, O>
            <<<g, K_THREADS, 0, stream>>>(s, row_bytes, rows, k, ids, dst);
    else if (type == NVL_GGML_TYPE_F16)
        k_dequant_plain<NVL_GGML_TYPE_F16, O>
            <<<g, K_THREADS, 0, stream>>>(s, row_bytes, rows, k, ids, dst);
    else
        k_dequant_plain<NVL_GGML_TYPE_BF16, O>
            <<<g, K_THREADS, 0, stream>>>(s, row_bytes, rows, k, ids, dst);
    return nvl__k_launch_check("dequant");
}

static bool dq_plain(enum nvl_ggml_type type)
{
    return type == NVL_GGML_TYPE_F32 || type == NVL_GGML_TYPE_F16 || type == NVL_GGML_TYPE_BF16;
}

template <typename O>
static int dq_launch_tiled(enum nvl_ggml_type type, const void *src, int64_t rows, int64_t k,
                           O *dst, cudaStream_t stream)
{
    const int64_t n_chunks = rows * (k / 32);
    const unsigned g = k_blocks(n_chunks, DQ_CHUNKS);
    const uint8_t *s = (const uint8_t *)src;
#define DQ_CASE(S)                                                                                 \
    case NVL_GGML_TYPE_##S:                                                                        \
        k_dequant_tiled<NVL_GGML_TYPE_##S, O><<<g, DQ_CHUNKS, 0, stream>>>(s, n_chunks, dst);      \
        break;
    switch (type) {
        K_QUANT_TYPES(DQ_CASE)
    default:
        return -EINVAL;
    }
#undef DQ_CASE
    return nvl__k_launch_check("dequant");
}

template <typename O>
static int dq_launch(enum nvl_ggml_type type, const void *src, uint64_t row_bytes, int64_t rows,
                     int64_t k, const int32_t *ids, O *dst, cudaStream_t stream)
{
    const unsigned g = k_blocks(rows * (k / 32), K_THREADS);
    const uint8_t *s = (const uint8_t *)src;
#define DQ_CASE(S)                                                                                 \
    case NVL_GGML_TYPE_##S:                                                                        \
        k_dequant<NVL_GGML_TYPE_##S, O>                                                            \
            <<<g, K_THREADS, 0, stream>>>(s, row_bytes, rows, k, ids, dst);                        \
        break;
    switch (type) {
        K_PLAIN_TYPES(DQ_CASE)
        K_QUANT_TYPES(DQ_CASE)
    default:
        return -EINVAL;
    }
#undef DQ_CASE
    return nvl__k_launch_check("dequant");
}

extern "C" int nvl__k_dequant(enum nvl_ggml_type type, const void *src, uint64_t row_bytes,
                              int64_t rows, int64_t k, void *dst, bool dst_f16, cudaStream_t stream)
{
    if (!nvl__k_type_supported(type) || rows < 1 || k < 1)
        return -EINVAL;
    if (dq_plain(type)) {
        if (dst_f16)
            return dq_launch_plain<__half>(type, src, row_bytes, rows, k, NULL, (__half *)dst,
                                           stream);
        return dq_launch_plain<float>(type, src, row_bytes, rows, k, NULL, (float *)dst, stream);
    }
    /* Whole 32-element chunks, and 16-byte aligned output rows. */
    if (k % 32 || k % nvl_ggml_block_size(type) || ((uintptr_t)dst & 15))
        return -EINVAL;
    const uint64_t packed = (uint64_t)k / nvl_ggml_block_size(type) * nvl_ggml_type_size(type);
    if (row_bytes == packed && !((uintptr_t)src & 15))
        return dst_f16 ? dq_launch_tiled<__half>(type, src, rows, k, (__half *)dst, stream)
                       : dq_launch_tiled<float>(type, src, rows, k, (float *)dst, stream);
    if (dst_f16)
        return dq_launch<__half>(type, src, row_bytes, rows, k, NULL, (__half *)dst, stream);
    return dq_launch<float>(type, src, row_bytes, rows, k, NULL, (float *)dst, stream);
}

extern "C" int nvl__k_get_rows(enum nvl_ggml_type type, const void *table, uint64_t row_bytes,
                               int64_t k, const int32_t *ids, int32_t n, float *dst,
                               cudaStream_t stream)
{
    if (!nvl__k_type_supported(type) || n < 1 || k < 1)
        return -EINVAL;
    if (dq_plain(type))
        return dq_launch_plain<float>(type, table, row_bytes, n, k, ids, dst, stream);
    if (k % 32 || k % nvl_ggml_block_size(type) || ((uintptr_t)dst & 15))
        return -EINVAL;
    return dq_launch<float>(type, table, row_bytes, n, k, ids, dst, stream);
}
