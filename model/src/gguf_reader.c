/* GGUF v2/v3 reader: validates the whole header, metadata and tensor-info section at open, so that
 * accessors never need to check anything again.
 *
 * Layout (ggml docs/gguf.md): magic "GGUF", u32 version, u64 tensor count, u64 kv count, then the
 * kvs (string key, u32 type, value), then the tensor infos (string name, u32 n_dims, u64
 * ne[n_dims], u32 ggml type, u64 offset), then padding to general.alignment and the tensor data.
 *
 * Allocation is bounded by the input size: every count is checked against the bytes left before
 * anything is allocated for it (each kv takes at least 14 bytes, each tensor info 33, each array
 * element its size, each string 8), so a hostile header cannot make us allocate more than a small
 * multiple of the file. */
#include "gguf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Smallest possible encodings, used to cap counts before allocating. */
#define GGUF_MIN_KV_BYTES     (8 + 1 + 4 + 1) /* key length, 1-byte key, type, 1-byte value */
#define GGUF_MIN_TENSOR_BYTES (8 + 1 + 4 + 8 + 4 + 8)
#define GGUF_HEADER_BYTES     (4 + 4 + 8 + 8)

struct gguf_kv {
    char *key;               /* NUL-terminated copy */
    uint64_t offset;         /* file offset of the value */
    struct nvl_gguf_value v; /* strings and arrays point into owned copies */
    uint64_t *str_offsets;   /* string arrays: file offset of each string's length field */
};

/* Open-addressing table of indices into kv[] or tensors[], keyed by name. */
struct gguf_index {
    int64_t *slots; /* -1 = empty */
    uint64_t mask;
};

struct nvl_gguf {
    const uint8_t *base; /* the mapping or the caller's buffer */
    size_t len;          /* readable bytes at base */
    uint64_t file_size;
    void *map; /* what to munmap, or NULL */
    size_t map_len;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    struct gguf_kv *kv;
    uint64_t n_tensors;
    struct nvl_gguf_tensor *tensors;
    char *names; /* tensor names, NVL_GGUF_MAX_NAME_LEN + 1 bytes each */
    struct gguf_index kv_index;
    struct gguf_index tensor_index;
};

