/* Tests for model/src/gguf_pack.c, disk_image.c and disk_image_read.c: the packed layout, the
 * extent table, the header's checks, and reading an image back through the Layer Loader (its
 * file backend on an image file), with CRC failures naming the layer.
 *
 * The model is a small GGUF written here with tensors in a scrambled order and known bytes; the
 * expectations (order, alignment, extents) come from the layout rules in pack.h and
 * docs/disk-layout.md, not from running the code under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvl_model.h"

#define N_TENSORS 8

/* Tensor names in file order (scrambled), their element counts, and the order pack.h wants. */
static const char *const names[N_TENSORS] = {
    "blk.1.attn_q.weight", "token_embd.weight",    "blk.0.attn_q.weight", "output_norm.weight",
    "blk.0.ffn_up.weight", "blk.10.attn_q.weight", "blk.2.attn_q.weight", "blk.1.ffn_up.weight",
};
static const uint64_t counts[N_TENSORS] = {1000, 3000, 2000, 64, 5000, 16, 100, 1200};
static const char *const packed_order[N_TENSORS] = {
    "token_embd.weight",   "output_norm.weight",  "blk.0.attn_q.weight", "blk.0.ffn_up.weight",
    "blk.1.attn_q.weight", "blk.1.ffn_up.weight", "blk.2.attn_q.weight", "blk.10.attn_q.weight",
};

struct fixture {
    char dir[64];
    char orig[96];   /* the scrambled model, alignment 32 */
    char packed[96]; /* nvl_gguf_pack_file(orig) */
    char image[96];  /* header + table + packed GGUF, as nvload-setup writes a drive */
    float *data[N_TENSORS];
};

static void write_model(struct fixture *f, const char *path, uint32_t alignment)
{
    struct nvl_gguf_writer *w;
    assert_int_equal(nvl_gguf_writer_create(&w), 0);
    assert_int_equal(nvl_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(nvl_gguf_writer_set_str(w, "general.name", "test model"), 0);
    assert_int_equal(nvl_gguf_writer_set_u32(w, "llama.block_count", 11), 0);
    if (alignment)
        assert_int_equal(nvl_gguf_writer_set_alignment(w, alignment), 0);
    const char *toks[] = {"a", "b", "c"};
    assert_int_equal(nvl_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3), 0);
    for (int i = 0; i < N_TENSORS; i++)
        assert_int_equal(
            nvl_gguf_writer_add_tensor(w, names[i], NVL_GGML_TYPE_F32, 1, &counts[i], f->data[i]),
            0);
    assert_int_equal(nvl_gguf_writer_write_file(w, path, NULL, 0), 0);
    nvl_gguf_writer_destroy(w);
}

static int32_t layer_of(const char *name)
{
    return strncmp(name, "blk.", 4) ? -1 : atoi(name + 4);
}

