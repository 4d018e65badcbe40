/* GGUF metadata type names and sizes, and the error helper shared by reader and writer. */
#include "gguf_internal.h"

#include <stdio.h>

#include "nvl_driver/log.h"

static const struct {
    const char *name;
    size_t size;
} gguf_types[NVL_GGUF_TYPE_COUNT] = {
    [NVL_GGUF_TYPE_UINT8] = {"uint8", 1},     [NVL_GGUF_TYPE_INT8] = {"int8", 1},
    [NVL_GGUF_TYPE_UINT16] = {"uint16", 2},   [NVL_GGUF_TYPE_INT16] = {"int16", 2},
    [NVL_GGUF_TYPE_UINT32] = {"uint32", 4},   [NVL_GGUF_TYPE_INT32] = {"int32", 4},
    [NVL_GGUF_TYPE_FLOAT32] = {"float32", 4}, [NVL_GGUF_TYPE_BOOL] = {"bool", 1},
    [NVL_GGUF_TYPE_STRING] = {"string", 0},   [NVL_GGUF_TYPE_ARRAY] = {"array", 0},
    [NVL_GGUF_TYPE_UINT64] = {"uint64", 8},   [NVL_GGUF_TYPE_INT64] = {"int64", 8},
    [NVL_GGUF_TYPE_FLOAT64] = {"float64", 8},
};

const char *nvl_gguf_type_name(uint32_t type)
{
    return type < NVL_GGUF_TYPE_COUNT ? gguf_types[type].name : "unknown";
}

size_t nvl_gguf_type_size(uint32_t type)
{
    return type < NVL_GGUF_TYPE_COUNT ? gguf_types[type].size : 0;
}

int nvl__gguf_fail(char *err, size_t err_len, int ret, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    if (err && err_len) {
        vsnprintf(err, err_len, fmt, ap);
    } else {
        vsnprintf(line, sizeof(line), fmt, ap);
        nvl_log_error("gguf", "%s", line);
    }
    va_end(ap);
    return ret;
}