struct parser {
    const uint8_t *p;
    uint64_t len; /* bytes of metadata we may read */
    uint64_t pos;
    char *err;
    size_t err_len;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static int index_init(struct gguf_index *ix, uint64_t n)
{
    uint64_t cap = 16;

    while (cap < 2 * n)
        cap <<= 1;
    ix->slots = malloc(cap * sizeof(*ix->slots));
    if (!ix->slots)
        return -ENOMEM;
    memset(ix->slots, 0xff, cap * sizeof(*ix->slots));
    ix->mask = cap - 1;
    return 0;
}

/* Name of entry i of the table owner: a kv key or a tensor name. */
typedef const char *(*index_name_fn)(const struct nvl_gguf *g, int64_t i);

static int64_t index_find(const struct nvl_gguf *g, const struct gguf_index *ix, index_name_fn name,
                          const char *s)
{
    if (!ix->slots || !s)
        return -1;
    for (uint64_t h = hash_str(s) & ix->mask;; h = (h + 1) & ix->mask) {
        int64_t i = ix->slots[h];

        if (i < 0)
            return -1;
        if (!strcmp(name(g, i), s))
            return i;
    }
}

/* Inserts i; returns the index already holding the same name instead, if any. */
static int64_t index_insert(const struct nvl_gguf *g, struct gguf_index *ix, index_name_fn name,
                            int64_t i)
{
    const char *s = name(g, i);

    for (uint64_t h = hash_str(s) & ix->mask;; h = (h + 1) & ix->mask) {
        int64_t j = ix->slots[h];

        if (j < 0) {
            ix->slots[h] = i;
            return -1;
        }
        if (!strcmp(name(g, j), s))
            return j;
    }
}

static const char *kv_name(const struct nvl_gguf *g, int64_t i)
{
    return g->kv[i].key;
}

static const char *tensor_name(const struct nvl_gguf *g, int64_t i)
{
    return g->tensors[i].name;
}

/* "need N bytes at offset X, M left" message for a read that runs past the end. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
truncated(const struct parser *ps, uint64_t need, const char *fmt, ...)
{
    char what[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                          "%s at offset 0x%" PRIx64 ": needs %" PRIu64 " bytes, only %" PRIu64
                          " left (input size %" PRIu64 ")",
                          what, ps->pos, need, ps->len - ps->pos, ps->len);
}

static inline bool have(const struct parser *ps, uint64_t n)
{
    return n <= ps->len - ps->pos;
}

static inline uint32_t take_u32(struct parser *ps)
{
    uint32_t v;

    memcpy(&v, ps->p + ps->pos, 4);
    ps->pos += 4;
    return v;
}

static inline uint64_t take_u64(struct parser *ps)
{
    uint64_t v;

    memcpy(&v, ps->p + ps->pos, 8);
    ps->pos += 8;
    return v;
}

/* Shortens a key or name for an error message and makes it printable. */
static const char *printable(const uint8_t *s, uint64_t len, char *buf, size_t buf_len)
{
    size_t n = 0;

    for (uint64_t i = 0; i < len && n + 4 < buf_len; i++)
        buf[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    if (len > n && n + 4 <= buf_len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* ---- metadata ----------------------------------------------------------------------------- */

static int parse_value(struct parser *ps, struct gguf_kv *kv, uint64_t idx)
{
    struct nvl_gguf_value *v = &kv->v;
    size_t size;

    switch (v->type) {
    case NVL_GGUF_TYPE_STRING: {
        uint64_t len;
        char *s;

        if (!have(ps, 8))
            return truncated(ps, 8, "kv %" PRIu64 " '%s': string length", idx, kv->key);
        len = take_u64(ps);
        if (!have(ps, len))
            return truncated(ps, len, "kv %" PRIu64 " '%s': string of %" PRIu64 " bytes", idx,
                             kv->key, len);
        s = malloc(len + 1);
        if (!s)
            return -ENOMEM;
        memcpy(s, ps->p + ps->pos, len);
        s[len] = '\0';
        ps->pos += len;
        v->str.data = s;
        v->str.len = len;
        return 0;
    }
    case NVL_GGUF_TYPE_ARRAY: {
        uint32_t et;
        uint64_t count, at;

        if (!have(ps, 12))
            return truncated(ps, 12, "kv %" PRIu64 " '%s': array type and length", idx, kv->key);
        at = ps->pos;
        et = take_u32(ps);
        count = take_u64(ps);
        if (et >= NVL_GGUF_TYPE_COUNT)
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "kv %" PRIu64 " '%s': array element type %" PRIu32
                                  " is not a GGUF type (at offset 0x%" PRIx64 ")",
                                  idx, kv->key, et, at);
        if (et == NVL_GGUF_TYPE_ARRAY)
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "kv %" PRIu64 " '%s': arrays of arrays are not supported (at "
                                  "offset 0x%" PRIx64 ")",
                                  idx, kv->key, at);
        v->arr.type = (enum nvl_gguf_type)et;
        v->arr.count = count;
        if (et == NVL_GGUF_TYPE_STRING) {
            /* Each string takes at least its 8-byte length. */
            if (count > (ps->len - ps->pos) / 8)
                return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                      "kv %" PRIu64 " '%s': array of %" PRIu64
                                      " strings at offset 0x%" PRIx64
                                      " does not fit in the %" PRIu64 " bytes left",
                                      idx, kv->key, count, at, ps->len - ps->pos);
            kv->str_offsets = malloc((count ? count : 1) * sizeof(uint64_t));
            if (!kv->str_offsets)
                return -ENOMEM;
            for (uint64_t i = 0; i < count; i++) {
                uint64_t len;

                if (!have(ps, 8))
                    return truncated(
                        ps, 8, "kv %" PRIu64 " '%s': length of string %" PRIu64 " of %" PRIu64, idx,
                        kv->key, i, count);
                kv->str_offsets[i] = ps->pos;
                len = take_u64(ps);
                if (!have(ps, len))
                    return truncated(ps, len,
                                     "kv %" PRIu64 " '%s': string %" PRIu64 " of %" PRIu64
                                     " (%" PRIu64 " bytes)",
                                     idx, kv->key, i, count, len);
                ps->pos += len;
            }
            v->arr.data = NULL;
            return 0;
        }
        size = nvl_gguf_type_size(et);
        if (count > (ps->len - ps->pos) / size)
            return nvl__gguf_fail(
                ps->err, ps->err_len, -EINVAL,
                "kv %" PRIu64 " '%s': array of %" PRIu64 " %s at offset 0x%" PRIx64
                " does not fit in the %" PRIu64 " bytes left",
                idx, kv->key, count, nvl_gguf_type_name(et), at, ps->len - ps->pos);
        {
            /* Copied so that elements are aligned; bools normalized to 0/1. */
            uint8_t *d = malloc(count ? count * size : 1);

            if (!d)
                return -ENOMEM;
            memcpy(d, ps->p + ps->pos, count * size);
            if (et == NVL_GGUF_TYPE_BOOL)
                for (uint64_t i = 0; i < count; i++)
                    d[i] = d[i] != 0;
            ps->pos += count * size;
            v->arr.data = d;
        }
        return 0;
    }
    default:
        size = nvl_gguf_type_size(v->type);
        if (!have(ps, size))
            return truncated(ps, size, "kv %" PRIu64 " '%s': %s value", idx, kv->key,
                             nvl_gguf_type_name(v->type));
        if (v->type == NVL_GGUF_TYPE_BOOL)
            v->b = ps->p[ps->pos] != 0;
        else
            memcpy(&v->u64, ps->p + ps->pos, size); /* all members start at the union's start */
        ps->pos += size;
        return 0;
    }
}

static int parse_kvs(struct nvl_gguf *g, struct parser *ps)
{
    int ret;

    if (g->n_kv > (ps->len - ps->pos) / GGUF_MIN_KV_BYTES)
        return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                              "kv count %" PRIu64 " (at offset 0x10) cannot fit in the %" PRIu64
                              " bytes after the header",
                              g->n_kv, ps->len - ps->pos);
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kv));
    if (!g->kv)
        return -ENOMEM;
    ret = index_init(&g->kv_index, g->n_kv);
    if (ret)
        return ret;

    for (uint64_t i = 0; i < g->n_kv; i++) {
        struct gguf_kv *kv = &g->kv[i];
        uint64_t key_off = ps->pos, len;
        uint32_t type;
        int64_t dup;
        char pk[80];

        if (!have(ps, 8))
            return truncated(ps, 8, "kv %" PRIu64 ": key length", i);
        len = take_u64(ps);
        if (!have(ps, len))
            return truncated(ps, len, "kv %" PRIu64 ": key of %" PRIu64 " bytes", i, len);
        if (len == 0 || memchr(ps->p + ps->pos, '\0', len))
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "kv %" PRIu64 ": key at offset 0x%" PRIx64
                                  " is empty or contains a NUL byte",
                                  i, key_off);
        kv->key = malloc(len + 1);
        if (!kv->key)
            return -ENOMEM;
        memcpy(kv->key, ps->p + ps->pos, len);
        kv->key[len] = '\0';
        ps->pos += len;

        if (!have(ps, 4))
            return truncated(ps, 4, "kv %" PRIu64 " '%s': value type", i,
                             printable((const uint8_t *)kv->key, len, pk, sizeof(pk)));
        type = take_u32(ps);
        if (type >= NVL_GGUF_TYPE_COUNT)
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "kv %" PRIu64 " '%s': value type %" PRIu32 " at offset 0x%" PRIx64
                                  " is not a GGUF type",
                                  i, printable((const uint8_t *)kv->key, len, pk, sizeof(pk)), type,
                                  ps->pos - 4);
        kv->v.type = (enum nvl_gguf_type)type;
        kv->offset = ps->pos;
        ret = parse_value(ps, kv, i);
        if (ret)
            return ret;

        dup = index_insert(g, &g->kv_index, kv_name, (int64_t)i);
        if (dup >= 0)
            return nvl__gguf_fail(
                ps->err, ps->err_len, -EINVAL,
                "kv %" PRIu64 " '%s' at offset 0x%" PRIx64 ": duplicate of kv %" PRId64, i,
                printable((const uint8_t *)kv->key, len, pk, sizeof(pk)), key_off, dup);
    }
    return 0;
}

