/* GGUF v3 (or v2) writer. Metadata values are serialized when they are set; tensor infos are kept
 * as descriptions; the file is produced in one sequential pass (header, kvs, tensor infos,
 * padding, then each tensor's bytes and padding), so tensor data can be streamed from callbacks
 * and the output can be a pipe. */
#include "gguf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Output buffer size for write(2) batching. */
#define WRITER_BUF_SIZE (1u << 20)

struct byte_buf {
    uint8_t *p;
    size_t len;
    size_t cap;
};

struct writer_kv {
    char *key;
    uint32_t type;
    struct byte_buf value; /* serialized value, as it follows the type field in the file */
};

struct writer_tensor {
    struct nvl_gguf_tensor info; /* info.name points at name; info.offset set by layout() */
    char name[NVL_GGUF_MAX_NAME_LEN + 1];
    const void *data;
    nvl_gguf_tensor_fn fn;
    void *ctx;
};

struct nvl_gguf_writer {
    uint32_t version;
    uint32_t alignment;
    struct writer_kv *kv;
    uint64_t n_kv, cap_kv;
    struct writer_tensor *tensors;
    uint64_t n_tensors, cap_tensors;
};

/* Buffered sequential output to a descriptor. */
struct out {
    int fd;
    uint8_t *buf;
    size_t len;
    uint64_t written; /* bytes handed to out_write so far */
    char *err;
    size_t err_len;
};

struct nvl_gguf_sink {
    struct out *out;
    uint64_t remaining;
};

/* ---- byte buffers ------------------------------------------------------------------------- */

static int buf_put(struct byte_buf *b, const void *data, size_t len)
{
    if (!len)
        return 0;
    if (len > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 64;

        while (cap - b->len < len) {
            if (cap > SIZE_MAX / 2)
                return -ENOMEM;
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static int buf_put_u32(struct byte_buf *b, uint32_t v)
{
    return buf_put(b, &v, sizeof(v));
}

static int buf_put_u64(struct byte_buf *b, uint64_t v)
{
    return buf_put(b, &v, sizeof(v));
}

static int buf_put_str(struct byte_buf *b, const char *s, uint64_t len)
{
    int ret = buf_put_u64(b, len);

    return ret ? ret : buf_put(b, s, (size_t)len);
}

/* ---- lifetime ----------------------------------------------------------------------------- */

int nvl_gguf_writer_create(struct nvl_gguf_writer **out)
{
    struct nvl_gguf_writer *w = calloc(1, sizeof(*w));

    if (!w)
        return -ENOMEM;
    w->version = NVL_GGUF_VERSION;
    w->alignment = NVL_GGUF_DEFAULT_ALIGNMENT;
    *out = w;
    return 0;
}

void nvl_gguf_writer_destroy(struct nvl_gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].value.p);
    }
    free(w->kv);
    free(w->tensors);
    free(w);
}

int nvl_gguf_writer_set_version(struct nvl_gguf_writer *w, uint32_t version)
{
    if (version != 2 && version != 3)
        return -EINVAL;
    w->version = version;
    return 0;
}

int nvl_gguf_writer_set_alignment(struct nvl_gguf_writer *w, uint32_t alignment)
{
    return nvl_gguf_writer_set_u32(w, "general.alignment", alignment);
}

/* ---- metadata ----------------------------------------------------------------------------- */

static int64_t writer_find_key(const struct nvl_gguf_writer *w, const char *key)
{
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key))
            return (int64_t)i;
    return -1;
}

/* Installs a serialized value under key, replacing an existing value in place. Takes ownership
 * of value (freed on error too). */
static int writer_put(struct nvl_gguf_writer *w, const char *key, uint32_t type,
                      struct byte_buf *value)
{
    size_t klen = key ? strlen(key) : 0;
    int64_t i;

