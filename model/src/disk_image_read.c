/* A model image on a drive (disk_image.h), read through the Layer Loader: header and extent
 * table, then the GGUF extent by extent with optional CRC checks; and the comparison of a model
 * read from a drive with a model file. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "disk_image_internal.h"
#include "nvl_driver/log.h"
#include "nvl_loader.h"
#include "nvl_model/crc32c.h"
#include "nvl_model/disk_image.h"

/* Extents in flight while the GGUF is read: enough to keep every queue busy while the CPU checks
 * the CRC of the extent that arrived, far below the loader's 64 reads. */
#define READ_WINDOW 8
#define PAGE        4096u

struct nvl_disk_image {
    struct nvl_loader *loader;   /* not owned */
    struct nvl_disk_header h;    /* checked */
    struct nvl_disk_extent *ext; /* [h.n_extents], checked */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

/* A blocking read of bytes [off, off + len) of the target into dst. */
static int read_bytes(struct nvl_loader *l, uint64_t off, uint64_t len, void *dst, char *err,
                      size_t err_len)
{
    struct nvl_extent e = {off, len};
    struct nvl_read *rd;
    struct nvl_read_stats st;
    int rc = nvl_loader_read_async(l, &e, 1, nvl_dst_host(dst, len), &rd);
    if (!rc)
        rc = nvl_loader_wait(rd, &st);
    if (rc)
        return nvl__disk_fail(err, err_len, rc,
                              "reading bytes %" PRIu64 "..%" PRIu64 " of the drive failed: %s", off,
                              off + len, nvl_strerror(rc));
    return 0;
}

int nvl_disk_image_open(struct nvl_loader *l, struct nvl_disk_image **out, char *err,
                        size_t err_len)
{
    const uint64_t cap = nvl_loader_capacity(l);
    struct nvl_disk_image *img;
    int rc;

    *out = NULL;
    if (cap < NVL_DISK_HEADER_BYTES)
        return nvl__disk_fail(err, err_len, -ENOENT,
                              "no nvload image on the drive (it holds only %" PRIu64 " bytes)",
                              cap);
    if (!(img = calloc(1, sizeof(*img))))
        return nvl__disk_fail(err, err_len, -ENOMEM, "out of memory");
    img->loader = l;
    if ((rc = read_bytes(l, 0, sizeof(img->h), &img->h, err, err_len)))
        goto err_free_img;
    if ((rc = nvl_disk_header_check(&img->h, sizeof(img->h), cap, nvl_loader_block_size(l), err,
                                    err_len)))
        goto err_free_img;
    const size_t table = (size_t)img->h.n_extents * sizeof(*img->ext);
    if (!(img->ext = malloc(table))) {
        rc = nvl__disk_fail(err, err_len, -ENOMEM, "out of memory");
        goto err_free_img;
    }
    if ((rc = read_bytes(l, img->h.table_offset, table, img->ext, err, err_len)) ||
        (rc = nvl_disk_table_check(&img->h, img->ext, err, err_len)))
        goto err_free_table;
    if (!nvl_disk_header_complete(&img->h)) {
        rc = nvl__disk_fail(err, err_len, -ENODATA,
                            "the image of '%s' on the drive is incomplete: its write was "
                            "interrupted (write it again with nvload-setup write)",
                            img->h.model_name);
        goto err_free_table;
    }
    *out = img;
    return 0;

err_free_table:
    free(img->ext);
err_free_img:
    free(img);
    return rc;
}

void nvl_disk_image_destroy(struct nvl_disk_image *img)
{
    if (!img)
        return;
    free(img->ext);
    free(img);
}

const struct nvl_disk_header *nvl_disk_image_header(const struct nvl_disk_image *img)
{
    return &img->h;
}

const struct nvl_disk_extent *nvl_disk_image_extents(const struct nvl_disk_image *img, uint32_t *n)
{
    *n = img->h.n_extents;
    return img->ext;
}

/* -EBADMSG naming extent i, whose bytes gave crc. */
static int crc_mismatch(const struct nvl_disk_image *img, uint32_t i, uint32_t crc, char *err,
                        size_t err_len)
{
    const struct nvl_disk_extent *e = &img->ext[i];
    const uint64_t first = img->h.gguf_offset + e->offset;
    const uint64_t last = first + e->bytes - 1;
    const uint32_t lba = nvl_loader_block_size(img->loader);
    char name[32];
    return nvl__disk_fail(err, err_len, -EBADMSG,
                          "%s is corrupt on the drive: CRC32C 0x%08x, expected 0x%08x (%" PRIu64
                          " bytes at drive byte %" PRIu64 ", LBAs %" PRIu64 "..%" PRIu64
                          " of %u bytes)",
                          nvl_disk_extent_name(e, name, sizeof(name)), crc, e->crc32c, e->bytes,
                          first, first / lba, last / lba, lba);
}

/* Checks extent i of buf, which has just arrived. */
static int verify_extent(const struct nvl_disk_image *img, uint32_t i, const uint8_t *buf,
                         char *err, size_t err_len)
{
    const struct nvl_disk_extent *e = &img->ext[i];
    const uint32_t crc = nvl_crc32c(0, buf + e->offset, e->bytes);
    return crc == e->crc32c ? 0 : crc_mismatch(img, i, crc, err, err_len);
}

int nvl_disk_image_read_gguf(struct nvl_disk_image *img, bool verify, void **data, uint64_t *len,
                             struct nvl_disk_read_stats *st, char *err, size_t err_len)
{
    struct nvl_read *rd[READ_WINDOW] = {0};
    const uint32_t n = img->h.n_extents;
    const double t0 = now_s();
    double crc_s = 0.0;
    uint32_t issued = 0, done = 0;
    int rc = 0;