static int parse_alignment(struct nvl_gguf *g, struct parser *ps)
{
    int64_t i = nvl_gguf_find_key(g, "general.alignment");
    int64_t a;

    g->alignment = NVL_GGUF_DEFAULT_ALIGNMENT;
    if (i < 0)
        return 0;
    if (nvl_gguf_get_int(g, "general.alignment", &a))
        return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                              "kv %" PRId64 " 'general.alignment' at offset 0x%" PRIx64
                              ": type %s is not an integer type",
                              i, g->kv[i].offset, nvl_gguf_type_name(g->kv[i].v.type));
    if (a <= 0 || a > (int64_t)NVL_GGUF_MAX_ALIGNMENT || (a & (a - 1)))
        return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                              "kv %" PRId64 " 'general.alignment' at offset 0x%" PRIx64 ": %" PRId64
                              " is not a power of two in [1, %u]",
                              i, g->kv[i].offset, a, NVL_GGUF_MAX_ALIGNMENT);
    g->alignment = (uint32_t)a;
    return 0;
}

/* ---- tensor infos ------------------------------------------------------------------------- */

static int parse_tensor_infos(struct nvl_gguf *g, struct parser *ps)
{
    const size_t name_stride = NVL_GGUF_MAX_NAME_LEN + 1;
    int ret;

    if (g->n_tensors > (ps->len - ps->pos) / GGUF_MIN_TENSOR_BYTES)
        return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                              "tensor count %" PRIu64 " (at offset 0x8) cannot fit in the %" PRIu64
                              " bytes after the metadata (offset 0x%" PRIx64 ")",
                              g->n_tensors, ps->len - ps->pos, ps->pos);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*g->tensors));
    g->names = malloc((g->n_tensors ? g->n_tensors : 1) * name_stride);
    if (!g->tensors || !g->names)
        return -ENOMEM;
    ret = index_init(&g->tensor_index, g->n_tensors);
    if (ret)
        return ret;

    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct nvl_gguf_tensor *t = &g->tensors[i];
        char *name = g->names + i * name_stride;
        const struct nvl_ggml_type_traits *tr;
        uint64_t info_off = ps->pos, len, n_el, blocks;
        uint32_t type;
        int64_t dup;

        if (!have(ps, 8))
            return truncated(ps, 8, "tensor %" PRIu64 ": name length", i);
        len = take_u64(ps);
        if (!have(ps, len))
            return truncated(ps, len, "tensor %" PRIu64 ": name of %" PRIu64 " bytes", i, len);
        if (len == 0 || len > NVL_GGUF_MAX_NAME_LEN || memchr(ps->p + ps->pos, '\0', len))
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "tensor %" PRIu64 ": name at offset 0x%" PRIx64 " (%" PRIu64
                                  " bytes) is empty, longer than %d bytes or contains a NUL byte",
                                  i, info_off, len, NVL_GGUF_MAX_NAME_LEN);
        memcpy(name, ps->p + ps->pos, len);
        name[len] = '\0';
        ps->pos += len;
        t->name = name;

        if (!have(ps, 4))
            return truncated(ps, 4, "tensor %" PRIu64 " '%s': n_dims", i, name);
        t->n_dims = take_u32(ps);
        if (t->n_dims < 1 || t->n_dims > NVL_GGUF_MAX_DIMS)
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "tensor %" PRIu64 " '%s': n_dims %" PRIu32 " at offset 0x%" PRIx64
                                  " is not in [1, %d]",
                                  i, name, t->n_dims, ps->pos - 4, NVL_GGUF_MAX_DIMS);
        if (!have(ps, 8ull * t->n_dims + 4 + 8))
            return truncated(ps, 8ull * t->n_dims + 12,
                             "tensor %" PRIu64 " '%s': shape, type and offset", i, name);
        n_el = 1;
        for (uint32_t d = 0; d < NVL_GGUF_MAX_DIMS; d++) {
            uint64_t ne = 1;

            if (d < t->n_dims) {
                ne = take_u64(ps);
                /* ggml keeps ne as int64_t, and so must the product. */
                if (ne > (uint64_t)INT64_MAX || (ne && n_el > (uint64_t)INT64_MAX / ne))
                    return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                          "tensor %" PRIu64 " '%s': ne[%" PRIu32 "] = %" PRIu64
                                          " at offset 0x%" PRIx64
                                          " makes the element count overflow int64",
                                          i, name, d, ne, ps->pos - 8);
            }
            t->ne[d] = ne;
            n_el *= ne;
        }
        type = take_u32(ps);
        tr = nvl_ggml_type_traits(type);
        if (!tr)
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "tensor %" PRIu64 " '%s': type %" PRIu32 " at offset 0x%" PRIx64
                                  " is not a known ggml type",
                                  i, name, type, ps->pos - 4);
        t->type = (enum nvl_ggml_type)type;
        if (t->ne[0] % tr->block_size)
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "tensor %" PRIu64 " '%s': ne[0] = %" PRIu64
                                  " is not a multiple of the %s block size %" PRIu32
                                  " (tensor info at offset 0x%" PRIx64 ")",
                                  i, name, t->ne[0], tr->name, tr->block_size, info_off);
        blocks = n_el / tr->block_size;
        if (blocks > (uint64_t)INT64_MAX / tr->type_size)
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "tensor %" PRIu64 " '%s': byte size overflows (tensor info at "
                                  "offset 0x%" PRIx64 ")",
                                  i, name, info_off);
        t->size = blocks * tr->type_size;
        t->offset = take_u64(ps);

        dup = index_insert(g, &g->tensor_index, tensor_name, (int64_t)i);
        if (dup >= 0)
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "tensor %" PRIu64 " '%s' at offset 0x%" PRIx64
                                  ": duplicate name of tensor %" PRId64,
                                  i, name, info_off, dup);
    }
    return 0;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const struct nvl_gguf_tensor *x = *(const struct nvl_gguf_tensor *const *)a;
    const struct nvl_gguf_tensor *y = *(const struct nvl_gguf_tensor *const *)b;

    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->size < y->size ? -1 : x->size > y->size;
}

