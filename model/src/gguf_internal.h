/* Shared by the GGUF reader and writer: error-message helper, on-disk constants and alignment
 * rules. */
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

/* Alignment the type's elements or blocks need in memory: consumers cast mapped tensor data to
 * float, uint16_t or block-struct pointers, so even a file whose general.alignment is smaller
 * must place the data at file offsets aligned this way (the reader refuses it otherwise, and the
 * writer pads to it). */
uint32_t nvl__gguf_type_alignment(enum nvl_ggml_type t);

static inline uint64_t nvl__gguf_align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) & ~(a - 1);
}

#endif
