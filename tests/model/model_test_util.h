/* Helpers shared by the GGUF, tokenizer and quant tests: where the shared models are, and whole
 * files read into memory. */
#ifndef NVL_TESTS_MODEL_UTIL_H
#define NVL_TESTS_MODEL_UTIL_H

#include <stdio.h>
#include <stdlib.h>

/* path of rel under the shared models folder ($NVL_SHARED/models, ../shared/models by default). */
static inline const char *mt_model_path(const char *rel, char *buf, size_t len)
{
    const char *shared = getenv("NVL_SHARED");

    snprintf(buf, len, "%s/models/%s", shared ? shared : "../shared", rel);
    return buf;
}

/* The whole file, NUL-terminated (*len excludes the NUL), or NULL when it cannot be read. The
 * caller frees it. */
static inline void *mt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    *len = 0;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
            buf[n] = '\0';
            *len = (size_t)n;
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

#endif
