/* The on-drive image (disk_image.h): the extent table of a packed GGUF, building and sealing the
 * header, and checking a header and table read back from a drive. */
#include "nvl_model/disk_image.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "disk_image_internal.h"
#include "nvl_model/crc32c.h"
#include "nvl_model/pack.h"

#define HEADER_CRC_BYTES offsetof(struct nvl_disk_header, header_crc32c)

int nvl__disk_fail(char *err, size_t err_len, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && err_len)
        vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return code;
}

int nvl_disk_layout(const struct nvl_gguf *g, struct nvl_disk_extent *ext, uint32_t max, char *err,
                    size_t err_len)
{
    char why[256];
    if (!nvl_gguf_is_packed(g, why, sizeof(why)))
        return nvl__disk_fail(err, err_len, -EINVAL, "the GGUF is not packed: %s", why);

    const uint64_t data = nvl_gguf_data_offset(g);
    const uint64_t end = nvl_gguf_file_size(g);
    uint32_t n = 0;
#define ADD_EXTENT(off, kind_, layer_)                                                             \
    do {                                                                                           \
        if (n == max)                                                                              \
            return nvl__disk_fail(err, err_len, -E2BIG, "the model needs more than %u extents",    \
                                  max);                                                            \
        if (n)                                                                                     \
            ext[n - 1].bytes = (off)-ext[n - 1].offset;                                            \
        ext[n++] = (struct nvl_disk_extent){.offset = (off), .kind = (kind_), .layer = (layer_)};  \
    } while (0)

    ADD_EXTENT(0, NVL_DISK_EXTENT_META, NVL_DISK_NO_LAYER);
    int64_t cur = -2; /* layer of the extent being grown; -1 globals */
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g); i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);
        const int32_t layer = nvl_pack_tensor_layer(t->name);
        if (layer == cur)
            continue;
        /* The first global tensor sits at the start of the data section, and so does the first
         * layer's when there are no globals: the previous extent ends exactly there. */
        const uint64_t at = i == 0 ? data : data + t->offset;
        if (layer < 0)
            ADD_EXTENT(at, NVL_DISK_EXTENT_GLOBALS, NVL_DISK_NO_LAYER);
        else
            ADD_EXTENT(at, NVL_DISK_EXTENT_LAYER, (uint32_t)layer);
        cur = layer;
    }
    if (cur == -2 && end > data) /* no tensors: the (empty) data section still gets an extent */
        ADD_EXTENT(data, NVL_DISK_EXTENT_GLOBALS, NVL_DISK_NO_LAYER);
#undef ADD_EXTENT
    ext[n - 1].bytes = end - ext[n - 1].offset;
    return (int)n;
}

static void copy_field(char *dst, size_t cap, const char *src)
{
    memset(dst, 0, cap);
    if (!src)
        return;
    size_t len = strlen(src);
    if (len > cap - 1)
        len = cap - 1;
    /* Cut at a UTF-8 character boundary, so that the field stays valid text. */
    while (len && len < strlen(src) && ((unsigned char)src[len] & 0xc0) == 0x80)
        len--;
    memcpy(dst, src, len);
}

void nvl_disk_header_init(struct nvl_disk_header *h, const struct nvl_gguf *g, uint64_t gguf_bytes,
                          uint32_t lba_size, const struct nvl_disk_extent *ext, uint32_t n,
                          const char *model_name, const char *writer)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->magic, NVL_DISK_MAGIC, sizeof(h->magic));
    h->version = NVL_DISK_VERSION;
    h->header_bytes = sizeof(*h);
    h->lba_size = lba_size;
    h->gguf_offset = NVL_DISK_GGUF_OFFSET;
    h->gguf_bytes = gguf_bytes;
    h->table_offset = NVL_DISK_TABLE_OFFSET;
    h->n_extents = n;
    h->extent_bytes = sizeof(struct nvl_disk_extent);
    for (uint32_t i = 0; i < n; i++)
        h->n_layers += ext[i].kind == NVL_DISK_EXTENT_LAYER;
    h->gguf_data_offset = nvl_gguf_data_offset(g);
    h->gguf_alignment = nvl_gguf_alignment(g);
    const char *s = NULL;
    if (!model_name && nvl_gguf_get_str(g, "general.name", &s, NULL) == 0)
        model_name = s;
    copy_field(h->model_name, sizeof(h->model_name), model_name ? model_name : "unnamed");
    s = NULL;
    nvl_gguf_get_str(g, "general.architecture", &s, NULL);
    copy_field(h->arch, sizeof(h->arch), s ? s : "unknown");
    copy_field(h->writer, sizeof(h->writer), writer);
}

void nvl_disk_header_seal(struct nvl_disk_header *h, const struct nvl_disk_extent *ext)
{
    h->table_crc32c = nvl_crc32c(0, ext, (size_t)h->n_extents * sizeof(*ext));
    h->header_crc32c = nvl_crc32c(0, h, HEADER_CRC_BYTES);
}

static bool field_terminated(const char *f, size_t cap)
{
    return memchr(f, '\0', cap) != NULL;
}