    if (!klen) {
        free(value->p);
        return -EINVAL;
    }
    /* The data alignment is a property of the file layout, so the key must stay consistent
     * with it: only a UINT32 power of two is accepted, and it takes effect. */
    if (!strcmp(key, "general.alignment")) {
        uint32_t a = 0;

        if (type == NVL_GGUF_TYPE_UINT32 && value->len == 4)
            memcpy(&a, value->p, 4);
        if (!a || a > NVL_GGUF_MAX_ALIGNMENT || (a & (a - 1))) {
            free(value->p);
            return -EINVAL;
        }
        w->alignment = a;
    }
    i = writer_find_key(w, key);
    if (i >= 0) {
        free(w->kv[i].value.p);
        w->kv[i].type = type;
        w->kv[i].value = *value;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        uint64_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        struct writer_kv *kv = realloc(w->kv, cap * sizeof(*kv));

        if (!kv) {
            free(value->p);
            return -ENOMEM;
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    w->kv[w->n_kv].key = strdup(key);
    if (!w->kv[w->n_kv].key) {
        free(value->p);
        return -ENOMEM;
    }
    w->kv[w->n_kv].type = type;
    w->kv[w->n_kv].value = *value;
    w->n_kv++;
    return 0;
}

static int writer_put_scalar(struct nvl_gguf_writer *w, const char *key, uint32_t type,
                             const void *v)
{
    struct byte_buf b = {0};
    int ret = buf_put(&b, v, nvl_gguf_type_size(type));

    if (ret) {
        free(b.p);
        return ret;
    }
    return writer_put(w, key, type, &b);
}

#define WRITER_SETTER(suffix, ctype, gtype)                                                        \
    int nvl_gguf_writer_set_##suffix(struct nvl_gguf_writer *w, const char *key, ctype v)          \
    {                                                                                              \
        return writer_put_scalar(w, key, gtype, &v);                                               \
    }

WRITER_SETTER(u8, uint8_t, NVL_GGUF_TYPE_UINT8)
WRITER_SETTER(i8, int8_t, NVL_GGUF_TYPE_INT8)
WRITER_SETTER(u16, uint16_t, NVL_GGUF_TYPE_UINT16)
WRITER_SETTER(i16, int16_t, NVL_GGUF_TYPE_INT16)
WRITER_SETTER(u32, uint32_t, NVL_GGUF_TYPE_UINT32)
WRITER_SETTER(i32, int32_t, NVL_GGUF_TYPE_INT32)
WRITER_SETTER(u64, uint64_t, NVL_GGUF_TYPE_UINT64)
WRITER_SETTER(i64, int64_t, NVL_GGUF_TYPE_INT64)
WRITER_SETTER(f32, float, NVL_GGUF_TYPE_FLOAT32)
WRITER_SETTER(f64, double, NVL_GGUF_TYPE_FLOAT64)

int nvl_gguf_writer_set_bool(struct nvl_gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;

    return writer_put_scalar(w, key, NVL_GGUF_TYPE_BOOL, &b);
}

int nvl_gguf_writer_set_strn(struct nvl_gguf_writer *w, const char *key, const char *s,
                             uint64_t len)
{
    struct byte_buf b = {0};
    int ret;

    if (!s && len)
        return -EINVAL;
    ret = buf_put_str(&b, s, len);
    if (ret) {
        free(b.p);
        return ret;
    }
    return writer_put(w, key, NVL_GGUF_TYPE_STRING, &b);
}

int nvl_gguf_writer_set_str(struct nvl_gguf_writer *w, const char *key, const char *s)
{
    if (!s)
        return -EINVAL;
    return nvl_gguf_writer_set_strn(w, key, s, strlen(s));
}

int nvl_gguf_writer_set_arr(struct nvl_gguf_writer *w, const char *key,
                            enum nvl_gguf_type elem_type, const void *data, uint64_t count)
{
    const size_t size = nvl_gguf_type_size(elem_type);
    struct byte_buf b = {0};
    int ret;

    if (!size || (count && !data) || count > SIZE_MAX / size)
        return -EINVAL;
    ret = buf_put_u32(&b, elem_type);
    if (!ret)
        ret = buf_put_u64(&b, count);
    if (!ret && elem_type == NVL_GGUF_TYPE_BOOL) {
        /* A C bool is one byte, but normalize anything that is not 0 or 1. */
        for (uint64_t i = 0; i < count && !ret; i++) {
            uint8_t v = ((const uint8_t *)data)[i] != 0;

            ret = buf_put(&b, &v, 1);
        }
    } else if (!ret) {
        ret = buf_put(&b, data, (size_t)(count * size));
    }
    if (ret) {
        free(b.p);
        return ret;
    }
    return writer_put(w, key, NVL_GGUF_TYPE_ARRAY, &b);
}

int nvl_gguf_writer_set_arr_str(struct nvl_gguf_writer *w, const char *key, const char *const *strs,
                                const uint64_t *lens, uint64_t count)
{
    struct byte_buf b = {0};
    int ret;

    if (count && !strs)
        return -EINVAL;
    ret = buf_put_u32(&b, NVL_GGUF_TYPE_STRING);
    if (!ret)
        ret = buf_put_u64(&b, count);
    for (uint64_t i = 0; i < count && !ret; i++) {
        if (!strs[i] && (!lens || lens[i])) {
            ret = -EINVAL;
            break;
        }
        ret = buf_put_str(&b, strs[i], lens ? lens[i] : strlen(strs[i]));
    }
    if (ret) {
        free(b.p);
        return ret;
    }
    return writer_put(w, key, NVL_GGUF_TYPE_ARRAY, &b);
}

int nvl_gguf_writer_set_kv_from(struct nvl_gguf_writer *w, const struct nvl_gguf *g, int64_t i)
{
    const char *key = nvl_gguf_kv_key(g, i);
    struct nvl_gguf_value v;
    struct byte_buf b = {0};
    int ret;

    if (!key || nvl_gguf_kv_value(g, i, &v))
        return -EINVAL;
    if (!strcmp(key, "general.alignment")) {
        /* The reader accepts any integer type here; we always write UINT32. */
        int64_t a;

        if (nvl_gguf_get_int(g, key, &a) || a <= 0 || a > (int64_t)NVL_GGUF_MAX_ALIGNMENT)
            return -EINVAL;
        return nvl_gguf_writer_set_alignment(w, (uint32_t)a);
    }
    switch (v.type) {
    case NVL_GGUF_TYPE_STRING:
        return nvl_gguf_writer_set_strn(w, key, v.str.data, v.str.len);
    case NVL_GGUF_TYPE_ARRAY:
        if (v.arr.type != NVL_GGUF_TYPE_STRING)
            return nvl_gguf_writer_set_arr(w, key, v.arr.type, v.arr.data, v.arr.count);
        ret = buf_put_u32(&b, NVL_GGUF_TYPE_STRING);
        if (!ret)
            ret = buf_put_u64(&b, v.arr.count);
        for (uint64_t j = 0; j < v.arr.count && !ret; j++) {
            const char *s;
            uint64_t len;

            ret = nvl_gguf_arr_str(g, i, j, &s, &len);
            if (!ret)
                ret = buf_put_str(&b, s, len);
        }
        if (ret) {
            free(b.p);
            return ret;
        }
        return writer_put(w, key, NVL_GGUF_TYPE_ARRAY, &b);
    case NVL_GGUF_TYPE_BOOL:
        return nvl_gguf_writer_set_bool(w, key, v.b);
    default:
        /* Every other scalar member starts at the union's first byte. */
        return writer_put_scalar(w, key, v.type, &v.u64);
    }
}

int nvl_gguf_writer_remove_key(struct nvl_gguf_writer *w, const char *key)
{
    int64_t i = key ? writer_find_key(w, key) : -1;

    if (i < 0)
        return -ENOENT;
    free(w->kv[i].key);
    free(w->kv[i].value.p);
    memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - (uint64_t)i - 1) * sizeof(*w->kv));
    w->n_kv--;
    if (!strcmp(key, "general.alignment"))
        w->alignment = NVL_GGUF_DEFAULT_ALIGNMENT;
    return 0;
}

