/* The packed GGUF layout (pack.h): checking a file for it and rewriting a file into it. */
#include "nvl_model/pack.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nvl_driver/log.h"
#include "model_fail.h"

#define PACK_LOG       "pack"
#define PACK_MAX_LAYER 1000000

int32_t nvl_pack_tensor_layer(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    const char *p = name + 4;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
        return -1;
    int32_t n = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n >= PACK_MAX_LAYER)
            return -1;
    }
    return *p == '.' ? n : -1;
}

bool nvl_gguf_is_packed(const struct nvl_gguf *g, char *why, size_t why_len)
{
    char dummy[8];
    if (!why || !why_len) {
        why = dummy;
        why_len = sizeof(dummy);
    }
    const uint32_t align = nvl_gguf_alignment(g);
    if (align % NVL_PACK_ALIGNMENT) {
        snprintf(why, why_len, "general.alignment is %u, not a multiple of %u", align,
                 NVL_PACK_ALIGNMENT);
        return false;
    }
    int32_t cur = -1;
    uint64_t next = 0;
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g); i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);
        const int32_t layer = nvl_pack_tensor_layer(t->name);
        if (t->offset < next) {
            snprintf(why, why_len, "tensor %s is stored before the tensor listed ahead of it",
                     t->name);
            return false;
        }
        if (layer < cur) {
            if (layer < 0)
                snprintf(why, why_len, "global tensor %s comes after layer %d", t->name, cur);
            else
                snprintf(why, why_len, "tensor %s of layer %d comes after layer %d", t->name, layer,
                         cur);
            return false;
        }
        cur = layer;
        next = t->offset + t->size;
    }
    return true;
}

struct pack_entry {
    const struct nvl_gguf_tensor *t;
    int32_t layer;
    uint64_t index; /* position in the source, which breaks ties so the sort is stable */
};

static int pack_entry_cmp(const void *a, const void *b)
{
    const struct pack_entry *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

int nvl_gguf_pack_writer(const struct nvl_gguf *g, struct nvl_gguf_writer **out, char *err,
                         size_t err_len)
{
    const uint64_t n = nvl_gguf_tensor_count(g);
    struct nvl_gguf_writer *w = NULL;
    struct pack_entry *order = NULL;
    int rc;

    *out = NULL;
    if (n && !(order = calloc(n, sizeof(*order))))
        return nvl__model_fail(PACK_LOG, err, err_len, -ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);
        if (!nvl_gguf_tensor_data(g, t)) {
            rc = nvl__model_fail(PACK_LOG, err, err_len, -EINVAL,
                                 "tensor %s: its bytes are not in memory", t->name);
            goto err_free_order;
        }
        order[i] = (struct pack_entry){t, nvl_pack_tensor_layer(t->name), i};
    }
    if (n)
        qsort(order, n, sizeof(*order), pack_entry_cmp);

    if ((rc = nvl_gguf_writer_create(&w))) {
        nvl__model_fail(PACK_LOG, err, err_len, rc, "out of memory");
        goto err_free_order;
    }
    if ((rc = nvl_gguf_writer_set_version(w, nvl_gguf_version(g) == 2 ? 2 : 3)))
        goto err_writer;
    for (int64_t i = 0; i < (int64_t)nvl_gguf_kv_count(g); i++) {
        rc = nvl_gguf_writer_set_kv_from(w, g, i);
        /* The source's general.alignment is replaced in place below; the reader has already
         * refused one that is not a valid power of two, so only its type can be refused here. */
        if (rc && strcmp(nvl_gguf_kv_key(g, i), "general.alignment") != 0) {
            nvl__model_fail(PACK_LOG, err, err_len, rc, "metadata key %s: %s",
                            nvl_gguf_kv_key(g, i), nvl_strerror(rc));
            goto err_destroy_writer;
        }
    }
    if ((rc = nvl_gguf_writer_set_alignment(w, NVL_PACK_ALIGNMENT)))
        goto err_writer;
    for (uint64_t i = 0; i < n; i++) {
        const struct nvl_gguf_tensor *t = order[i].t;
        if ((rc = nvl_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne,
                                             nvl_gguf_tensor_data(g, t)))) {
            nvl__model_fail(PACK_LOG, err, err_len, rc, "tensor %s: %s", t->name, nvl_strerror(rc));
            goto err_destroy_writer;
        }
    }
    free(order);
    *out = w;
    return 0;

err_writer:
    nvl__model_fail(PACK_LOG, err, err_len, rc, "cannot build the packed file: %s",
                    nvl_strerror(rc));
err_destroy_writer:
    nvl_gguf_writer_destroy(w);
err_free_order:
    free(order);
    return rc;
}

int nvl_gguf_pack_file(const char *in_path, const char *out_path, char *err, size_t err_len)
{
    struct stat in_st, out_st;
    struct nvl_gguf *g;
    struct nvl_gguf_writer *w;
    int rc;

    if (stat(in_path, &in_st) == 0 && stat(out_path, &out_st) == 0 &&
        in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino)
        return nvl__model_fail(PACK_LOG, err, err_len, -EINVAL, "%s and %s are the same file",
                               in_path, out_path);
    if ((rc = nvl_gguf_open(in_path, &g, err, err_len)))
        return rc;
    if ((rc = nvl_gguf_pack_writer(g, &w, err, err_len)))
        goto err_close;
    rc = nvl_gguf_writer_write_file(w, out_path, err, err_len);
    nvl_gguf_writer_destroy(w);
err_close:
    nvl_gguf_close(g);
    return rc;
}