    *data = NULL;
    *len = 0;
    uint8_t *buf = aligned_alloc(PAGE, round_up(img->h.gguf_bytes, PAGE));
    if (!buf)
        return nvl__disk_fail(err, err_len, -ENOMEM,
                              "out of memory for the model (%" PRIu64 " bytes)", img->h.gguf_bytes);
    while (done < n) {
        while (!rc && issued < n && issued - done < READ_WINDOW) {
            const struct nvl_disk_extent *e = &img->ext[issued];
            struct nvl_extent x = {img->h.gguf_offset + e->offset, e->bytes};
            rc = nvl_loader_read_async(img->loader, &x, 1, nvl_dst_host(buf + e->offset, e->bytes),
                                       &rd[issued % READ_WINDOW]);
            if (rc) {
                char name[32];
                nvl__disk_fail(err, err_len, rc, "cannot read %s from the drive: %s",
                               nvl_disk_extent_name(e, name, sizeof(name)), nvl_strerror(rc));
                break;
            }
            issued++;
        }
        if (done == issued)
            break;
        struct nvl_read_stats rs;
        const int wrc = nvl_loader_wait(rd[done % READ_WINDOW], &rs);
        rd[done % READ_WINDOW] = NULL;
        if (wrc && !rc) {
            char name[32];
            rc = nvl__disk_fail(err, err_len, wrc, "reading %s from the drive failed: %s%s",
                                nvl_disk_extent_name(&img->ext[done], name, sizeof(name)),
                                nvl_strerror(wrc), rs.nvme_status ? " (NVMe error status)" : "");
        }
        if (!rc && verify) {
            const double c0 = now_s();
            rc = verify_extent(img, done, buf, err, err_len);
            crc_s += now_s() - c0;
        }
        done++;
    }
    if (rc) {
        free(buf);
        return rc;
    }
    if (st) {
        st->bytes = img->h.gguf_bytes;
        st->seconds = now_s() - t0;
        st->crc_seconds = crc_s;
        st->reads = n;
    }
    *data = buf;
    *len = img->h.gguf_bytes;
    return 0;
}

int nvl_disk_image_verify(struct nvl_disk_image *img, struct nvl_disk_read_stats *st, bool *on_gpu,
                          char *err, size_t err_len)
{
    struct nvl_loader *l = img->loader;
    const uint32_t block = nvl_loader_block_size(l);
    const double t0 = now_s();
    double crc_s = 0.0;
    uint32_t reads = 0;
    int rc = 0;

    if (nvl_loader_slot_count(l) < 1 || nvl_loader_slot_bytes(l) < 2ull * block)
        return nvl__disk_fail(err, err_len, -EINVAL,
                              "the loader has no slot to verify the image through");
    /* A piece leaves a block of the slot free for a start that is not block-aligned. */
    const uint64_t piece_max = (nvl_loader_slot_bytes(l) - block) / block * block;
    uint8_t *dev = nvl_loader_slot_device(l, 0);
    const uint8_t *host = nvl_loader_slot_host(l, 0);
    /* The GPU checks what the GPU path reads: the slot through its device mapping. */
    bool gpu = dev != NULL;
    for (uint32_t i = 0; i < img->h.n_extents && !rc; i++) {
        const struct nvl_disk_extent *e = &img->ext[i];
        char name[32];
        uint32_t crc = 0;
        for (uint64_t done = 0; done < e->bytes && !rc;) {
            const uint64_t len = e->bytes - done < piece_max ? e->bytes - done : piece_max;
            struct nvl_extent x = {img->h.gguf_offset + e->offset + done, len};
            struct nvl_read *rd;
            struct nvl_read_stats rs;
            if ((rc = nvl_loader_read_async(l, &x, 1, nvl_dst_slot(0), &rd))) {
                nvl__disk_fail(err, err_len, rc, "cannot read %s from the drive: %s",
                               nvl_disk_extent_name(e, name, sizeof(name)), nvl_strerror(rc));
                break;
            }
            const uint64_t at = nvl_read_offset(rd, 0);
            if ((rc = nvl_loader_wait(rd, &rs))) {
                nvl__disk_fail(err, err_len, rc, "reading %s from the drive failed: %s%s",
                               nvl_disk_extent_name(e, name, sizeof(name)), nvl_strerror(rc),
                               rs.nvme_status ? " (NVMe error status)" : "");
                break;
            }
            reads++;
            const double c0 = now_s();
            if (gpu) {
                if ((rc = nvl_crc32c_gpu(crc, dev + at, len, NULL, &crc)))
                    nvl__disk_fail(err, err_len, rc, "CRC32C of %s on the GPU failed: %s",
                                   nvl_disk_extent_name(e, name, sizeof(name)), nvl_strerror(rc));
            } else {
                crc = nvl_crc32c(crc, host + at, len);
            }
            crc_s += now_s() - c0;
            done += len;
        }
        if (!rc && crc != e->crc32c)
            rc = crc_mismatch(img, i, crc, err, err_len);
    }
    if (st) {
        st->bytes = img->h.gguf_bytes;
        st->seconds = now_s() - t0;
        st->crc_seconds = crc_s;
        st->reads = reads;
    }
    if (on_gpu)
        *on_gpu = gpu;
    return rc;
}

/* ---- same model? ------------------------------------------------------------------------- */

static bool value_equal(const struct nvl_gguf *a, int64_t ia, const struct nvl_gguf *b, int64_t ib)
{
    struct nvl_gguf_value va, vb;
    if (nvl_gguf_kv_value(a, ia, &va) || nvl_gguf_kv_value(b, ib, &vb) || va.type != vb.type)
        return false;
    switch (va.type) {
    case NVL_GGUF_TYPE_STRING:
        return va.str.len == vb.str.len && !memcmp(va.str.data, vb.str.data, va.str.len);
    case NVL_GGUF_TYPE_ARRAY:
        if (va.arr.type != vb.arr.type || va.arr.count != vb.arr.count)
            return false;
        if (va.arr.type == NVL_GGUF_TYPE_STRING) {
            for (uint64_t k = 0; k < va.arr.count; k++) {
                const char *sa, *sb;
                uint64_t la, lb;
                if (nvl_gguf_arr_str(a, ia, k, &sa, &la) || nvl_gguf_arr_str(b, ib, k, &sb, &lb) ||
                    la != lb || memcmp(sa, sb, la))
                    return false;
            }
            return true;
        }
        return !memcmp(va.arr.data, vb.arr.data, va.arr.count * nvl_gguf_type_size(va.arr.type));
    default:
        /* Every scalar member starts at the union's first byte. */
        return !memcmp(&va.u8, &vb.u8, nvl_gguf_type_size(va.type));
    }
}

int nvl_disk_same_model(const struct nvl_gguf *drive, const struct nvl_gguf *file, char *err,
                        size_t err_len)
{
    uint64_t n_keys = 0;
    for (int64_t i = 0; i < (int64_t)nvl_gguf_kv_count(file); i++) {
        const char *key = nvl_gguf_kv_key(file, i);
        if (!strcmp(key, "general.alignment"))
            continue;
        n_keys++;
        const int64_t j = nvl_gguf_find_key(drive, key);
        if (j < 0)
            return nvl__disk_fail(err, err_len, -ESTALE, "the drive's model has no key %s", key);
        if (!value_equal(file, i, drive, j))
            return nvl__disk_fail(err, err_len, -ESTALE, "metadata key %s differs", key);
    }
    const uint64_t drive_keys =
        nvl_gguf_kv_count(drive) - (nvl_gguf_find_key(drive, "general.alignment") >= 0);
    if (drive_keys != n_keys)
        return nvl__disk_fail(err, err_len, -ESTALE,
                              "the drive's model has %" PRIu64 " metadata keys, the file %" PRIu64,
                              drive_keys, n_keys);
    if (nvl_gguf_tensor_count(drive) != nvl_gguf_tensor_count(file))
        return nvl__disk_fail(err, err_len, -ESTALE,
                              "the drive's model has %" PRIu64 " tensors, the file %" PRIu64,
                              nvl_gguf_tensor_count(drive), nvl_gguf_tensor_count(file));
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(file); i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(file, i);
        const struct nvl_gguf_tensor *d = nvl_gguf_get_tensor(drive, t->name);
        if (!d)
            return nvl__disk_fail(err, err_len, -ESTALE, "the drive's model has no tensor %s",
                                  t->name);
        if (d->type != t->type || d->n_dims != t->n_dims ||
            memcmp(d->ne, t->ne, sizeof(t->ne)) != 0)
            return nvl__disk_fail(err, err_len, -ESTALE,
                                  "tensor %s has another type or shape on the drive", t->name);
        const void *pd = nvl_gguf_tensor_data(drive, d), *pt = nvl_gguf_tensor_data(file, t);
        if (!pd || !pt || memcmp(pd, pt, t->size) != 0)
            return nvl__disk_fail(err, err_len, -ESTALE, "tensor %s holds other values", t->name);
    }
    return 0;
}