/* The image file, composed here byte by byte from docs/disk-layout.md. */
static void write_image(struct fixture *f, bool complete)
{
    struct nvl_gguf *g;
    assert_int_equal(nvl_gguf_open(f->packed, &g, NULL, 0), 0);
    struct nvl_disk_extent ext[16];
    const int n = nvl_disk_layout(g, ext, 16, NULL, 0);
    assert_true(n > 0);
    const uint8_t *bytes = nvl_gguf_base(g);
    if (complete)
        for (int i = 0; i < n; i++)
            ext[i].crc32c = nvl_crc32c(0, bytes + ext[i].offset, ext[i].bytes);
    struct nvl_disk_header h;
    nvl_disk_header_init(&h, g, nvl_gguf_file_size(g), 512, ext, (uint32_t)n, NULL, "test");
    if (complete)
        h.flags |= NVL_DISK_FLAG_COMPLETE;
    nvl_disk_header_seal(&h, ext);

    int fd = open(f->image, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 4 << 20), 0);
    assert_int_equal(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
    assert_int_equal(pwrite(fd, ext, n * sizeof(ext[0]), 4096), (ssize_t)(n * sizeof(ext[0])));
    assert_int_equal(pwrite(fd, bytes, nvl_gguf_file_size(g), 1 << 20),
                     (ssize_t)nvl_gguf_file_size(g));
    close(fd);
    nvl_gguf_close(g);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/nvl-test-image.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->orig, sizeof(f->orig), "%s/orig.gguf", f->dir);
    snprintf(f->packed, sizeof(f->packed), "%s/packed.gguf", f->dir);
    snprintf(f->image, sizeof(f->image), "%s/drive.img", f->dir);
    for (int i = 0; i < N_TENSORS; i++) {
        f->data[i] = malloc(counts[i] * sizeof(float));
        assert_non_null(f->data[i]);
        for (uint64_t k = 0; k < counts[i]; k++)
            f->data[i][k] = (float)(i * 100000 + k);
    }
    write_model(f, f->orig, 0);
    char err[256] = "";
    assert_int_equal(nvl_gguf_pack_file(f->orig, f->packed, err, sizeof(err)), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->orig);
    unlink(f->packed);
    unlink(f->image);
    rmdir(f->dir);
    for (int i = 0; i < N_TENSORS; i++)
        free(f->data[i]);
    free(f);
    return 0;
}

static void test_tensor_layer(void **state)
{
    (void)state;
    assert_int_equal(nvl_pack_tensor_layer("blk.0.attn_q.weight"), 0);
    assert_int_equal(nvl_pack_tensor_layer("blk.12.ffn_up.weight"), 12);
    assert_int_equal(nvl_pack_tensor_layer("blk.999999.x"), 999999);
    assert_int_equal(nvl_pack_tensor_layer("blk.1000000.x"), -1);
    assert_int_equal(nvl_pack_tensor_layer("blk.01.x"), -1);
    assert_int_equal(nvl_pack_tensor_layer("blk.x.y"), -1);
    assert_int_equal(nvl_pack_tensor_layer("blk.5"), -1);
    assert_int_equal(nvl_pack_tensor_layer("blk.-1.x"), -1);
    assert_int_equal(nvl_pack_tensor_layer("token_embd.weight"), -1);
    assert_int_equal(nvl_pack_tensor_layer("xblk.1.y"), -1);
}

static void test_pack_layout(void **state)
{
    struct fixture *f = *state;
    struct nvl_gguf *o, *p;
    char why[256] = "";
    assert_int_equal(nvl_gguf_open(f->orig, &o, NULL, 0), 0);
    assert_int_equal(nvl_gguf_open(f->packed, &p, NULL, 0), 0);
    assert_false(nvl_gguf_is_packed(o, why, sizeof(why)));
    assert_non_null(strstr(why, "alignment"));
    assert_true(nvl_gguf_is_packed(p, why, sizeof(why)));
    assert_int_equal(nvl_gguf_alignment(p), 4096);

    assert_int_equal(nvl_gguf_tensor_count(p), N_TENSORS);
    for (int i = 0; i < N_TENSORS; i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(p, (uint64_t)i);
        assert_string_equal(t->name, packed_order[i]);
        assert_int_equal(nvl_gguf_tensor_file_offset(p, t) % 4096, 0);
        /* Byte-identical to the source tensor of the same name. */
        const struct nvl_gguf_tensor *s = nvl_gguf_get_tensor(o, t->name);
        assert_non_null(s);
        assert_int_equal(s->size, t->size);
        assert_memory_equal(nvl_gguf_tensor_data(p, t), nvl_gguf_tensor_data(o, s), t->size);
        if (i)
            assert_true(t->offset > nvl_gguf_tensor(p, (uint64_t)i - 1)->offset);
    }
    /* Same metadata and tensors: the packed file is the same model. */
    char err[256] = "";
    assert_int_equal(nvl_disk_same_model(p, o, err, sizeof(err)), 0);
    nvl_gguf_close(o);
    nvl_gguf_close(p);
}

