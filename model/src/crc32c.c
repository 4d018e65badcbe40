/* CRC32C: slice-by-8 tables (Kounavis and Berry, "A Systematic Approach to Building High
 * Performance Software-Based CRC Generators", 2005) and the SSE4.2 crc32 instruction. */
#include "nvl_model/crc32c.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

/* The reflected form of 0x1EDC6F41. */
#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t crc_table[8][256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (CRC32C_POLY_REFLECTED & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    /* Table k advances a byte that is followed by k more bytes. */
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++)
            crc_table[k][i] = (crc_table[k - 1][i] >> 8) ^ crc_table[0][crc_table[k - 1][i] & 0xff];
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

uint32_t nvl_crc32c_sw(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_table_once, crc_table_init);
    const uint8_t *p = data;
    uint32_t c = ~crc;

    while (len && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
        len--;
    }
    while (len >= 8) {
        const uint64_t v = load_le64(p) ^ c;
        c = crc_table[7][v & 0xff] ^ crc_table[6][(v >> 8) & 0xff] ^
            crc_table[5][(v >> 16) & 0xff] ^ crc_table[4][(v >> 24) & 0xff] ^
            crc_table[3][(v >> 32) & 0xff] ^ crc_table[2][(v >> 40) & 0xff] ^
            crc_table[1][(v >> 48) & 0xff] ^ crc_table[0][v >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return ~c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_HAVE_SSE42 1

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *data,
                                                               size_t len)
{
    const uint8_t *p = data;
    uint64_t c = ~crc;

    while (len && ((uintptr_t)p & 7)) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        len--;
    }
    while (len >= 32) {
        uint64_t v[4];
        memcpy(v, p, sizeof(v));
        c = __builtin_ia32_crc32di(c, v[0]);
        c = __builtin_ia32_crc32di(c, v[1]);
        c = __builtin_ia32_crc32di(c, v[2]);
        c = __builtin_ia32_crc32di(c, v[3]);
        p += 32;
        len -= 32;
    }
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        len -= 8;
    }
    while (len--)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return ~(uint32_t)c;
}

static bool have_sse42(void)
{
    /* Threads racing here all store the same answer; relaxed atomics keep that well defined. */
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v == 1;
}
#endif

uint32_t nvl_crc32c(uint32_t crc, const void *data, size_t len)
{
#ifdef CRC32C_HAVE_SSE42
    if (have_sse42())
        return crc32c_sse42(crc, data, len);
#endif
    return nvl_crc32c_sw(crc, data, len);
}

const char *nvl_crc32c_impl(void)
{
#ifdef CRC32C_HAVE_SSE42
    if (have_sse42())
        return "sse4.2";
#endif
    return "slice-by-8";
}

#ifndef NVL_HAVE_CUDA
/* Without CUDA there is no GPU to compute on (the CUDA build has model/kernels/crc32c.cu). */
int nvl_crc32c_gpu(uint32_t crc, const void *buf, uint64_t len, void *stream, uint32_t *out)
{
    (void)crc;
    (void)buf;
    (void)len;
    (void)stream;
    (void)out;
    return -ENOTSUP;
}
#endif