int nvl_disk_header_check(const void *buf, size_t len, uint64_t capacity, uint32_t lba_size,
                          char *err, size_t err_len)
{
    struct nvl_disk_header h;
    if (len < sizeof(h))
        return nvl__disk_fail(err, err_len, -EINVAL, "the header needs %zu bytes, got %zu",
                              sizeof(h), len);
    memcpy(&h, buf, sizeof(h));
    if (memcmp(h.magic, NVL_DISK_MAGIC, sizeof(h.magic)) != 0)
        return nvl__disk_fail(err, err_len, -ENOENT,
                              "no nvload image on the drive (no %s magic at byte 0)",
                              NVL_DISK_MAGIC);
    /* A newer version may move everything after the version field, its CRC included. */
    if (h.version > NVL_DISK_VERSION)
        return nvl__disk_fail(err, err_len, -ENOTSUP,
                              "the image has format version %u; this nvload reads up to %u",
                              h.version, NVL_DISK_VERSION);
    const uint32_t crc = nvl_crc32c(0, buf, HEADER_CRC_BYTES);
    if (crc != h.header_crc32c)
        return nvl__disk_fail(err, err_len, -EINVAL,
                              "the image header is damaged: CRC32C 0x%08x, stored 0x%08x", crc,
                              h.header_crc32c);
    const uint64_t table_end = h.table_offset + (uint64_t)h.n_extents * h.extent_bytes;
    const char *bad = NULL;
    if (h.version == 0)
        bad = "version 0";
    else if (h.header_bytes != sizeof(h))
        bad = "header_bytes";
    else if (h.extent_bytes != sizeof(struct nvl_disk_extent))
        bad = "extent_bytes";
    else if (h.n_extents == 0 || h.n_extents > NVL_DISK_MAX_EXTENTS)
        bad = "n_extents";
    else if (h.n_layers > h.n_extents)
        bad = "n_layers";
    else if (h.table_offset < sizeof(h) || h.table_offset % 8)
        bad = "table_offset";
    else if (h.gguf_offset < table_end || h.gguf_offset > capacity ||
             (lba_size && h.gguf_offset % lba_size))
        bad = "gguf_offset";
    else if (h.gguf_bytes == 0 || h.gguf_bytes > capacity - h.gguf_offset)
        bad = "gguf_bytes";
    else if (h.gguf_data_offset > h.gguf_bytes)
        bad = "gguf_data_offset";
    else if (!field_terminated(h.model_name, sizeof(h.model_name)) ||
             !field_terminated(h.arch, sizeof(h.arch)) ||
             !field_terminated(h.writer, sizeof(h.writer)))
        bad = "an unterminated name";
    if (bad)
        return nvl__disk_fail(err, err_len, -EINVAL,
                              "the image header does not fit the drive (%s): GGUF of %" PRIu64
                              " bytes at byte %" PRIu64 ", %" PRIu64 " bytes on the drive",
                              bad, h.gguf_bytes, h.gguf_offset, capacity);
    return 0;
}

int nvl_disk_table_check(const struct nvl_disk_header *h, const struct nvl_disk_extent *ext,
                         char *err, size_t err_len)
{
    const uint32_t crc = nvl_crc32c(0, ext, (size_t)h->n_extents * sizeof(*ext));
    if (crc != h->table_crc32c)
        return nvl__disk_fail(err, err_len, -EINVAL,
                              "the extent table is damaged: CRC32C 0x%08x, stored 0x%08x", crc,
                              h->table_crc32c);
    uint64_t at = 0;
    uint32_t layers = 0;
    for (uint32_t i = 0; i < h->n_extents; i++) {
        const struct nvl_disk_extent *e = &ext[i];
        const bool layer = e->kind == NVL_DISK_EXTENT_LAYER;
        if (e->offset != at || e->bytes == 0 || e->bytes > h->gguf_bytes - at ||
            (e->kind != NVL_DISK_EXTENT_META && e->kind != NVL_DISK_EXTENT_GLOBALS && !layer) ||
            (i == 0) != (e->kind == NVL_DISK_EXTENT_META) ||
            layer != (e->layer != NVL_DISK_NO_LAYER))
            return nvl__disk_fail(err, err_len, -EINVAL,
                                  "extent %u of the table is malformed (kind %u, bytes %" PRIu64
                                  "..%" PRIu64 ")",
                                  i, e->kind, e->offset, e->offset + e->bytes);
        at += e->bytes;
        layers += layer;
    }
    if (at != h->gguf_bytes || layers != h->n_layers)
        return nvl__disk_fail(err, err_len, -EINVAL,
                              "the extent table covers %" PRIu64 " of %" PRIu64
                              " GGUF bytes and %u of %u layers",
                              at, h->gguf_bytes, layers, h->n_layers);
    return 0;
}

const char *nvl_disk_extent_name(const struct nvl_disk_extent *e, char *buf, size_t len)
{
    switch (e->kind) {
    case NVL_DISK_EXTENT_META:
        snprintf(buf, len, "metadata");
        break;
    case NVL_DISK_EXTENT_GLOBALS:
        snprintf(buf, len, "global tensors");
        break;
    case NVL_DISK_EXTENT_LAYER:
        snprintf(buf, len, "layer %u", e->layer);
        break;
    default:
        snprintf(buf, len, "extent of kind %u", e->kind);
        break;
    }
    return buf;
}