static void test_not_packed_order(void **state)
{
    struct fixture *f = *state;
    char path[128], why[256] = "";
    struct nvl_gguf *g;
    struct nvl_disk_extent ext[16];
    snprintf(path, sizeof(path), "%s/aligned-unordered.gguf", f->dir);
    write_model(f, path, 4096); /* aligned, but in the scrambled order */
    assert_int_equal(nvl_gguf_open(path, &g, NULL, 0), 0);
    assert_false(nvl_gguf_is_packed(g, why, sizeof(why)));
    assert_non_null(strstr(why, "comes after layer"));
    assert_int_equal(nvl_disk_layout(g, ext, 16, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "not packed"));
    nvl_gguf_close(g);
    unlink(path);
    assert_int_equal(nvl_gguf_pack_file(f->packed, f->packed, why, sizeof(why)), -EINVAL);
}

static void test_extent_table(void **state)
{
    struct fixture *f = *state;
    struct nvl_gguf *g;
    struct nvl_disk_extent ext[16];
    assert_int_equal(nvl_gguf_open(f->packed, &g, NULL, 0), 0);
    assert_int_equal(nvl_disk_layout(g, ext, 4, NULL, 0), -E2BIG);
    /* metadata, globals, layers 0, 1, 2, 10 */
    const int n = nvl_disk_layout(g, ext, 16, NULL, 0);
    assert_int_equal(n, 6);
    assert_int_equal(ext[0].kind, NVL_DISK_EXTENT_META);
    assert_int_equal(ext[0].offset, 0);
    assert_int_equal(ext[0].bytes, nvl_gguf_data_offset(g));
    assert_int_equal(ext[1].kind, NVL_DISK_EXTENT_GLOBALS);
    assert_int_equal(ext[1].layer, NVL_DISK_NO_LAYER);
    const uint32_t layers[] = {0, 1, 2, 10};
    for (int i = 2; i < n; i++) {
        assert_int_equal(ext[i].kind, NVL_DISK_EXTENT_LAYER);
        assert_int_equal(ext[i].layer, layers[i - 2]);
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(ext[i].offset, at);
        assert_int_equal(ext[i].offset % 4096, 0);
        assert_int_equal(ext[i].crc32c, 0);
        at += ext[i].bytes;
    }
    assert_int_equal(at, nvl_gguf_file_size(g));
    /* Every tensor lies inside the extent of its layer. */
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g); i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);
        const uint64_t b = nvl_gguf_tensor_file_offset(g, t);
        const int32_t l = layer_of(t->name);
        int k = 1;
        while (k < n &&
               !(l < 0 ? ext[k].kind == NVL_DISK_EXTENT_GLOBALS : ext[k].layer == (uint32_t)l))
            k++;
        assert_true(k < n);
        assert_true(b >= ext[k].offset && b + t->size <= ext[k].offset + ext[k].bytes);
    }
    char name[32];
    assert_string_equal(nvl_disk_extent_name(&ext[0], name, sizeof(name)), "metadata");
    assert_string_equal(nvl_disk_extent_name(&ext[5], name, sizeof(name)), "layer 10");
    nvl_gguf_close(g);
}

/* A sealed header and table for the packed model, for the check tests. */
static int make_header(struct fixture *f, struct nvl_disk_header *h, struct nvl_disk_extent *ext)
{
    struct nvl_gguf *g;
    assert_int_equal(nvl_gguf_open(f->packed, &g, NULL, 0), 0);
    const int n = nvl_disk_layout(g, ext, 16, NULL, 0);
    nvl_disk_header_init(h, g, nvl_gguf_file_size(g), 4096, ext, (uint32_t)n, NULL, "w");
    nvl_disk_header_seal(h, ext);
    nvl_gguf_close(g);
    return n;
}