/* ---- tensors ------------------------------------------------------------------------------ */

static int writer_add(struct nvl_gguf_writer *w, const char *name, enum nvl_ggml_type type,
                      uint32_t n_dims, const uint64_t *ne, const void *data, nvl_gguf_tensor_fn fn,
                      void *ctx)
{
    const struct nvl_ggml_type_traits *tr = nvl_ggml_type_traits(type);
    size_t len = name ? strlen(name) : 0;
    struct writer_tensor *t;
    uint64_t n_el = 1;

    if (!len || len > NVL_GGUF_MAX_NAME_LEN || !tr || n_dims < 1 || n_dims > NVL_GGUF_MAX_DIMS ||
        !ne || ne[0] % tr->block_size)
        return -EINVAL;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] > (uint64_t)INT64_MAX || (ne[d] && n_el > (uint64_t)INT64_MAX / ne[d]))
            return -EOVERFLOW;
        n_el *= ne[d];
    }
    if (n_el / tr->block_size > (uint64_t)INT64_MAX / tr->type_size)
        return -EOVERFLOW;
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name))
            return -EEXIST;
    if (w->n_tensors == w->cap_tensors) {
        uint64_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        struct writer_tensor *p = realloc(w->tensors, cap * sizeof(*p));

        if (!p)
            return -ENOMEM;
        w->tensors = p;
        w->cap_tensors = cap;
    }
    t = &w->tensors[w->n_tensors++];
    memset(t, 0, sizeof(*t));
    memcpy(t->name, name, len + 1);
    t->info.type = type;
    t->info.n_dims = n_dims;
    for (uint32_t d = 0; d < NVL_GGUF_MAX_DIMS; d++)
        t->info.ne[d] = d < n_dims ? ne[d] : 1;
    t->info.size = n_el / tr->block_size * tr->type_size;
    t->data = data;
    t->fn = fn;
    t->ctx = ctx;
    return 0;
}

