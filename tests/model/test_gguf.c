/* Tests for model/src/gguf_reader.c and gguf_writer.c.
 *
 * Malformed inputs are built here byte by byte from the format description (not with our
 * writer), so reader and writer are checked against the spec rather than against each other.
 * Real files come from ../shared/models (their expected contents are from its README). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_test_util.h"
#include "nvl_model.h"

/* ---- a tiny independent GGUF byte builder ------------------------------------------------- */

struct tb {
    uint8_t *p;
    size_t len, cap;
};

static void tb_put(struct tb *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void tb_u32(struct tb *b, uint32_t v)
{
    tb_put(b, &v, 4);
}

static void tb_u64(struct tb *b, uint64_t v)
{
    tb_put(b, &v, 8);
}

static void tb_str(struct tb *b, const char *s)
{
    tb_u64(b, strlen(s));
    tb_put(b, s, strlen(s));
}

static void tb_header(struct tb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    tb_put(b, "GGUF", 4);
    tb_u32(b, version);
    tb_u64(b, n_tensors);
    tb_u64(b, n_kv);
}

static void tb_kv_u32(struct tb *b, const char *key, uint32_t v)
{
    tb_str(b, key);
    tb_u32(b, NVL_GGUF_TYPE_UINT32);
    tb_u32(b, v);
}

static void tb_tensor(struct tb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                      uint32_t type, uint64_t offset)
{
    tb_str(b, name);
    tb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        tb_u64(b, ne[i]);
    tb_u32(b, type);
    tb_u64(b, offset);
}

static void tb_pad(struct tb *b, size_t align)
{
    while (b->len % align)
        tb_put(b, "\0", 1);
}

static void tb_zeros(struct tb *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tb_put(b, "\0", 1);
}

/* Opens b and expects failure with `needle` in the message. */
static void expect_fail(struct tb *b, const char *needle)
{
    struct nvl_gguf *g = NULL;
    char err[512] = "";
    int ret = nvl_gguf_open_memory(b->p, b->len, &g, err, sizeof(err));

    if (ret == 0 || !strstr(err, needle))
        fail_msg("expected failure containing \"%s\", got ret %d: \"%s\"", needle, ret, err);
    assert_null(g);
    free(b->p);
    *b = (struct tb){0};
}

static struct nvl_gguf *expect_ok(const struct tb *b)
{
    struct nvl_gguf *g = NULL;
    char err[512] = "";
    int ret = nvl_gguf_open_memory(b->p, b->len, &g, err, sizeof(err));

    if (ret)
        fail_msg("open failed: %d %s", ret, err);
    return g;
}

/* ---- real files --------------------------------------------------------------------------- */

static void expect_shape(const struct nvl_gguf *g, const char *name, uint64_t ne0, uint64_t ne1)
{
    const struct nvl_gguf_tensor *t = nvl_gguf_get_tensor(g, name);

    if (!t)
        fail_msg("tensor %s missing", name);
    assert_int_equal(t->type, NVL_GGML_TYPE_F32);
    assert_int_equal(t->ne[0], ne0);
    assert_int_equal(t->ne[1], ne1);
    assert_int_equal(t->size, ne0 * ne1 * 4);
    assert_int_equal(t->offset % 32, 0);
    assert_non_null(nvl_gguf_tensor_data(g, t));
}

static void stories260k_metadata_and_shapes(void **state)
{
    char path[512], err[512];
    struct nvl_gguf *g;
    const char *s;
    uint64_t len, n;
    int64_t v;
    float eps;
    enum nvl_gguf_type et;
    const void *data;

    (void)state;
    mt_model_path("stories260K.gguf", path, sizeof(path));
    if (access(path, R_OK))
        skip();
    assert_int_equal(nvl_gguf_open(path, &g, err, sizeof(err)), 0);
    assert_int_equal(nvl_gguf_version(g), 3);
    assert_int_equal(nvl_gguf_file_size(g), 1185376);
    assert_int_equal(nvl_gguf_kv_count(g), 19);
    assert_int_equal(nvl_gguf_tensor_count(g), 48);
    assert_int_equal(nvl_gguf_alignment(g), 32);
    assert_int_equal(nvl_gguf_data_offset(g) % 32, 0);

    assert_int_equal(nvl_gguf_get_str(g, "general.architecture", &s, &len), 0);
    assert_string_equal(s, "llama");
    assert_int_equal(len, 5);
    assert_int_equal(nvl_gguf_get_str(g, "tokenizer.ggml.model", &s, NULL), 0);
    assert_string_equal(s, "llama");
    assert_int_equal(nvl_gguf_get_int(g, "llama.embedding_length", &v), 0);
    assert_int_equal(v, 64);
    assert_int_equal(nvl_gguf_get_int(g, "llama.block_count", &v), 0);
    assert_int_equal(v, 5);
    assert_int_equal(nvl_gguf_get_int(g, "llama.attention.head_count", &v), 0);
    assert_int_equal(v, 8);
    assert_int_equal(nvl_gguf_get_int(g, "llama.attention.head_count_kv", &v), 0);
    assert_int_equal(v, 4);
    assert_int_equal(nvl_gguf_get_int(g, "llama.feed_forward_length", &v), 0);
    assert_int_equal(v, 172);
    assert_int_equal(nvl_gguf_get_int(g, "llama.context_length", &v), 0);
    assert_int_equal(v, 2048);
    assert_int_equal(nvl_gguf_get_int(g, "llama.rope.dimension_count", &v), 0);
    assert_int_equal(v, 8);
    assert_int_equal(nvl_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps), 0);
    assert_true(fabsf(eps - 1e-5f) < 1e-9f);
    assert_int_equal(nvl_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(nvl_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(nvl_gguf_get_int(g, "llama.rope.freq_base", &v), -ENOENT);
    /* Type-checked getters refuse the wrong type. */
    assert_int_equal(nvl_gguf_get_u64(g, "llama.block_count", &len), -EINVAL);
    assert_int_equal(nvl_gguf_get_str(g, "llama.block_count", &s, NULL), -EINVAL);

    assert_int_equal(nvl_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &data), 0);
    assert_int_equal(et, NVL_GGUF_TYPE_STRING);
    assert_int_equal(n, 512);
    assert_null(data);
    assert_int_equal(
        nvl_gguf_arr_str(g, nvl_gguf_find_key(g, "tokenizer.ggml.tokens"), 1, &s, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "<s>", 3);
    assert_int_equal(
        nvl_gguf_arr_str(g, nvl_gguf_find_key(g, "tokenizer.ggml.tokens"), 512, &s, &len), -EINVAL);
    assert_int_equal(nvl_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &data), 0);
    assert_int_equal(et, NVL_GGUF_TYPE_FLOAT32);
    assert_int_equal(n, 512);
    assert_non_null(data);
    assert_true(((uintptr_t)data & 3) == 0);

    /* Shapes follow from the hyperparameters: n_embd 64, n_ff 172, 8 heads of 8, 4 kv heads. */
    expect_shape(g, "token_embd.weight", 64, 512);
    expect_shape(g, "output.weight", 64, 512);
    expect_shape(g, "output_norm.weight", 64, 1);
    for (int l = 0; l < 5; l++) {
        char name[64];

        snprintf(name, sizeof(name), "blk.%d.attn_q.weight", l);
        expect_shape(g, name, 64, 64);
        snprintf(name, sizeof(name), "blk.%d.attn_k.weight", l);
        expect_shape(g, name, 64, 32);
        snprintf(name, sizeof(name), "blk.%d.attn_v.weight", l);
        expect_shape(g, name, 64, 32);
        snprintf(name, sizeof(name), "blk.%d.attn_output.weight", l);
        expect_shape(g, name, 64, 64);
        snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
        expect_shape(g, name, 64, 1);
        snprintf(name, sizeof(name), "blk.%d.ffn_gate.weight", l);
        expect_shape(g, name, 64, 172);
        snprintf(name, sizeof(name), "blk.%d.ffn_up.weight", l);
        expect_shape(g, name, 64, 172);
        snprintf(name, sizeof(name), "blk.%d.ffn_down.weight", l);
        expect_shape(g, name, 172, 64);
        snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
        expect_shape(g, name, 64, 1);
    }
    assert_null(nvl_gguf_get_tensor(g, "blk.5.attn_q.weight"));
    assert_int_equal(nvl_gguf_find_tensor(g, "nope"), -1);
    nvl_gguf_close(g);
}

static void vocab_files(void **state)
{
    static const struct {
        const char *file;
        uint64_t n_tokens, n_merges;
        const char *model;
    } files[] = {
        {"llama.cpp-vocab/ggml-vocab-llama-spm.gguf", 32000, 0, "llama"},
        {"llama.cpp-vocab/ggml-vocab-gpt-2.gguf", 50257, 50000, "gpt2"},
        {"generated-vocab/ggml-vocab-llama-bpe.gguf", 128256, 280147, "gpt2"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[512], err[512];
        struct nvl_gguf *g;
        uint64_t n;
        const char *s;

        mt_model_path(files[i].file, path, sizeof(path));
        if (access(path, R_OK))
            skip();
        assert_int_equal(nvl_gguf_open(path, &g, err, sizeof(err)), 0);
        assert_int_equal(nvl_gguf_tensor_count(g), 0);
        assert_int_equal(nvl_gguf_get_str(g, "tokenizer.ggml.model", &s, NULL), 0);
        assert_string_equal(s, files[i].model);
        assert_int_equal(nvl_gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &n, NULL), 0);
        assert_int_equal(n, files[i].n_tokens);
        if (files[i].n_merges) {
            assert_int_equal(nvl_gguf_get_arr(g, "tokenizer.ggml.merges", NULL, &n, NULL), 0);
            assert_int_equal(n, files[i].n_merges);
        }
        nvl_gguf_close(g);
    }
}

/* Every prefix of stories260K's metadata, and a sample of prefixes in its data section, must be
 * refused cleanly; the whole file must open. */
static void truncated_files_fail_cleanly(void **state)
{
    char path[512], err[512];
    struct nvl_gguf *g;
    uint8_t *data;
    size_t len, meta;

    (void)state;
    mt_model_path("stories260K.gguf", path, sizeof(path));
    data = mt_read_file(path, &len);
    if (!data)
        skip();
    assert_int_equal(nvl_gguf_open_memory(data, len, &g, err, sizeof(err)), 0);
    meta = (size_t)nvl_gguf_data_offset(g);
    nvl_gguf_close(g);
    for (size_t n = 0; n < len; n = n < meta + 64 ? n + 1 : n + 4099) {
        /* Copy so that ASan sees reads past the prefix. */
        uint8_t *p = malloc(n ? n : 1);

        memcpy(p, data, n);
        g = (struct nvl_gguf *)1;
        err[0] = '\0';
        assert_int_not_equal(nvl_gguf_open_memory(p, n, &g, err, sizeof(err)), 0);
        assert_true(strlen(err) > 0);
        free(p);
    }
    /* The metadata alone is a valid prefix when the full size is known. */
    assert_int_equal(nvl_gguf_open_prefix(data, meta, len, &g, err, sizeof(err)), 0);
    assert_int_equal(nvl_gguf_tensor_count(g), 48);
    assert_null(nvl_gguf_tensor_data(g, nvl_gguf_tensor(g, 0)));
    nvl_gguf_close(g);
    free(data);
}

/* Random byte corruption of the metadata must never crash (success or a clean error). */
static void corrupted_files_do_not_crash(void **state)
{
    char path[512], err[512];
    struct nvl_gguf *g;
    uint8_t *data, *copy;
    size_t len, meta;
    uint32_t seed = 12345;
    int failures = 0;

    (void)state;
    mt_model_path("stories260K.gguf", path, sizeof(path));
    data = mt_read_file(path, &len);
    if (!data)
        skip();
    assert_int_equal(nvl_gguf_open_memory(data, len, &g, err, sizeof(err)), 0);
    meta = (size_t)nvl_gguf_data_offset(g);
    nvl_gguf_close(g);
    copy = malloc(len);
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, data, len);
        for (int k = 0; k < 1 + iter % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % meta;
            seed = seed * 1103515245u + 12345u;
            copy[pos] =
                (iter & 1) ? (uint8_t)(seed >> 16) : (uint8_t)(copy[pos] ^ (1u << (seed % 8)));
        }
        if (nvl_gguf_open_memory(copy, len, &g, err, sizeof(err)) == 0)
            nvl_gguf_close(g);
        else
            failures++;
    }
    /* Most corruptions hit lengths and types and must be detected. */
    assert_true(failures > 500);
    free(copy);
    free(data);
}