/* Tensor extents: aligned, inside the file, not overlapping. */
static int check_tensor_data(struct nvl_gguf *g, struct parser *ps)
{
    const struct nvl_gguf_tensor **order;
    int ret = 0;

    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct nvl_gguf_tensor *t = &g->tensors[i];
        uint64_t start, end;

        if (t->offset % g->alignment)
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "tensor %" PRIu64 " '%s': data offset 0x%" PRIx64
                                  " is not a multiple of the alignment %" PRIu32,
                                  i, t->name, t->offset, g->alignment);
        if (t->offset > g->file_size || g->data_offset > g->file_size - t->offset ||
            t->size > g->file_size - g->data_offset - t->offset) {
            start = g->data_offset + t->offset; /* may wrap; only printed */
            end = start + t->size;
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "tensor %" PRIu64 " '%s': data [0x%" PRIx64 ", 0x%" PRIx64
                                  ") past end of file (size %" PRIu64 ") at offset 0x%" PRIx64
                                  " + data section 0x%" PRIx64,
                                  i, t->name, start, end, g->file_size, t->offset, g->data_offset);
        }
        if ((g->data_offset + t->offset) % nvl__gguf_type_alignment(t->type))
            return nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                  "tensor %" PRIu64 " '%s': data at file offset 0x%" PRIx64
                                  " is not %" PRIu32 "-byte aligned as %s data must be",
                                  i, t->name, g->data_offset + t->offset,
                                  nvl__gguf_type_alignment(t->type), nvl_ggml_type_name(t->type));
    }
    if (g->n_tensors < 2)
        return 0;
    order = malloc(g->n_tensors * sizeof(*order));
    if (!order)
        return -ENOMEM;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        order[i] = &g->tensors[i];
    qsort(order, g->n_tensors, sizeof(*order), cmp_by_offset);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const struct nvl_gguf_tensor *a = order[i - 1], *b = order[i];

        if (a->size && b->size && a->offset + a->size > b->offset) {
            ret = nvl__gguf_fail(ps->err, ps->err_len, -EINVAL,
                                 "tensor '%s' data [0x%" PRIx64 ", 0x%" PRIx64
                                 ") overlaps tensor '%s' at 0x%" PRIx64
                                 " (offsets in the data section)",
                                 a->name, a->offset, a->offset + a->size, b->name, b->offset);
            break;
        }
    }
    free(order);
    return ret;
}