int nvl_gguf_writer_add_tensor(struct nvl_gguf_writer *w, const char *name, enum nvl_ggml_type type,
                               uint32_t n_dims, const uint64_t *ne, const void *data)
{
    if (!data)
        return -EINVAL;
    return writer_add(w, name, type, n_dims, ne, data, NULL, NULL);
}

int nvl_gguf_writer_add_tensor_fn(struct nvl_gguf_writer *w, const char *name,
                                  enum nvl_ggml_type type, uint32_t n_dims, const uint64_t *ne,
                                  nvl_gguf_tensor_fn fn, void *ctx)
{
    if (!fn)
        return -EINVAL;
    return writer_add(w, name, type, n_dims, ne, NULL, fn, ctx);
}

/* The first offset in the data section at or after end where a tensor of the given type may
 * start: a multiple of general.alignment (the spec's rule) whose file offset is also aligned for
 * the type's elements, which the reader demands when general.alignment is smaller than that.
 * The data section starts at a multiple of general.alignment, so padding the file offset to the
 * larger of the two powers of two keeps the section offset a multiple of both. */
static uint64_t tensor_start(const struct nvl_gguf_writer *w, uint64_t data_offset, uint64_t end,
                             enum nvl_ggml_type type)
{
    uint64_t a = nvl__gguf_type_alignment(type);

    if (a <= w->alignment)
        return nvl__gguf_align_up(end, w->alignment);
    return nvl__gguf_align_up(data_offset + end, a) - data_offset;
}

/* Assigns each tensor its offset; returns the size of the data section (padded to the
 * alignment at the end too). The pointers inside infos are refreshed here because the array may
 * have moved since. */
