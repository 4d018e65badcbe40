/* Test helper for test_tokenizer_hf.py: tokenizes many strings with one vocab load.
 *
 *   tokenizer_batch MODEL.gguf INPUT [--parse-special]
 *
 * INPUT holds strings each followed by "\n__ggml_vocab_test__\n" (llama.cpp's test-vector
 * format); one line of space-separated ids is printed per string (add_special off). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvl_model.h"

#define SEPARATOR "\n__ggml_vocab_test__\n"

int main(int argc, char **argv)
{
    unsigned flags = 0;
    struct nvl_gguf *g = NULL;
    struct nvl_vocab *v = NULL;
    char err[512], *buf, *p;
    FILE *f;
    long n;

    if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "--parse-special"))) {
        fprintf(stderr, "usage: tokenizer_batch MODEL.gguf INPUT [--parse-special]\n");
        return 2;
    }
    if (argc == 4)
        flags |= NVL_TOKENIZE_PARSE_SPECIAL;
    if (nvl_gguf_open(argv[1], &g, err, sizeof(err))) {
        fprintf(stderr, "tokenizer_batch: %s: %s\n", argv[1], err);
        return 1;
    }
    if (nvl_vocab_load_gguf(g, &v)) {
        fprintf(stderr, "tokenizer_batch: %s: no usable vocab\n", argv[1]);
        return 1;
    }
    nvl_gguf_close(g);

    f = fopen(argv[2], "rb");
    if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fprintf(stderr, "tokenizer_batch: cannot read %s\n", argv[2]);
        return 1;
    }
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "tokenizer_batch: cannot read %s\n", argv[2]);
        return 1;
    }
    buf[n] = '\0';
    fclose(f);

    for (p = buf; p < buf + n;) {
        char *sep = memmem(p, (size_t)(buf + n - p), SEPARATOR, strlen(SEPARATOR));
        int32_t *ids;
        size_t n_ids;

        if (!sep)
            break;
        if (nvl_vocab_tokenize_alloc(v, p, (size_t)(sep - p), flags, &ids, &n_ids)) {
            fprintf(stderr, "tokenizer_batch: tokenize failed\n");
            return 1;
        }
        for (size_t i = 0; i < n_ids; i++)
            printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
        free(ids);
        p = sep + strlen(SEPARATOR);
    }
    free(buf);
    nvl_vocab_destroy(v);
    return 0;
}