/* ---- open / close ------------------------------------------------------------------------- */

static int parse(struct nvl_gguf *g, char *err, size_t err_len)
{
    struct parser ps = {.p = g->base, .len = g->len, .pos = 0, .err = err, .err_len = err_len};
    uint32_t magic;
    int ret;

    if (!have(&ps, GGUF_HEADER_BYTES))
        return truncated(&ps, GGUF_HEADER_BYTES, "header");
    magic = take_u32(&ps);
    if (magic != NVL_GGUF_MAGIC)
        return nvl__gguf_fail(err, err_len, -EINVAL,
                              "magic at offset 0x0 is %02x %02x %02x %02x, not \"GGUF\"",
                              g->base[0], g->base[1], g->base[2], g->base[3]);
    g->version = take_u32(&ps);
    if (g->version != 2 && g->version != 3) {
        uint32_t swapped = __builtin_bswap32(g->version);

        if (swapped >= 1 && swapped <= 3)
            return nvl__gguf_fail(
                err, err_len, -ENOTSUP,
                "version at offset 0x4: big-endian GGUF (v%" PRIu32 ") is not supported", swapped);
        return nvl__gguf_fail(err, err_len, -ENOTSUP,
                              "version %" PRIu32 " at offset 0x4 is not supported (only 2 and 3)",
                              g->version);
    }
    g->n_tensors = take_u64(&ps);
    g->n_kv = take_u64(&ps);

    ret = parse_kvs(g, &ps);
    if (ret)
        return ret;
    ret = parse_alignment(g, &ps);
    if (ret)
        return ret;
    ret = parse_tensor_infos(g, &ps);
    if (ret)
        return ret;
    g->data_offset = nvl__gguf_align_up(ps.pos, g->alignment);
    return check_tensor_data(g, &ps);
}

