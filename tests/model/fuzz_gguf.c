/* libFuzzer target for the GGUF reader (and, through it, the writer and the dequantizers).
 *
 * Built and run by scripts/fuzz-gguf.sh with clang -fsanitize=fuzzer,address,undefined. Every
 * input is parsed with nvl_gguf_open_memory(); when it is accepted, every accessor is exercised
 * (all metadata values, every string of every string array, every tensor's first and last byte,
 * the first row of each tensor dequantized), and the file is written back out through the writer
 * and must parse again to the same counts. */
#include <fcntl.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvl_model/gguf.h"
#include "nvl_model/quant.h"

/* Dequantize at most this many elements of a tensor's first row. */
#define FUZZ_MAX_ROW 4096

static volatile uint8_t sink;

static void touch(const void *p, uint64_t len)
{
    if (len) {
        sink ^= ((const uint8_t *)p)[0];
        sink ^= ((const uint8_t *)p)[len - 1];
    }
}

static void exercise(const struct nvl_gguf *g)
{
    static float row[FUZZ_MAX_ROW];

    for (uint64_t i = 0; i < nvl_gguf_kv_count(g); i++) {
        struct nvl_gguf_value v;
        const char *key = nvl_gguf_kv_key(g, (int64_t)i);

        if (nvl_gguf_kv_value(g, (int64_t)i, &v))
            abort();
        if (nvl_gguf_find_key(g, key) != (int64_t)i)
            abort();
        if (v.type == NVL_GGUF_TYPE_STRING) {
            touch(v.str.data, v.str.len + 1);
        } else if (v.type == NVL_GGUF_TYPE_ARRAY && v.arr.type == NVL_GGUF_TYPE_STRING) {
            for (uint64_t j = 0; j < v.arr.count; j++) {
                const char *s;
                uint64_t len;

                if (nvl_gguf_arr_str(g, (int64_t)i, j, &s, &len))
                    abort();
                touch(s, len);
            }
        } else if (v.type == NVL_GGUF_TYPE_ARRAY) {
            touch(v.arr.data, v.arr.count * nvl_gguf_type_size(v.arr.type));
        }
    }
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g); i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);
        const struct nvl_ggml_type_traits *tr = nvl_ggml_type_traits(t->type);
        const uint8_t *data = nvl_gguf_tensor_data(g, t);

        if (!tr || !data || nvl_gguf_find_tensor(g, t->name) != (int64_t)i)
            abort();
        touch(data, t->size);
        if (tr->can_dequantize && t->ne[0] && nvl_gguf_tensor_nelements(t)) {
            uint64_t n = t->ne[0] < FUZZ_MAX_ROW ? t->ne[0] : FUZZ_MAX_ROW;

            n -= n % tr->block_size;
            /* Block types need 2-byte alignment; the caller's buffer only guarantees 1. */
            if (n && ((uintptr_t)data % 4) == 0 &&
                nvl_dequantize_row(t->type, data, row, (int64_t)n))
                abort();
        }
    }
}

/* Writes the parsed file back out (metadata and tensors) into a memory file and parses the
 * result again. Files with a huge alignment are skipped: their padding would only slow the
 * fuzzer down. */
static void rewrite(const struct nvl_gguf *g)
{
    static int fd = -1;
    struct nvl_gguf_writer *w;
    struct nvl_gguf *g2;
    void *map;
    off_t len;
    int ret = 0;

    if (nvl_gguf_alignment(g) > 65536)
        return;
    if (fd < 0)
        fd = memfd_create("fuzz_gguf", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, 0) || lseek(fd, 0, SEEK_SET) != 0)
        abort();
    if (nvl_gguf_writer_create(&w))
        abort();
    for (uint64_t i = 0; i < nvl_gguf_kv_count(g) && !ret; i++)
        ret = nvl_gguf_writer_set_kv_from(w, g, (int64_t)i);
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g) && !ret; i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);

        ret = nvl_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne,
                                         nvl_gguf_tensor_data(g, t));
    }
    if (ret) /* everything the reader accepted must be writable */
        abort();
    if (nvl_gguf_writer_write_fd(w, fd, NULL, 0))
        abort();
    len = lseek(fd, 0, SEEK_CUR);
    if (len <= 0 || (uint64_t)len != nvl_gguf_writer_file_size(w))
        abort();
    map = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        abort();
    if (nvl_gguf_open_memory(map, (size_t)len, &g2, NULL, 0))
        abort();
    if (nvl_gguf_kv_count(g2) != nvl_gguf_kv_count(g) ||
        nvl_gguf_tensor_count(g2) != nvl_gguf_tensor_count(g) ||
        nvl_gguf_alignment(g2) != nvl_gguf_alignment(g))
        abort();
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g); i++) {
        const struct nvl_gguf_tensor *a = nvl_gguf_tensor(g, i), *b = nvl_gguf_tensor(g2, i);

        if (strcmp(a->name, b->name) || a->size != b->size ||
            memcmp(nvl_gguf_tensor_data(g, a), nvl_gguf_tensor_data(g2, b), (size_t)a->size))
            abort();
    }
    nvl_gguf_close(g2);
    munmap(map, (size_t)len);
    nvl_gguf_writer_destroy(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nvl_gguf *g = NULL;
    char err[512];

    err[0] = '\0';
    if (nvl_gguf_open_memory(data, size, &g, err, sizeof(err)) == 0) {
        exercise(g);
        rewrite(g);
        nvl_gguf_close(g);
    } else if (!err[0] || g) {
        abort(); /* a refusal must say why and return no handle */
    }
    return 0;
}