static uint64_t layout(struct nvl_gguf_writer *w)
{
    uint64_t data_offset = nvl_gguf_writer_data_offset(w);
    uint64_t end = 0;

    for (uint64_t i = 0; i < w->n_tensors; i++) {
        struct writer_tensor *t = &w->tensors[i];

        t->info.name = t->name;
        t->info.offset = tensor_start(w, data_offset, end, t->info.type);
        end = t->info.offset + t->info.size;
    }
    return nvl__gguf_align_up(end, w->alignment);
}

static uint64_t header_size(const struct nvl_gguf_writer *w)
{
    uint64_t n = 4 + 4 + 8 + 8;

    for (uint64_t i = 0; i < w->n_kv; i++)
        n += 8 + strlen(w->kv[i].key) + 4 + w->kv[i].value.len;
    for (uint64_t i = 0; i < w->n_tensors; i++)
        n += 8 + strlen(w->tensors[i].name) + 4 + 8ull * w->tensors[i].info.n_dims + 4 + 8;
    return n;
}

uint64_t nvl_gguf_writer_data_offset(const struct nvl_gguf_writer *w)
{
    return nvl__gguf_align_up(header_size(w), w->alignment);
}

uint64_t nvl_gguf_writer_file_size(const struct nvl_gguf_writer *w)
{
    uint64_t data_offset = nvl_gguf_writer_data_offset(w);
    uint64_t end = 0;

    for (uint64_t i = 0; i < w->n_tensors; i++)
        end = tensor_start(w, data_offset, end, w->tensors[i].info.type) + w->tensors[i].info.size;
    return data_offset + nvl__gguf_align_up(end, w->alignment);
}

/* ---- output ------------------------------------------------------------------------------- */

static int out_flush(struct out *o)
{
    size_t done = 0;

    while (done < o->len) {
        ssize_t n = write(o->fd, o->buf + done, o->len - done);

        if (n < 0) {
            int ret = -errno;

            if (ret == -EINTR)
                continue;
            return nvl__gguf_fail(o->err, o->err_len, ret, "write at byte %" PRIu64 ": %s",
                                  o->written - o->len + done, strerror(-ret));
        }
        done += (size_t)n;
    }
    o->len = 0;
    return 0;
}

static int out_write(struct out *o, const void *data, size_t len)
{
    const uint8_t *p = data;

    while (len) {
        size_t n = WRITER_BUF_SIZE - o->len;

        if (n > len)
            n = len;
        memcpy(o->buf + o->len, p, n);
        o->len += n;
        o->written += n;
        p += n;
        len -= n;
        if (o->len == WRITER_BUF_SIZE) {
            int ret = out_flush(o);

            if (ret)
                return ret;
        }
    }
    return 0;
}

/* Writes zeros up to byte offset to (at or past o->written). */
static int out_pad_to(struct out *o, uint64_t to)
{
    static const uint8_t zeros[256];
    uint64_t pad = to - o->written;

    while (pad) {
        size_t n = pad > sizeof(zeros) ? sizeof(zeros) : (size_t)pad;
        int ret = out_write(o, zeros, n);

        if (ret)
            return ret;
        pad -= n;
    }
    return 0;
}

static int out_pad(struct out *o, uint64_t alignment)
{
    return out_pad_to(o, nvl__gguf_align_up(o->written, alignment));
}

int nvl_gguf_sink_write(struct nvl_gguf_sink *sink, const void *data, size_t len)
{
    if (len > sink->remaining)
        return -EOVERFLOW;
    sink->remaining -= len;
    return out_write(sink->out, data, len);
}