/* ---- crafted malformed files -------------------------------------------------------------- */

static void header_errors(void **state)
{
    struct tb b = {0};

    (void)state;
    tb_put(&b, "GGUX", 4);
    tb_u32(&b, 3);
    tb_u64(&b, 0);
    tb_u64(&b, 0);
    expect_fail(&b, "not \"GGUF\"");

    tb_header(&b, 1, 0, 0);
    expect_fail(&b, "version 1 at offset 0x4 is not supported");

    tb_header(&b, 0x03000000, 0, 0);
    expect_fail(&b, "big-endian");

    tb_header(&b, 4, 0, 0);
    expect_fail(&b, "version 4");

    tb_put(&b, "GGUF", 4);
    tb_u32(&b, 3);
    expect_fail(&b, "header at offset 0x0: needs 24 bytes");

    tb_header(&b, 3, 0, UINT64_MAX);
    expect_fail(&b, "kv count");

    tb_header(&b, 3, UINT64_MAX / 2, 0);
    expect_fail(&b, "tensor count");

    /* v2 and v3 with nothing in them are valid. */
    tb_header(&b, 2, 0, 0);
    nvl_gguf_close(expect_ok(&b));
    free(b.p);
    b = (struct tb){0};
    tb_header(&b, 3, 0, 0);
    nvl_gguf_close(expect_ok(&b));
    free(b.p);
}

