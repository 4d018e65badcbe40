/* The model library's one way to report an error to a caller that may pass a message buffer. */
#ifndef NVL_MODEL_FAIL_H
#define NVL_MODEL_FAIL_H

#include <stdarg.h>
#include <stddef.h>

/* Formats the message into err when the caller gave a buffer, otherwise logs it as an error under
 * `who`; returns `code` so that callers can `return nvl__model_fail(...)`. */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
int nvl__model_fail(const char *who, char *err, size_t err_len, int code, const char *fmt, ...);

/* The same with a va_list, for wrappers that add their own tag. */
int nvl__model_vfail(const char *who, char *err, size_t err_len, int code, const char *fmt,
                     va_list ap);

#endif