static int open_common(struct nvl_gguf *g, struct nvl_gguf **out, char *err, size_t err_len)
{
    int ret;

    ret = parse(g, err, err_len);
    if (ret == -ENOMEM)
        nvl__gguf_fail(err, err_len, ret, "out of memory while parsing the metadata");
    if (ret) {
        nvl_gguf_close(g);
        return ret;
    }
    *out = g;
    return 0;
}

int nvl_gguf_open_prefix(const void *data, size_t len, uint64_t file_size, struct nvl_gguf **out,
                         char *err, size_t err_len)
{
    struct nvl_gguf *g;

    if (!data && len)
        return nvl__gguf_fail(err, err_len, -EINVAL, "NULL buffer");
    if (file_size < len)
        return nvl__gguf_fail(err, err_len, -EINVAL,
                              "buffer of %zu bytes is larger than the file size %" PRIu64, len,
                              file_size);
    g = calloc(1, sizeof(*g));
    if (!g)
        return nvl__gguf_fail(err, err_len, -ENOMEM, "out of memory");
    g->base = data;
    g->len = len;
    g->file_size = file_size;
    return open_common(g, out, err, err_len);
}

int nvl_gguf_open_memory(const void *data, size_t len, struct nvl_gguf **out, char *err,
                         size_t err_len)
{
    return nvl_gguf_open_prefix(data, len, len, out, err, err_len);
}

int nvl_gguf_open(const char *path, struct nvl_gguf **out, char *err, size_t err_len)
{
    struct nvl_gguf *g;
    struct stat st;
    void *map;
    int fd, ret;
    char sub[400];

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = -errno;
        return nvl__gguf_fail(err, err_len, ret, "%s: %s", path, strerror(-ret));
    }
    if (fstat(fd, &st)) {
        ret = -errno;
        close(fd);
        return nvl__gguf_fail(err, err_len, ret, "%s: fstat: %s", path, strerror(-ret));
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return nvl__gguf_fail(err, err_len, -EINVAL,
                              "%s: not a regular, non-empty file that fits in memory", path);
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    ret = -errno;
    close(fd);
    if (map == MAP_FAILED)
        return nvl__gguf_fail(err, err_len, ret, "%s: mmap: %s", path, strerror(-ret));

    g = calloc(1, sizeof(*g));
    if (!g) {
        munmap(map, (size_t)st.st_size);
        return nvl__gguf_fail(err, err_len, -ENOMEM, "%s: out of memory", path);
    }
    g->base = map;
    g->len = (size_t)st.st_size;
    g->file_size = (uint64_t)st.st_size;
    g->map = map;
    g->map_len = (size_t)st.st_size;
    sub[0] = '\0';
    ret = open_common(g, out, sub, sizeof(sub));
    if (ret)
        nvl__gguf_fail(err, err_len, ret, "%s: %s", path, sub);
    return ret;
}

void nvl_gguf_close(struct nvl_gguf *g)
{
    if (!g)
        return;
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            struct gguf_kv *kv = &g->kv[i];

            free(kv->key);
            free(kv->str_offsets);
            if (kv->v.type == NVL_GGUF_TYPE_STRING)
                free((void *)kv->v.str.data);
            else if (kv->v.type == NVL_GGUF_TYPE_ARRAY)
                free((void *)kv->v.arr.data);
        }
    }
    free(g->kv);
    free(g->tensors);
    free(g->names);
    free(g->kv_index.slots);
    free(g->tensor_index.slots);
    if (g->map)
        munmap(g->map, g->map_len);
    free(g);
}

/* ---- accessors ---------------------------------------------------------------------------- */

uint32_t nvl_gguf_version(const struct nvl_gguf *g)
{
    return g->version;
}

uint64_t nvl_gguf_file_size(const struct nvl_gguf *g)
{
    return g->file_size;
}

uint32_t nvl_gguf_alignment(const struct nvl_gguf *g)
{
    return g->alignment;
}

