/* Private helpers of the on-drive image code. */
#ifndef NVL_MODEL_DISK_IMAGE_INTERNAL_H
#define NVL_MODEL_DISK_IMAGE_INTERNAL_H

#include <stddef.h>

/* Writes the message to err (when not NULL) and returns code. */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
int nvl__disk_fail(char *err, size_t err_len, int code, const char *fmt, ...);

#endif