static void kv_errors(void **state)
{
    struct tb b = {0};

    (void)state;
    tb_header(&b, 3, 0, 1);
    tb_str(&b, "a.key");
    tb_u32(&b, 13);
    tb_u32(&b, 0);
    expect_fail(&b, "kv 0 'a.key': value type 13 at offset 0x25 is not a GGUF type");

    tb_header(&b, 3, 0, 1);
    tb_u64(&b, 0);
    tb_u32(&b, NVL_GGUF_TYPE_UINT8);
    tb_u32(&b, 0);
    expect_fail(&b, "empty or contains a NUL");

    tb_header(&b, 3, 0, 1);
    tb_u64(&b, 1ull << 40);
    tb_zeros(&b, 16);
    expect_fail(&b, "kv 0: key of 1099511627776 bytes at offset 0x20");

    tb_header(&b, 3, 0, 1);
    tb_str(&b, "s");
    tb_u32(&b, NVL_GGUF_TYPE_STRING);
    tb_u64(&b, UINT64_MAX);
    tb_zeros(&b, 4);
    expect_fail(&b, "kv 0 's': string of 18446744073709551615 bytes");

    tb_header(&b, 3, 0, 1);
    tb_str(&b, "nested");
    tb_u32(&b, NVL_GGUF_TYPE_ARRAY);
    tb_u32(&b, NVL_GGUF_TYPE_ARRAY);
    tb_u64(&b, 1);
    tb_zeros(&b, 16);
    expect_fail(&b, "arrays of arrays are not supported");

    tb_header(&b, 3, 0, 1);
    tb_str(&b, "big");
    tb_u32(&b, NVL_GGUF_TYPE_ARRAY);
    tb_u32(&b, NVL_GGUF_TYPE_UINT64);
    tb_u64(&b, 1ull << 61);
    tb_zeros(&b, 64);
    expect_fail(&b, "kv 0 'big': array of 2305843009213693952 uint64 at offset 0x27 does not fit");

    tb_header(&b, 3, 0, 1);
    tb_str(&b, "strs");
    tb_u32(&b, NVL_GGUF_TYPE_ARRAY);
    tb_u32(&b, NVL_GGUF_TYPE_STRING);
    tb_u64(&b, 2);
    tb_str(&b, "ok");
    tb_u64(&b, 100);
    tb_put(&b, "short", 5);
    expect_fail(&b, "kv 0 'strs': string 1 of 2 (100 bytes)");

    tb_header(&b, 3, 0, 2);
    tb_kv_u32(&b, "dup", 1);
    tb_kv_u32(&b, "dup", 2);
    expect_fail(&b, "kv 1 'dup' at offset 0x2b: duplicate of kv 0");

    tb_header(&b, 3, 0, 1);
    tb_kv_u32(&b, "general.alignment", 48);
    expect_fail(&b, "'general.alignment' at offset 0x35: 48 is not a power of two");

    tb_header(&b, 3, 0, 1);
    tb_kv_u32(&b, "general.alignment", 0);
    expect_fail(&b, "0 is not a power of two");

    tb_header(&b, 3, 0, 1);
    tb_kv_u32(&b, "general.alignment", 1u << 30);
    expect_fail(&b, "1073741824 is not a power of two in [1, 16777216]");

    tb_header(&b, 3, 0, 1);
    tb_str(&b, "general.alignment");
    tb_u32(&b, NVL_GGUF_TYPE_STRING);
    tb_str(&b, "32");
    expect_fail(&b, "type string is not an integer type");
}

struct one_tensor_case {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[5];
    uint32_t type;
    uint64_t offset;
    bool pad;
    size_t data;
    const char *error;
};

static const struct one_tensor_case one_tensor[] = {
    /* One byte short of 2 Q8_0 blocks. */
    {"blk.0.attn_q.weight",
     2,
     {32, 2},
     NVL_GGML_TYPE_Q8_0,
     0,
     true,
     67,
     "tensor 0 'blk.0.attn_q.weight': data [0x60, 0xa4) past end of file (size 163)"},
    {"w",
     1,
     {33},
     NVL_GGML_TYPE_Q8_0,
     0,
     true,
     64,
     "ne[0] = 33 is not a multiple of the q8_0 block size 32"},
    {"w", 2, {32, 2}, 4, 0, false, 64, "type 4 at offset 0x35 is not a known ggml type"},
    {"w", 5, {1, 1, 1, 1, 1}, NVL_GGML_TYPE_F32, 0, false, 0, "n_dims 5"},
    {"w", 2, {1ull << 62, 4}, NVL_GGML_TYPE_F32, 0, false, 64, "ne[1] = 4 at offset"},
    {"w",
     2,
     {32, 2},
     NVL_GGML_TYPE_F32,
     16,
     true,
     512,
     "data offset 0x10 is not a multiple of the alignment 32"},
    {"w", 2, {32, 2}, NVL_GGML_TYPE_F32, UINT64_MAX - 31, true, 512, "past end of file"},
    {"a_name_that_is_longer_than_sixty_three_bytes_which_ggml_refuses__",
     2,
     {32, 2},
     NVL_GGML_TYPE_F32,
     0,
     false,
     0,
     "longer than 63 bytes"},
};

