/* Shared by the GGUF reader and writer: error-message helper and the on-disk constants. */
#ifndef NVL_MODEL_GGUF_INTERNAL_H
#define NVL_MODEL_GGUF_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "nvl_model/gguf.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader and writer assume a little-endian host, as GGUF files are little-endian"
#endif

/* Formats a message into err (or logs it under "gguf" when err is NULL) and returns ret. */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
int nvl__gguf_fail(char *err, size_t err_len, int ret, const char *fmt, ...);

static inline uint64_t nvl__gguf_align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) & ~(a - 1);
}

#endif