static void test_header_checks(void **state)
{
    struct fixture *f = *state;
    struct nvl_disk_header h, b;
    struct nvl_disk_extent ext[16];
    const uint64_t cap = 64 << 20;
    char err[256];
    make_header(f, &h, ext);
    assert_string_equal(h.model_name, "test model");
    assert_string_equal(h.arch, "llama");
    assert_false(nvl_disk_header_complete(&h));
    assert_int_equal(nvl_disk_header_check(&h, sizeof(h), cap, 4096, err, sizeof(err)), 0);
    assert_int_equal(nvl_disk_header_check(&h, sizeof(h), cap, 512, err, sizeof(err)), 0);
    assert_int_equal(nvl_disk_table_check(&h, ext, err, sizeof(err)), 0);
    assert_int_equal(nvl_disk_header_check(&h, 512, cap, 4096, err, sizeof(err)), -EINVAL);

    b = h;
    b.magic[0] = 'X';
    assert_int_equal(nvl_disk_header_check(&b, sizeof(b), cap, 4096, err, sizeof(err)), -ENOENT);
    b = h;
    b.version = NVL_DISK_VERSION + 1;
    assert_int_equal(nvl_disk_header_check(&b, sizeof(b), cap, 4096, err, sizeof(err)), -ENOTSUP);
    b = h;
    b.model_name[3] ^= 1; /* not resealed: the CRC catches it */
    assert_int_equal(nvl_disk_header_check(&b, sizeof(b), cap, 4096, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "CRC32C"));
    /* Sealed but not fitting: too big for the drive, or not on a block boundary. */
    assert_int_equal(nvl_disk_header_check(&h, sizeof(h), 1 << 20, 512, err, sizeof(err)), -EINVAL);
    b = h;
    b.gguf_offset += 512;
    nvl_disk_header_seal(&b, ext);
    assert_int_equal(nvl_disk_header_check(&b, sizeof(b), cap, 4096, err, sizeof(err)), -EINVAL);
    assert_int_equal(nvl_disk_header_check(&b, sizeof(b), cap, 512, err, sizeof(err)), 0);
    b = h;
    b.n_extents = 0;
    nvl_disk_header_seal(&b, ext);
    assert_int_equal(nvl_disk_header_check(&b, sizeof(b), cap, 4096, err, sizeof(err)), -EINVAL);
    b = h;
    memset(b.arch, 'a', sizeof(b.arch));
    nvl_disk_header_seal(&b, ext);
    assert_int_equal(nvl_disk_header_check(&b, sizeof(b), cap, 4096, err, sizeof(err)), -EINVAL);

    /* The table: a CRC that is not resealed, then a gap that is. */
    ext[3].crc32c ^= 1;
    assert_int_equal(nvl_disk_table_check(&h, ext, err, sizeof(err)), -EINVAL);
    ext[3].crc32c ^= 1;
    ext[3].offset += 4096;
    ext[3].bytes -= 4096;
    nvl_disk_header_seal(&h, ext);
    assert_int_equal(nvl_disk_table_check(&h, ext, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "extent 3"));
}

static struct nvl_loader *file_loader(const char *path)
{
    struct nvl_loader_opts o;
    struct nvl_loader *l;
    nvl_loader_opts_init(&o);
    o.backend = NVL_LOADER_FILE;
    o.path = path;
    o.n_slots = 1;
    o.slot_bytes = 2 << 20;
    assert_int_equal(nvl_loader_create(&o, &l), 0);
    return l;
}