static void tensor_errors(void **state)
{
    const uint64_t ne32[2] = {32, 2}, ne33[1] = {33};
    struct tb b = {0};
    struct nvl_gguf *g;

    (void)state;
    /* A valid file: one Q8_0 tensor of 2 rows of 32 (2 blocks of 34 bytes). */
    tb_header(&b, 3, 1, 0);
    tb_tensor(&b, "w", 2, ne32, NVL_GGML_TYPE_Q8_0, 0);
    tb_pad(&b, 32);
    tb_zeros(&b, 68);
    g = expect_ok(&b);
    assert_int_equal(nvl_gguf_tensor(g, 0)->size, 68);
    assert_int_equal(nvl_gguf_tensor_nelements(nvl_gguf_tensor(g, 0)), 64);
    nvl_gguf_close(g);
    free(b.p);
    b = (struct tb){0};

    /* Files with one bad tensor-info record: header, the record, optional padding to 32, then
     * `data` zero bytes. */
    for (size_t i = 0; i < sizeof(one_tensor) / sizeof(one_tensor[0]); i++) {
        const struct one_tensor_case *c = &one_tensor[i];

        tb_header(&b, 3, 1, 0);
        tb_tensor(&b, c->name, c->n_dims, c->ne, c->type, c->offset);
        if (c->pad)
            tb_pad(&b, 32);
        tb_zeros(&b, c->data);
        expect_fail(&b, c->error);
    }

    tb_header(&b, 3, 2, 0);
    tb_tensor(&b, "w", 2, ne32, NVL_GGML_TYPE_F32, 0);
    tb_tensor(&b, "w", 2, ne32, NVL_GGML_TYPE_F32, 256);
    tb_pad(&b, 32);
    tb_zeros(&b, 512);
    expect_fail(&b, "tensor 1 'w' at offset 0x41: duplicate name of tensor 0");

    tb_header(&b, 3, 2, 0);
    tb_tensor(&b, "a", 2, ne32, NVL_GGML_TYPE_F32, 0);
    tb_tensor(&b, "b", 2, ne32, NVL_GGML_TYPE_F32, 128);
    tb_pad(&b, 32);
    tb_zeros(&b, 512);
    expect_fail(&b, "tensor 'a' data [0x0, 0x100) overlaps tensor 'b' at 0x80");

    /* With general.alignment 1, F32 data must still be 4-byte aligned in the file. */
    tb_header(&b, 3, 1, 1);
    tb_kv_u32(&b, "general.alignment", 1);
    tb_tensor(&b, "w", 1, ne33, NVL_GGML_TYPE_F32, 0);
    tb_zeros(&b, 33 * 4); /* the data section starts right after the 90-byte header */
    expect_fail(&b, "tensor 0 'w': data at file offset 0x5a is not 4-byte aligned as f32 data "
                    "must be");

    /* Alignment from general.alignment applies to offsets and the data section. */
    tb_header(&b, 3, 1, 1);
    tb_kv_u32(&b, "general.alignment", 256);
    tb_tensor(&b, "w", 2, ne32, NVL_GGML_TYPE_F32, 0);
    tb_pad(&b, 256);
    tb_zeros(&b, 256);
    g = expect_ok(&b);
    assert_int_equal(nvl_gguf_alignment(g), 256);
    assert_int_equal(nvl_gguf_data_offset(g), 256);
    assert_ptr_equal(nvl_gguf_tensor_data(g, nvl_gguf_tensor(g, 0)), b.p + 256);
    nvl_gguf_close(g);
    free(b.p);
}

/* ---- writer ------------------------------------------------------------------------------- */

struct producer {
    uint64_t calls;
};

/* Produces bytes i % 251 in uneven pieces. */
static int produce(void *ctx, const struct nvl_gguf_tensor *t, struct nvl_gguf_sink *sink)
{
    struct producer *p = ctx;
    uint8_t chunk[1000];
    uint64_t done = 0;

    p->calls++;
    while (done < t->size) {
        size_t n = (size_t)(t->size - done < 777 ? t->size - done : 777);

        for (size_t i = 0; i < n; i++)
            chunk[i] = (uint8_t)((done + i) % 251);
        if (nvl_gguf_sink_write(sink, chunk, n))
            return -EIO;
        done += n;
    }
    return 0;
}

