/* GGUF metadata type names and sizes, scalar values as text, tensor data alignment and the error
 * helper shared by reader and writer. */
#include "gguf_internal.h"
#include "model_fail.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

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

/* f as "%.*g" with the fewest significant digits, at least 6, that read back as f (strtof for a
 * float, strtod for a double); max_digits always do. Six keeps %g's plain form for round numbers
 * ("10000", not "1e+04"), and the closest 6-digit decimal reads back whenever a shorter one does.
 */
static int format_shortest(double f, bool single, int max_digits, char *buf, size_t len)
{
    char tmp[40];
    int n = 0;

    for (int digits = 6; digits <= max_digits; digits++) {
        n = snprintf(tmp, sizeof(tmp), "%.*g", digits, f);
        if (single ? strtof(tmp, NULL) == (float)f : strtod(tmp, NULL) == f)
            break;
    }
    return snprintf(buf, len, "%s", tmp) < 0 ? -EINVAL : n;
}

int nvl_gguf_value_format(const struct nvl_gguf_value *v, char *buf, size_t len)
{
    int n;

    switch (v->type) {
    case NVL_GGUF_TYPE_UINT8:
        n = snprintf(buf, len, "%" PRIu8, v->u8);
        break;
    case NVL_GGUF_TYPE_INT8:
        n = snprintf(buf, len, "%" PRId8, v->i8);
        break;
    case NVL_GGUF_TYPE_UINT16:
        n = snprintf(buf, len, "%" PRIu16, v->u16);
        break;
    case NVL_GGUF_TYPE_INT16:
        n = snprintf(buf, len, "%" PRId16, v->i16);
        break;
    case NVL_GGUF_TYPE_UINT32:
        n = snprintf(buf, len, "%" PRIu32, v->u32);
        break;
    case NVL_GGUF_TYPE_INT32:
        n = snprintf(buf, len, "%" PRId32, v->i32);
        break;
    case NVL_GGUF_TYPE_UINT64:
        n = snprintf(buf, len, "%" PRIu64, v->u64);
        break;
    case NVL_GGUF_TYPE_INT64:
        n = snprintf(buf, len, "%" PRId64, v->i64);
        break;
    case NVL_GGUF_TYPE_BOOL:
        n = snprintf(buf, len, "%s", v->u8 ? "true" : "false");
        break;
    case NVL_GGUF_TYPE_FLOAT32:
        return format_shortest(v->f32, true, 9, buf, len);
    case NVL_GGUF_TYPE_FLOAT64:
        return format_shortest(v->f64, false, 17, buf, len);
    default:
        return -EINVAL;
    }
    return n < 0 ? -EINVAL : n;
}

uint32_t nvl__gguf_type_alignment(enum nvl_ggml_type t)
{
    switch (t) {
    case NVL_GGML_TYPE_I64:
    case NVL_GGML_TYPE_F64:
        return 8;
    case NVL_GGML_TYPE_F32:
    case NVL_GGML_TYPE_I32:
    case NVL_GGML_TYPE_Q8_K:
        return 4;
    case NVL_GGML_TYPE_I8:
    case NVL_GGML_TYPE_MXFP4:
    case NVL_GGML_TYPE_NVFP4:
    case NVL_GGML_TYPE_Q1_0:
        return 1;
    default:
        return 2; /* everything else is uint16_t elements or blocks with fp16 scales */
    }
}

int nvl__gguf_fail(char *err, size_t err_len, int ret, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = nvl__model_vfail("gguf", err, err_len, ret, fmt, ap);
    va_end(ap);
    return rc;
}