uint64_t nvl_gguf_data_offset(const struct nvl_gguf *g)
{
    return g->data_offset;
}

const void *nvl_gguf_base(const struct nvl_gguf *g)
{
    return g->base;
}

size_t nvl_gguf_mapped_size(const struct nvl_gguf *g)
{
    return g->len;
}

uint64_t nvl_gguf_kv_count(const struct nvl_gguf *g)
{
    return g->n_kv;
}

int64_t nvl_gguf_find_key(const struct nvl_gguf *g, const char *key)
{
    return index_find(g, &g->kv_index, kv_name, key);
}

static const struct gguf_kv *kv_at(const struct nvl_gguf *g, int64_t i)
{
    return (i >= 0 && (uint64_t)i < g->n_kv) ? &g->kv[i] : NULL;
}

const char *nvl_gguf_kv_key(const struct nvl_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);

    return kv ? kv->key : NULL;
}

enum nvl_gguf_type nvl_gguf_kv_type(const struct nvl_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);

    return kv ? kv->v.type : NVL_GGUF_TYPE_COUNT;
}

uint64_t nvl_gguf_kv_offset(const struct nvl_gguf *g, int64_t i)
{
    const struct gguf_kv *kv = kv_at(g, i);

    return kv ? kv->offset : 0;
}

int nvl_gguf_kv_value(const struct nvl_gguf *g, int64_t i, struct nvl_gguf_value *v)
{
    const struct gguf_kv *kv = kv_at(g, i);

    if (!kv)
        return -EINVAL;
    *v = kv->v;
    return 0;
}

int nvl_gguf_arr_str(const struct nvl_gguf *g, int64_t i, uint64_t j, const char **s, uint64_t *len)
{
    const struct gguf_kv *kv = kv_at(g, i);
    uint64_t n;

    if (!kv || kv->v.type != NVL_GGUF_TYPE_ARRAY || kv->v.arr.type != NVL_GGUF_TYPE_STRING ||
        j >= kv->v.arr.count)
        return -EINVAL;
    memcpy(&n, g->base + kv->str_offsets[j], 8);
    *s = (const char *)g->base + kv->str_offsets[j] + 8;
    *len = n;
    return 0;
}

int nvl_gguf_arr_value(const struct nvl_gguf *g, int64_t i, uint64_t j, struct nvl_gguf_value *v)
{
    const struct gguf_kv *kv = kv_at(g, i);
    size_t size;

    if (!kv || kv->v.type != NVL_GGUF_TYPE_ARRAY || j >= kv->v.arr.count)
        return -EINVAL;
    memset(v, 0, sizeof(*v));
    v->type = kv->v.arr.type;
    if (v->type == NVL_GGUF_TYPE_STRING)
        return nvl_gguf_arr_str(g, i, j, &v->str.data, &v->str.len);
    /* Elements are native-endian and naturally aligned (see nvl_gguf_value), and every member of
     * the union starts at its first byte. */
    size = nvl_gguf_type_size(v->type);
    memcpy(&v->u64, (const uint8_t *)kv->v.arr.data + j * size, size);
    return 0;
}

static const struct gguf_kv *kv_typed(const struct nvl_gguf *g, const char *key,
                                      enum nvl_gguf_type type, int *ret)
{
    const struct gguf_kv *kv = kv_at(g, nvl_gguf_find_key(g, key));

    *ret = !kv ? -ENOENT : kv->v.type != type ? -EINVAL : 0;
    return *ret ? NULL : kv;
}

#define GGUF_GETTER(suffix, ctype, gtype, member)                                                  \
    int nvl_gguf_get_##suffix(const struct nvl_gguf *g, const char *key, ctype *out)               \
    {                                                                                              \
        int ret;                                                                                   \
        const struct gguf_kv *kv = kv_typed(g, key, gtype, &ret);                                  \
        if (kv)                                                                                    \
            *out = kv->v.member;                                                                   \
        return ret;                                                                                \
    }