static void writer_round_trip(void **state)
{
    static const uint8_t u8s[] = {0, 1, 255};
    static const int8_t i8s[] = {-128, 0, 127};
    static const uint16_t u16s[] = {0, 65535};
    static const int16_t i16s[] = {-32768, 32767};
    static const uint32_t u32s[] = {0, 0xffffffffu, 7};
    static const int32_t i32s[] = {INT32_MIN, -1, INT32_MAX};
    static const float f32s[] = {-1.5f, 0.0f, 3.25e10f};
    static const bool bools[] = {true, false, true};
    static const uint64_t u64s[] = {UINT64_MAX, 0};
    static const int64_t i64s[] = {INT64_MIN, INT64_MAX};
    static const double f64s[] = {3.141592653589793, -2e300};
    static const char *const strs[] = {"alpha", "", "g\xc3\xa9n\xc3\xa9ral"};
    const uint64_t ne_f32[2] = {3, 5}, ne_q8[2] = {64, 3}, ne_q4k[1] = {512}, ne_big[2] = {4096, 3};
    float f32data[15];
    uint8_t q8data[6 * 34], q4kdata[2 * 144];
    char path[] = "/tmp/nvl_test_gguf_XXXXXX", err[512];
    struct nvl_gguf_writer *w;
    struct nvl_gguf *g;
    struct nvl_gguf_value v;
    struct producer prod = {0};
    const struct nvl_gguf_tensor *t;
    const char *s;
    uint64_t len, n;
    enum nvl_gguf_type et;
    const void *data;
    int fd;

    (void)state;
    for (int i = 0; i < 15; i++)
        f32data[i] = (float)i * 0.5f - 3.0f;
    for (size_t i = 0; i < sizeof(q8data); i++)
        q8data[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof(q4kdata); i++)
        q4kdata[i] = (uint8_t)(i * 13);

    assert_int_equal(nvl_gguf_writer_create(&w), 0);
    assert_int_equal(nvl_gguf_writer_set_version(w, 2), 0);
    assert_int_equal(nvl_gguf_writer_set_version(w, 1), -EINVAL);
    assert_int_equal(nvl_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(nvl_gguf_writer_set_u8(w, "t.u8", 200), 0);
    assert_int_equal(nvl_gguf_writer_set_i8(w, "t.i8", -100), 0);
    assert_int_equal(nvl_gguf_writer_set_u16(w, "t.u16", 60000), 0);
    assert_int_equal(nvl_gguf_writer_set_i16(w, "t.i16", -30000), 0);
    assert_int_equal(nvl_gguf_writer_set_u32(w, "t.u32", 4000000000u), 0);
    assert_int_equal(nvl_gguf_writer_set_i32(w, "t.i32", -2000000000), 0);
    assert_int_equal(nvl_gguf_writer_set_u64(w, "t.u64", UINT64_MAX - 1), 0);
    assert_int_equal(nvl_gguf_writer_set_i64(w, "t.i64", INT64_MIN + 1), 0);
    assert_int_equal(nvl_gguf_writer_set_f32(w, "t.f32", 1e-5f), 0);
    assert_int_equal(nvl_gguf_writer_set_f64(w, "t.f64", -1.0 / 3.0), 0);
    assert_int_equal(nvl_gguf_writer_set_bool(w, "t.bool", true), 0);
    assert_int_equal(nvl_gguf_writer_set_strn(w, "t.strn", "a\0b", 3), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.u8", NVL_GGUF_TYPE_UINT8, u8s, 3), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.i8", NVL_GGUF_TYPE_INT8, i8s, 3), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.u16", NVL_GGUF_TYPE_UINT16, u16s, 2), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.i16", NVL_GGUF_TYPE_INT16, i16s, 2), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.u32", NVL_GGUF_TYPE_UINT32, u32s, 3), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.i32", NVL_GGUF_TYPE_INT32, i32s, 3), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.f32", NVL_GGUF_TYPE_FLOAT32, f32s, 3), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.bool", NVL_GGUF_TYPE_BOOL, bools, 3), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.u64", NVL_GGUF_TYPE_UINT64, u64s, 2), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.i64", NVL_GGUF_TYPE_INT64, i64s, 2), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.f64", NVL_GGUF_TYPE_FLOAT64, f64s, 2), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.empty", NVL_GGUF_TYPE_INT32, NULL, 0), 0);
    assert_int_equal(nvl_gguf_writer_set_arr_str(w, "a.str", strs, NULL, 3), 0);
    assert_int_equal(nvl_gguf_writer_set_arr(w, "a.bad", NVL_GGUF_TYPE_STRING, strs, 3), -EINVAL);
    /* Replacing keeps the position; removing drops the key. */
    assert_int_equal(nvl_gguf_writer_set_u8(w, "t.u8", 201), 0);
    assert_int_equal(nvl_gguf_writer_set_u8(w, "t.gone", 1), 0);
    assert_int_equal(nvl_gguf_writer_remove_key(w, "t.gone"), 0);
    assert_int_equal(nvl_gguf_writer_remove_key(w, "t.gone"), -ENOENT);
    assert_int_equal(nvl_gguf_writer_set_alignment(w, 48), -EINVAL);
    assert_int_equal(nvl_gguf_writer_set_u64(w, "general.alignment", 64), -EINVAL);
    assert_int_equal(nvl_gguf_writer_set_u32(w, "general.alignment", 96), -EINVAL);
    assert_int_equal(nvl_gguf_writer_set_alignment(w, 64), 0);

    assert_int_equal(nvl_gguf_writer_add_tensor(w, "f32", NVL_GGML_TYPE_F32, 2, ne_f32, f32data),
                     0);
    assert_int_equal(nvl_gguf_writer_add_tensor(w, "q8", NVL_GGML_TYPE_Q8_0, 2, ne_q8, q8data), 0);
    assert_int_equal(nvl_gguf_writer_add_tensor(w, "q4k", NVL_GGML_TYPE_Q4_K, 1, ne_q4k, q4kdata),
                     0);
    assert_int_equal(
        nvl_gguf_writer_add_tensor_fn(w, "big", NVL_GGML_TYPE_BF16, 2, ne_big, produce, &prod), 0);
    assert_int_equal(nvl_gguf_writer_add_tensor(w, "q8", NVL_GGML_TYPE_F32, 2, ne_f32, f32data),
                     -EEXIST);
    assert_int_equal(nvl_gguf_writer_add_tensor(w, "bad", NVL_GGML_TYPE_Q8_0, 2, ne_f32, f32data),
                     -EINVAL);

    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(nvl_gguf_writer_write_file(w, path, err, sizeof(err)), 0);
    assert_int_equal(prod.calls, 1);

    assert_int_equal(nvl_gguf_open(path, &g, err, sizeof(err)), 0);
    assert_int_equal(nvl_gguf_version(g), 2);
    assert_int_equal(nvl_gguf_alignment(g), 64);
    assert_int_equal(nvl_gguf_data_offset(g), nvl_gguf_writer_data_offset(w));
    assert_int_equal(nvl_gguf_file_size(g), nvl_gguf_writer_file_size(w));
    assert_int_equal(nvl_gguf_data_offset(g) % 64, 0);
    assert_int_equal(nvl_gguf_kv_count(g), 27);
    assert_string_equal(nvl_gguf_kv_key(g, 0), "general.architecture");
    assert_string_equal(nvl_gguf_kv_key(g, 1), "t.u8");
    assert_string_equal(nvl_gguf_kv_key(g, 26), "general.alignment");

    {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
        float f32;
        double f64;
        bool b;

        assert_int_equal(nvl_gguf_get_u8(g, "t.u8", &u8), 0);
        assert_int_equal(u8, 201);
        assert_int_equal(nvl_gguf_get_i8(g, "t.i8", &i8), 0);
        assert_int_equal(i8, -100);
        assert_int_equal(nvl_gguf_get_u16(g, "t.u16", &u16), 0);
        assert_int_equal(u16, 60000);
        assert_int_equal(nvl_gguf_get_i16(g, "t.i16", &i16), 0);
        assert_int_equal(i16, -30000);
        assert_int_equal(nvl_gguf_get_u32(g, "t.u32", &u32), 0);
        assert_int_equal(u32, 4000000000u);
        assert_int_equal(nvl_gguf_get_i32(g, "t.i32", &i32), 0);
        assert_int_equal(i32, -2000000000);
        assert_int_equal(nvl_gguf_get_u64(g, "t.u64", &u64), 0);
        assert_true(u64 == UINT64_MAX - 1);
        assert_int_equal(nvl_gguf_get_int(g, "t.u64", &i64), -ERANGE);
        assert_int_equal(nvl_gguf_get_i64(g, "t.i64", &i64), 0);
        assert_true(i64 == INT64_MIN + 1);
        assert_int_equal(nvl_gguf_get_int(g, "t.i16", &i64), 0);
        assert_int_equal(i64, -30000);
        assert_int_equal(nvl_gguf_get_f32(g, "t.f32", &f32), 0);
        assert_true(f32 == 1e-5f);
        assert_int_equal(nvl_gguf_get_f64(g, "t.f64", &f64), 0);
        assert_true(f64 == -1.0 / 3.0);
        assert_int_equal(nvl_gguf_get_float(g, "t.f32", &f64), 0);
        assert_true(f64 == (double)1e-5f);
        assert_int_equal(nvl_gguf_get_bool(g, "t.bool", &b), 0);
        assert_true(b);
        assert_int_equal(nvl_gguf_get_u8(g, "t.none", &u8), -ENOENT);
    }
    assert_int_equal(nvl_gguf_get_str(g, "t.strn", &s, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "a\0b", 4);

#define CHECK_ARR(key, gtype, ref)                                                                 \
    do {                                                                                           \
        assert_int_equal(nvl_gguf_get_arr(g, key, &et, &n, &data), 0);                             \
        assert_int_equal(et, gtype);                                                               \
        assert_int_equal(n, sizeof(ref) / sizeof(ref[0]));                                         \
        assert_memory_equal(data, ref, sizeof(ref));                                               \
    } while (0)
    CHECK_ARR("a.u8", NVL_GGUF_TYPE_UINT8, u8s);
    CHECK_ARR("a.i8", NVL_GGUF_TYPE_INT8, i8s);
    CHECK_ARR("a.u16", NVL_GGUF_TYPE_UINT16, u16s);
    CHECK_ARR("a.i16", NVL_GGUF_TYPE_INT16, i16s);
    CHECK_ARR("a.u32", NVL_GGUF_TYPE_UINT32, u32s);
    CHECK_ARR("a.i32", NVL_GGUF_TYPE_INT32, i32s);
    CHECK_ARR("a.f32", NVL_GGUF_TYPE_FLOAT32, f32s);
    CHECK_ARR("a.bool", NVL_GGUF_TYPE_BOOL, bools);
    CHECK_ARR("a.u64", NVL_GGUF_TYPE_UINT64, u64s);
    CHECK_ARR("a.i64", NVL_GGUF_TYPE_INT64, i64s);
    CHECK_ARR("a.f64", NVL_GGUF_TYPE_FLOAT64, f64s);
#undef CHECK_ARR
    assert_int_equal(nvl_gguf_get_arr(g, "a.empty", &et, &n, &data), 0);
    assert_int_equal(n, 0);
    assert_int_equal(nvl_gguf_get_arr(g, "a.str", &et, &n, &data), 0);
    assert_int_equal(et, NVL_GGUF_TYPE_STRING);
    assert_int_equal(n, 3);
    for (uint64_t i = 0; i < 3; i++) {
        assert_int_equal(nvl_gguf_arr_str(g, nvl_gguf_find_key(g, "a.str"), i, &s, &len), 0);
        assert_int_equal(len, strlen(strs[i]));
        assert_memory_equal(s, strs[i], len);
    }
    assert_int_equal(nvl_gguf_kv_value(g, nvl_gguf_find_key(g, "a.i64"), &v), 0);
    assert_int_equal(v.type, NVL_GGUF_TYPE_ARRAY);
    /* Array elements one at a time, as scalar values. */
    assert_int_equal(nvl_gguf_arr_value(g, nvl_gguf_find_key(g, "a.i64"), 1, &v), 0);
    assert_int_equal(v.type, NVL_GGUF_TYPE_INT64);
    assert_true(v.i64 == i64s[1]);
    assert_int_equal(nvl_gguf_arr_value(g, nvl_gguf_find_key(g, "a.u8"), 2, &v), 0);
    assert_int_equal(v.type, NVL_GGUF_TYPE_UINT8);
    assert_int_equal(v.u8, u8s[2]);
    assert_int_equal(nvl_gguf_arr_value(g, nvl_gguf_find_key(g, "a.f32"), 0, &v), 0);
    assert_true(v.f32 == f32s[0]);
    assert_int_equal(nvl_gguf_arr_value(g, nvl_gguf_find_key(g, "a.str"), 2, &v), 0);
    assert_int_equal(v.type, NVL_GGUF_TYPE_STRING);
    assert_int_equal(v.str.len, strlen(strs[2]));
    assert_memory_equal(v.str.data, strs[2], v.str.len);
    assert_int_equal(nvl_gguf_arr_value(g, nvl_gguf_find_key(g, "a.str"), 3, &v), -EINVAL);
    assert_int_equal(nvl_gguf_arr_value(g, nvl_gguf_find_key(g, "t.u8"), 0, &v), -EINVAL);
    assert_int_equal(nvl_gguf_arr_value(g, nvl_gguf_find_key(g, "a.empty"), 0, &v), -EINVAL);

    assert_int_equal(nvl_gguf_tensor_count(g), 4);
    t = nvl_gguf_tensor(g, 0);
    assert_string_equal(t->name, "f32");
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 3);
    assert_int_equal(t->ne[1], 5);
    assert_int_equal(t->ne[2], 1);
    assert_memory_equal(nvl_gguf_tensor_data(g, t), f32data, sizeof(f32data));
    t = nvl_gguf_get_tensor(g, "q8");
    assert_int_equal(t->type, NVL_GGML_TYPE_Q8_0);
    assert_int_equal(t->offset % 64, 0);
    assert_memory_equal(nvl_gguf_tensor_data(g, t), q8data, sizeof(q8data));
    t = nvl_gguf_get_tensor(g, "q4k");
    assert_int_equal(t->n_dims, 1);
    assert_memory_equal(nvl_gguf_tensor_data(g, t), q4kdata, sizeof(q4kdata));
    t = nvl_gguf_get_tensor(g, "big");
    assert_int_equal(t->size, 4096 * 3 * 2);
    for (uint64_t i = 0; i < t->size; i++)
        assert_int_equal(((const uint8_t *)nvl_gguf_tensor_data(g, t))[i], i % 251);
    nvl_gguf_close(g);
    nvl_gguf_writer_destroy(w);
    unlink(path);
}

