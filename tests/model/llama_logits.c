/* Test helper for test_llama_pyref.py: evaluates token ids in one batch and writes the logits of
 * every position (n x n_vocab float32, native endian) to a file.
 * usage: llama_logits MODEL.gguf OUT.bin [--f32] [--kv-f32] ID... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvl_model.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: llama_logits MODEL.gguf OUT.bin [--f32] [--kv-f32] ID...\n");
        return 2;
    }
    struct nvl_session_params p;
    nvl_session_params_default(&p);
    p.n_threads = 2;
    int32_t *ids = calloc((size_t)argc, sizeof(*ids));
    int32_t n = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--f32") == 0)
            p.f32_activations = true;
        else if (strcmp(argv[i], "--kv-f32") == 0)
            p.kv_f32 = true;
        else
            ids[n++] = (int32_t)strtol(argv[i], NULL, 10);
    }
    p.n_ctx = n + 1;
    struct nvl_llama_model *m = NULL;
    struct nvl_session *s = NULL;
    char err[256];
    if (nvl_llama_load(argv[1], &m, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (n < 1 || nvl_session_create(m, &p, &s) || nvl_session_eval(s, ids, n, true)) {
        fprintf(stderr, "eval failed\n");
        return 1;
    }
    const int32_t n_vocab = nvl_llama_hparams(m)->n_vocab;
    FILE *f = fopen(argv[2], "wb");
    if (!f)
        return 1;
    for (int32_t i = 0; i < n; i++)
        fwrite(nvl_session_logits(s, i), sizeof(float), (size_t)n_vocab, f);
    int rc = fclose(f) == 0 ? 0 : 1;
    nvl_session_destroy(s);
    nvl_llama_destroy(m);
    free(ids);
    return rc;
}