static int write_header(struct nvl_gguf_writer *w, struct out *o)
{
    struct byte_buf b = {0};
    uint32_t magic = NVL_GGUF_MAGIC;
    int ret;

    ret = buf_put_u32(&b, magic);
    if (!ret)
        ret = buf_put_u32(&b, w->version);
    if (!ret)
        ret = buf_put_u64(&b, w->n_tensors);
    if (!ret)
        ret = buf_put_u64(&b, w->n_kv);
    for (uint64_t i = 0; i < w->n_kv && !ret; i++) {
        ret = buf_put_str(&b, w->kv[i].key, strlen(w->kv[i].key));
        if (!ret)
            ret = buf_put_u32(&b, w->kv[i].type);
        if (!ret)
            ret = buf_put(&b, w->kv[i].value.p, w->kv[i].value.len);
    }
    for (uint64_t i = 0; i < w->n_tensors && !ret; i++) {
        const struct nvl_gguf_tensor *t = &w->tensors[i].info;

        ret = buf_put_str(&b, t->name, strlen(t->name));
        if (!ret)
            ret = buf_put_u32(&b, t->n_dims);
        if (!ret)
            ret = buf_put(&b, t->ne, 8ull * t->n_dims);
        if (!ret)
            ret = buf_put_u32(&b, t->type);
        if (!ret)
            ret = buf_put_u64(&b, t->offset);
    }
    if (ret)
        ret = nvl__gguf_fail(o->err, o->err_len, ret, "out of memory building the header");
    if (!ret)
        ret = out_write(o, b.p, b.len);
    if (!ret)
        ret = out_pad(o, w->alignment);
    free(b.p);
    return ret;
}

int nvl_gguf_writer_write_fd(struct nvl_gguf_writer *w, int fd, char *err, size_t err_len)
{
    struct out o = {.fd = fd, .err = err, .err_len = err_len};
    uint64_t data_start;
    int ret;

    layout(w);
    o.buf = malloc(WRITER_BUF_SIZE);
    if (!o.buf)
        return nvl__gguf_fail(err, err_len, -ENOMEM, "out of memory");
    ret = write_header(w, &o);
    data_start = o.written;
    for (uint64_t i = 0; i < w->n_tensors && !ret; i++) {
        struct writer_tensor *t = &w->tensors[i];

        ret = out_pad_to(&o, data_start + t->info.offset);
        if (ret)
            break;
        if (t->data) {
            ret = out_write(&o, t->data, (size_t)t->info.size);
        } else {
            struct nvl_gguf_sink sink = {.out = &o, .remaining = t->info.size};

            ret = t->fn(t->ctx, &t->info, &sink);
            if (ret)
                nvl__gguf_fail(err, err_len, ret, "tensor %" PRIu64 " '%s': producer failed: %s", i,
                               t->name, strerror(ret < 0 ? -ret : ret));
            else if (sink.remaining)
                ret = nvl__gguf_fail(err, err_len, -EIO,
                                     "tensor %" PRIu64 " '%s': producer wrote %" PRIu64
                                     " of %" PRIu64 " bytes",
                                     i, t->name, t->info.size - sink.remaining, t->info.size);
        }
        if (!ret && o.written - data_start != t->info.offset + t->info.size)
            ret = nvl__gguf_fail(err, err_len, -EIO, "tensor '%s': internal layout mismatch",
                                 t->name);
    }
    if (!ret)
        ret = out_pad(&o, w->alignment);
    if (!ret)
        ret = out_flush(&o);
    free(o.buf);
    return ret;
}

int nvl_gguf_writer_write_file(struct nvl_gguf_writer *w, const char *path, char *err,
                               size_t err_len)
{
    int fd, ret;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ret = -errno;
        return nvl__gguf_fail(err, err_len, ret, "%s: %s", path, strerror(-ret));
    }
    ret = nvl_gguf_writer_write_fd(w, fd, err, err_len);
    if (close(fd) && !ret) {
        ret = -errno;
        nvl__gguf_fail(err, err_len, ret, "%s: close: %s", path, strerror(-ret));
    }
    if (ret)
        unlink(path);
    return ret;
}