/* Scalar values as text: exact known forms, and for floats the defining property (the text reads
 * back as the same value, and above 6 significant digits one fewer would not) on random bit
 * patterns. */
static void value_format(void **state)
{
    static const struct {
        struct nvl_gguf_value v;
        const char *text;
    } cases[] = {
        {{.type = NVL_GGUF_TYPE_UINT8, .u8 = 255}, "255"},
        {{.type = NVL_GGUF_TYPE_INT8, .i8 = -128}, "-128"},
        {{.type = NVL_GGUF_TYPE_UINT16, .u16 = 65535}, "65535"},
        {{.type = NVL_GGUF_TYPE_INT16, .i16 = -32768}, "-32768"},
        {{.type = NVL_GGUF_TYPE_UINT32, .u32 = 4294967295u}, "4294967295"},
        {{.type = NVL_GGUF_TYPE_INT32, .i32 = -2147483647 - 1}, "-2147483648"},
        {{.type = NVL_GGUF_TYPE_UINT64, .u64 = UINT64_MAX}, "18446744073709551615"},
        {{.type = NVL_GGUF_TYPE_INT64, .i64 = INT64_MIN}, "-9223372036854775808"},
        {{.type = NVL_GGUF_TYPE_BOOL, .b = true}, "true"},
        {{.type = NVL_GGUF_TYPE_BOOL, .b = false}, "false"},
        {{.type = NVL_GGUF_TYPE_FLOAT32, .f32 = 0.1f}, "0.1"},
        {{.type = NVL_GGUF_TYPE_FLOAT32, .f32 = 1e-5f}, "1e-05"},
        {{.type = NVL_GGUF_TYPE_FLOAT32, .f32 = 10000.0f}, "10000"},
        {{.type = NVL_GGUF_TYPE_FLOAT32, .f32 = 16777217.0f}, "16777216"},
        {{.type = NVL_GGUF_TYPE_FLOAT64, .f64 = 0.1}, "0.1"},
        {{.type = NVL_GGUF_TYPE_FLOAT64, .f64 = 1.0 / 3.0}, "0.3333333333333333"},
        {{.type = NVL_GGUF_TYPE_FLOAT64, .f64 = -1e-310}, "-1e-310"},
    };
    struct nvl_gguf_value v = {.type = NVL_GGUF_TYPE_STRING};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    char buf[64], fewer[400];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(nvl_gguf_value_format(&cases[i].v, buf, sizeof(buf)),
                         strlen(cases[i].text));
        assert_string_equal(buf, cases[i].text);
    }
    assert_int_equal(nvl_gguf_value_format(&v, buf, sizeof(buf)), -EINVAL);
    v.type = NVL_GGUF_TYPE_ARRAY;
    assert_int_equal(nvl_gguf_value_format(&v, buf, sizeof(buf)), -EINVAL);
    v.type = NVL_GGUF_TYPE_COUNT;
    assert_int_equal(nvl_gguf_value_format(&v, buf, sizeof(buf)), -EINVAL);
    /* Truncation reports the full length, as snprintf does. */
    assert_int_equal(nvl_gguf_value_format(&cases[6].v, buf, 4), 20);
    assert_string_equal(buf, "184");

    for (int i = 0; i < 20000; i++) {
        uint32_t bits32;
        int digits;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bits32 = (uint32_t)x;
        if (i % 2) {
            v.type = NVL_GGUF_TYPE_FLOAT32;
            memcpy(&v.f32, &bits32, 4);
            if (!isfinite(v.f32))
                continue;
        } else {
            v.type = NVL_GGUF_TYPE_FLOAT64;
            memcpy(&v.f64, &x, 8);
            if (!isfinite(v.f64))
                continue;
        }
        assert_true(nvl_gguf_value_format(&v, buf, sizeof(buf)) > 0);
        if (v.type == NVL_GGUF_TYPE_FLOAT32)
            assert_true(strtof(buf, NULL) == v.f32);
        else
            assert_true(strtod(buf, NULL) == v.f64);
        /* Fewest: above six digits, the value with one significant digit fewer does not read back.
         */
        digits = 0;
        for (const char *p = buf; *p && *p != 'e'; p++)
            digits += *p >= '0' && *p <= '9';
        for (const char *p = buf; *p == '-' || *p == '0' || *p == '.'; p++)
            digits -= *p == '0';
        if (digits > 6) {
            snprintf(fewer, sizeof(fewer), "%.*g", digits - 1,
                     v.type == NVL_GGUF_TYPE_FLOAT32 ? (double)v.f32 : v.f64);
            if (v.type == NVL_GGUF_TYPE_FLOAT32)
                assert_false(strtof(fewer, NULL) == v.f32);
            else
                assert_false(strtod(fewer, NULL) == v.f64);
        }
    }
}