GGUF_GETTER(u8, uint8_t, NVL_GGUF_TYPE_UINT8, u8)
GGUF_GETTER(i8, int8_t, NVL_GGUF_TYPE_INT8, i8)
GGUF_GETTER(u16, uint16_t, NVL_GGUF_TYPE_UINT16, u16)
GGUF_GETTER(i16, int16_t, NVL_GGUF_TYPE_INT16, i16)
GGUF_GETTER(u32, uint32_t, NVL_GGUF_TYPE_UINT32, u32)
GGUF_GETTER(i32, int32_t, NVL_GGUF_TYPE_INT32, i32)
GGUF_GETTER(u64, uint64_t, NVL_GGUF_TYPE_UINT64, u64)
GGUF_GETTER(i64, int64_t, NVL_GGUF_TYPE_INT64, i64)
GGUF_GETTER(f32, float, NVL_GGUF_TYPE_FLOAT32, f32)
GGUF_GETTER(f64, double, NVL_GGUF_TYPE_FLOAT64, f64)
GGUF_GETTER(bool, bool, NVL_GGUF_TYPE_BOOL, b)

int nvl_gguf_get_str(const struct nvl_gguf *g, const char *key, const char **s, uint64_t *len)
{
    int ret;
    const struct gguf_kv *kv = kv_typed(g, key, NVL_GGUF_TYPE_STRING, &ret);

    if (kv) {
        *s = kv->v.str.data;
        if (len)
            *len = kv->v.str.len;
    }
    return ret;
}

int nvl_gguf_get_int(const struct nvl_gguf *g, const char *key, int64_t *out)
{
    const struct gguf_kv *kv = kv_at(g, nvl_gguf_find_key(g, key));

    if (!kv)
        return -ENOENT;
    switch (kv->v.type) {
    case NVL_GGUF_TYPE_UINT8:
        *out = kv->v.u8;
        return 0;
    case NVL_GGUF_TYPE_INT8:
        *out = kv->v.i8;
        return 0;
    case NVL_GGUF_TYPE_UINT16:
        *out = kv->v.u16;
        return 0;
    case NVL_GGUF_TYPE_INT16:
        *out = kv->v.i16;
        return 0;
    case NVL_GGUF_TYPE_UINT32:
        *out = kv->v.u32;
        return 0;
    case NVL_GGUF_TYPE_INT32:
        *out = kv->v.i32;
        return 0;
    case NVL_GGUF_TYPE_INT64:
        *out = kv->v.i64;
        return 0;
    case NVL_GGUF_TYPE_UINT64:
        if (kv->v.u64 > (uint64_t)INT64_MAX)
            return -ERANGE;
        *out = (int64_t)kv->v.u64;
        return 0;
    default:
        return -EINVAL;
    }
}

int nvl_gguf_get_float(const struct nvl_gguf *g, const char *key, double *out)
{
    const struct gguf_kv *kv = kv_at(g, nvl_gguf_find_key(g, key));

    if (!kv)
        return -ENOENT;
    if (kv->v.type == NVL_GGUF_TYPE_FLOAT32)
        *out = kv->v.f32;
    else if (kv->v.type == NVL_GGUF_TYPE_FLOAT64)
        *out = kv->v.f64;
    else
        return -EINVAL;
    return 0;
}

int nvl_gguf_get_arr(const struct nvl_gguf *g, const char *key, enum nvl_gguf_type *elem_type,
                     uint64_t *count, const void **data)
{
    int ret;
    const struct gguf_kv *kv = kv_typed(g, key, NVL_GGUF_TYPE_ARRAY, &ret);

    if (kv) {
        if (elem_type)
            *elem_type = kv->v.arr.type;
        if (count)
            *count = kv->v.arr.count;
        if (data)
            *data = kv->v.arr.data;
    }
    return ret;
}

uint64_t nvl_gguf_tensor_count(const struct nvl_gguf *g)
{
    return g->n_tensors;
}

const struct nvl_gguf_tensor *nvl_gguf_tensor(const struct nvl_gguf *g, uint64_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

int64_t nvl_gguf_find_tensor(const struct nvl_gguf *g, const char *name)
{
    return index_find(g, &g->tensor_index, tensor_name, name);
}

const struct nvl_gguf_tensor *nvl_gguf_get_tensor(const struct nvl_gguf *g, const char *name)
{
    int64_t i = nvl_gguf_find_tensor(g, name);

    return i < 0 ? NULL : &g->tensors[i];
}

uint64_t nvl_gguf_tensor_file_offset(const struct nvl_gguf *g, const struct nvl_gguf_tensor *t)
{
    return g->data_offset + t->offset;
}

const void *nvl_gguf_tensor_data(const struct nvl_gguf *g, const struct nvl_gguf_tensor *t)
{
    uint64_t start = g->data_offset + t->offset;

    if (start > g->len || t->size > g->len - start)
        return NULL;
    return g->base + start;
}

uint64_t nvl_gguf_tensor_nelements(const struct nvl_gguf_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}
