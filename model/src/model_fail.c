/* Error reporting shared by the model library's loaders and parsers (model_fail.h). */
#include "model_fail.h"

#include <stdio.h>

#include "nvl_driver/log.h"

int nvl__model_vfail(const char *who, char *err, size_t err_len, int code, const char *fmt,
                     va_list ap)
{
    char line[512];

    if (err && err_len) {
        vsnprintf(err, err_len, fmt, ap);
    } else {
        vsnprintf(line, sizeof(line), fmt, ap);
        nvl_log_error(who, "%s", line);
    }
    return code;
}

int nvl__model_fail(const char *who, char *err, size_t err_len, int code, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = nvl__model_vfail(who, err, err_len, code, fmt, ap);
    va_end(ap);
    return rc;
}