static int produce_short(void *ctx, const struct nvl_gguf_tensor *t, struct nvl_gguf_sink *sink)
{
    static const uint8_t b[4];

    (void)ctx;
    (void)t;
    return nvl_gguf_sink_write(sink, b, sizeof(b));
}

static void writer_rejects_short_producer(void **state)
{
    const uint64_t ne[1] = {64};
    char path[] = "/tmp/nvl_test_gguf_XXXXXX", err[512] = "";
    struct nvl_gguf_writer *w;
    int fd;

    (void)state;
    assert_int_equal(nvl_gguf_writer_create(&w), 0);
    assert_int_equal(
        nvl_gguf_writer_add_tensor_fn(w, "t", NVL_GGML_TYPE_F32, 1, ne, produce_short, NULL), 0);
    fd = mkstemp(path);
    close(fd);
    assert_int_equal(nvl_gguf_writer_write_file(w, path, err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "producer wrote 4 of 256 bytes"));
    assert_int_equal(access(path, F_OK), -1); /* removed on failure */
    nvl_gguf_writer_destroy(w);
}

/* Writes w to a temporary file and opens it with the reader, which must accept it. */
static struct nvl_gguf *write_and_open(struct nvl_gguf_writer *w, char *path)
{
    struct nvl_gguf *g = NULL;
    char err[512] = "";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(nvl_gguf_writer_write_file(w, path, err, sizeof(err)), 0);
    if (nvl_gguf_open(path, &g, err, sizeof(err)))
        fail_msg("the reader refuses what the writer wrote: %s", err);
    assert_int_equal(nvl_gguf_file_size(g), nvl_gguf_writer_file_size(w));
    return g;
}

/* The fuzzer's find (corpus/gguf/crash-rewrite-align-1-f32.gguf): a file with general.alignment 1
 * whose F32 tensor sits 4-byte aligned after a 6-byte F16 tensor. Rewriting it used to pack the
 * F32 data right after the F16 data, at a file offset the reader refuses. */
static void writer_rewrites_alignment_1_file(void **state)
{
    const uint64_t ne_a[1] = {3}, ne_b[2] = {5, 2};
    const uint16_t a[3] = {0x3c00, 0xc000, 0x4200}; /* 1, -2, 3 in fp16 */
    char path[] = "/tmp/nvl_test_gguf_XXXXXX";
    struct nvl_gguf_writer *w;
    struct nvl_gguf *g, *g2;
    const struct nvl_gguf_tensor *t;
    struct tb b = {0};
    float f[10];

    (void)state;
    for (int i = 0; i < 10; i++)
        f[i] = (float)i - 4.5f;
    tb_header(&b, 3, 2, 2);
    tb_str(&b, "general.architecture");
    tb_u32(&b, NVL_GGUF_TYPE_STRING);
    tb_str(&b, "llama");
    tb_kv_u32(&b, "general.alignment", 1);
    tb_tensor(&b, "a", 1, ne_a, NVL_GGML_TYPE_F16, 0);
    tb_tensor(&b, "b", 2, ne_b, NVL_GGML_TYPE_F32, 12);
    assert_int_equal(b.len % 4, 0); /* so that b's data at 12 is 4-byte aligned in the file */
    tb_put(&b, a, sizeof(a));
    tb_zeros(&b, 6);
    tb_put(&b, f, sizeof(f));
    g = expect_ok(&b);

    assert_int_equal(nvl_gguf_writer_create(&w), 0);
    for (uint64_t i = 0; i < nvl_gguf_kv_count(g); i++)
        assert_int_equal(nvl_gguf_writer_set_kv_from(w, g, (int64_t)i), 0);
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g); i++) {
        t = nvl_gguf_tensor(g, i);
        assert_int_equal(nvl_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne,
                                                    nvl_gguf_tensor_data(g, t)),
                         0);
    }
    g2 = write_and_open(w, path);
    assert_int_equal(nvl_gguf_alignment(g2), 1);
    t = nvl_gguf_get_tensor(g2, "a");
    assert_non_null(t);
    assert_int_equal(nvl_gguf_tensor_file_offset(g2, t) % 2, 0);
    assert_memory_equal(nvl_gguf_tensor_data(g2, t), a, sizeof(a));
    t = nvl_gguf_get_tensor(g2, "b");
    assert_non_null(t);
    assert_int_equal(nvl_gguf_tensor_file_offset(g2, t) % 4, 0);
    assert_memory_equal(nvl_gguf_tensor_data(g2, t), f, sizeof(f));
    nvl_gguf_close(g2);
    nvl_gguf_close(g);
    nvl_gguf_writer_destroy(w);
    free(b.p);
    unlink(path);
}