static void test_read_image(void **state)
{
    struct fixture *f = *state;
    struct nvl_disk_image *img;
    struct nvl_disk_read_stats st;
    char err[512] = "";
    void *data;
    uint64_t len;

    write_image(f, true);
    struct nvl_loader *l = file_loader(f->image);
    assert_int_equal(nvl_disk_image_open(l, &img, err, sizeof(err)), 0);
    assert_string_equal(nvl_disk_image_header(img)->model_name, "test model");
    assert_int_equal(nvl_disk_image_read_gguf(img, true, &data, &len, &st, err, sizeof(err)), 0);
    assert_int_equal(st.bytes, len);

    /* The bytes are the packed file's, and they parse as the same model as the original. */
    struct nvl_gguf *d, *o;
    assert_int_equal(nvl_gguf_open_memory(data, len, &d, NULL, 0), 0);
    assert_int_equal(nvl_gguf_open(f->orig, &o, NULL, 0), 0);
    assert_int_equal(nvl_disk_same_model(d, o, err, sizeof(err)), 0);
    /* A model with one other tensor byte is not the same. */
    const struct nvl_gguf_tensor *t = nvl_gguf_get_tensor(d, "blk.1.ffn_up.weight");
    ((uint8_t *)data)[nvl_gguf_tensor_file_offset(d, t) + 5] ^= 1;
    assert_int_equal(nvl_disk_same_model(d, o, err, sizeof(err)), -ESTALE);
    assert_non_null(strstr(err, "blk.1.ffn_up.weight"));
    nvl_gguf_close(o);
    nvl_gguf_close(d);
    free(data);
    nvl_disk_image_destroy(img);
    nvl_loader_destroy(l);
}

static void test_read_corrupt_layer(void **state)
{
    struct fixture *f = *state;
    struct nvl_disk_image *img;
    char err[512] = "";
    void *data;
    uint64_t len;

    write_image(f, true);
    /* Flip a byte inside blk.1.attn_q.weight, which lies in layer 1's extent. */
    struct nvl_gguf *p;
    assert_int_equal(nvl_gguf_open(f->packed, &p, NULL, 0), 0);
    const uint64_t at =
        (1 << 20) + nvl_gguf_tensor_file_offset(p, nvl_gguf_get_tensor(p, "blk.1.attn_q.weight")) +
        100;
    nvl_gguf_close(p);
    int fd = open(f->image, O_RDWR);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)at), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)at), 1);
    close(fd);

    struct nvl_loader *l = file_loader(f->image);
    assert_int_equal(nvl_disk_image_open(l, &img, err, sizeof(err)), 0);
    assert_int_equal(nvl_disk_image_read_gguf(img, true, &data, &len, NULL, err, sizeof(err)),
                     -EBADMSG);
    assert_null(data);
    assert_non_null(strstr(err, "layer 1 is corrupt"));
    /* Without --verify the bytes come as they are. */
    assert_int_equal(nvl_disk_image_read_gguf(img, false, &data, &len, NULL, err, sizeof(err)), 0);
    free(data);
    nvl_disk_image_destroy(img);
    nvl_loader_destroy(l);
}

static void test_incomplete_and_missing(void **state)
{
    struct fixture *f = *state;
    struct nvl_disk_image *img;
    char err[512] = "";

    write_image(f, false);
    struct nvl_loader *l = file_loader(f->image);
    assert_int_equal(nvl_disk_image_open(l, &img, err, sizeof(err)), -ENODATA);
    assert_non_null(strstr(err, "incomplete"));
    nvl_loader_destroy(l);

    int fd = open(f->image, O_RDWR);
    static const uint8_t zero[4096];
    assert_int_equal(pwrite(fd, zero, sizeof(zero), 0), (ssize_t)sizeof(zero));
    close(fd);
    l = file_loader(f->image);
    assert_int_equal(nvl_disk_image_open(l, &img, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "no nvload image"));
    nvl_loader_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_layer),       cmocka_unit_test(test_pack_layout),
        cmocka_unit_test(test_not_packed_order),   cmocka_unit_test(test_extent_table),
        cmocka_unit_test(test_header_checks),      cmocka_unit_test(test_read_image),
        cmocka_unit_test(test_read_corrupt_layer), cmocka_unit_test(test_incomplete_and_missing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