/* For every general.alignment, each tensor's offset is a multiple of it and its data lies in the
 * file aligned for its element type (sizeof the C type it is read as), with no more padding than
 * that takes. Odd-sized I8 tensors in between knock every following tensor off alignment. */
static void writer_aligns_tensors_for_their_type(void **state)
{
    static const struct {
        const char *name;
        enum nvl_ggml_type type;
        uint64_t n;
        size_t elem; /* bytes per element = the alignment its data needs */
    } tensors[] = {
        {"i8.0", NVL_GGML_TYPE_I8, 3, 1},
        {"f64", NVL_GGML_TYPE_F64, 2, sizeof(double)},
        {"i8.1", NVL_GGML_TYPE_I8, 1, 1},
        {"f32", NVL_GGML_TYPE_F32, 3, sizeof(float)},
        {"i8.2", NVL_GGML_TYPE_I8, 5, 1},
        {"f16", NVL_GGML_TYPE_F16, 3, sizeof(uint16_t)},
        {"i64", NVL_GGML_TYPE_I64, 1, sizeof(int64_t)},
    };
    static const uint32_t alignments[] = {1, 2, 4, 8, 16, 32};
    uint8_t data[64];

    (void)state;
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 37 + 11);
    for (size_t ai = 0; ai < sizeof(alignments) / sizeof(alignments[0]); ai++) {
        char path[] = "/tmp/nvl_test_gguf_XXXXXX";
        struct nvl_gguf_writer *w;
        struct nvl_gguf *g;
        uint64_t prev_end = 0;
        uint32_t al = alignments[ai];

        assert_int_equal(nvl_gguf_writer_create(&w), 0);
        /* An odd-length value so that the header does not end aligned either. */
        assert_int_equal(nvl_gguf_writer_set_str(w, "general.name", "odd"), 0);
        assert_int_equal(nvl_gguf_writer_set_alignment(w, al), 0);
        for (size_t i = 0; i < sizeof(tensors) / sizeof(tensors[0]); i++)
            assert_int_equal(nvl_gguf_writer_add_tensor(w, tensors[i].name, tensors[i].type, 1,
                                                        &tensors[i].n, data),
                             0);
        g = write_and_open(w, path);
        assert_int_equal(nvl_gguf_alignment(g), al);
        assert_int_equal(nvl_gguf_data_offset(g) % al, 0);
        for (size_t i = 0; i < sizeof(tensors) / sizeof(tensors[0]); i++) {
            const struct nvl_gguf_tensor *t = nvl_gguf_get_tensor(g, tensors[i].name);
            uint64_t need = al > tensors[i].elem ? al : tensors[i].elem;
            uint64_t start;

            assert_non_null(t);
            start = nvl_gguf_tensor_file_offset(g, t);
            assert_int_equal(t->offset % al, 0);
            assert_int_equal(start % tensors[i].elem, 0);
            assert_true(start >= prev_end);
            if (i)
                assert_true(start - prev_end < need); /* no more padding than needed */
            assert_int_equal(t->size, tensors[i].n * tensors[i].elem);
            assert_memory_equal(nvl_gguf_tensor_data(g, t), data, t->size);
            prev_end = start + t->size;
        }
        nvl_gguf_close(g);
        nvl_gguf_writer_destroy(w);
        unlink(path);
    }
}

/* Copying every kv and tensor of a llama.cpp-written file with our writer must reproduce the file
 * byte for byte: same serialization, same alignment and padding rules. */
static void writer_reproduces_llama_cpp_file(void **state)
{
    char path[512], out[] = "/tmp/nvl_test_gguf_XXXXXX", err[512];
    struct nvl_gguf_writer *w;
    struct nvl_gguf *g;
    uint8_t *orig, *copy;
    size_t len, copy_len;
    int fd;

    (void)state;
    mt_model_path("stories260K.gguf", path, sizeof(path));
    orig = mt_read_file(path, &len);
    if (!orig)
        skip();
    assert_int_equal(nvl_gguf_open(path, &g, err, sizeof(err)), 0);
    assert_int_equal(nvl_gguf_writer_create(&w), 0);
    for (uint64_t i = 0; i < nvl_gguf_kv_count(g); i++)
        assert_int_equal(nvl_gguf_writer_set_kv_from(w, g, (int64_t)i), 0);
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g); i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);

        assert_int_equal(nvl_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne,
                                                    nvl_gguf_tensor_data(g, t)),
                         0);
    }
    fd = mkstemp(out);
    close(fd);
    assert_int_equal(nvl_gguf_writer_write_file(w, out, err, sizeof(err)), 0);
    copy = mt_read_file(out, &copy_len);
    assert_non_null(copy);
    assert_int_equal(copy_len, len);
    assert_memory_equal(copy, orig, len);
    free(copy);
    free(orig);
    unlink(out);
    nvl_gguf_writer_destroy(w);
    nvl_gguf_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stories260k_metadata_and_shapes),
        cmocka_unit_test(vocab_files),
        cmocka_unit_test(truncated_files_fail_cleanly),
        cmocka_unit_test(corrupted_files_do_not_crash),
        cmocka_unit_test(header_errors),
        cmocka_unit_test(kv_errors),
        cmocka_unit_test(tensor_errors),
        cmocka_unit_test(writer_round_trip),
        cmocka_unit_test(writer_rejects_short_producer),
        cmocka_unit_test(writer_rewrites_alignment_1_file),
        cmocka_unit_test(writer_aligns_tensors_for_their_type),
        cmocka_unit_test(value_format),
        cmocka_unit_test(writer_reproduces_llama_cpp_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
