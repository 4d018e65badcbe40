/* GGUF reader and writer.
 *
 * Reader: a GGUF v2/v3 file is mapped read-only (or parsed from a caller's buffer) and validated
 * completely at open: every count, length, offset, dimension and tensor extent is bounds-checked
 * against the bytes that exist, and a malformed file is refused with a message that names the
 * field and its byte offset. After a successful open every accessor below is safe to use without
 * further checks. The handle is immutable, so concurrent readers need no locking.
 *
 * Writer: collects metadata and tensor descriptions, then streams the file out in one pass;
 * tensor bytes come from caller memory or from a callback, so a model need not fit in memory.
 *
 * Format reference: ggml's docs/gguf.md. All integers are little-endian; big-endian files are
 * refused. */
#ifndef NVL_MODEL_GGUF_H
#define NVL_MODEL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvl_model/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NVL_GGUF_MAGIC             0x46554747u /* "GGUF" read as a little-endian uint32 */
#define NVL_GGUF_VERSION           3
#define NVL_GGUF_DEFAULT_ALIGNMENT 32
/* Largest general.alignment accepted (a power of two). */
#define NVL_GGUF_MAX_ALIGNMENT (1u << 24)
/* ggml's GGML_MAX_DIMS and GGML_MAX_NAME (a name is at most 63 bytes). */
#define NVL_GGUF_MAX_DIMS     4
#define NVL_GGUF_MAX_NAME_LEN 63

/* Metadata value types, numbered as in the file. */
enum nvl_gguf_type {
    NVL_GGUF_TYPE_UINT8 = 0,
    NVL_GGUF_TYPE_INT8 = 1,
    NVL_GGUF_TYPE_UINT16 = 2,
    NVL_GGUF_TYPE_INT16 = 3,
    NVL_GGUF_TYPE_UINT32 = 4,
    NVL_GGUF_TYPE_INT32 = 5,
    NVL_GGUF_TYPE_FLOAT32 = 6,
    NVL_GGUF_TYPE_BOOL = 7,
    NVL_GGUF_TYPE_STRING = 8,
    NVL_GGUF_TYPE_ARRAY = 9,
    NVL_GGUF_TYPE_UINT64 = 10,
    NVL_GGUF_TYPE_INT64 = 11,
    NVL_GGUF_TYPE_FLOAT64 = 12,
    NVL_GGUF_TYPE_COUNT = 13,
};

/* "uint8", "string", "array", ... or "unknown". */
const char *nvl_gguf_type_name(uint32_t type);
/* Bytes of one value of a fixed-size type; 0 for STRING, ARRAY and unknown types. */
size_t nvl_gguf_type_size(uint32_t type);

/* ------------------------------------------------------------------------------------------ */
/* Reader */

struct nvl_gguf;

/* One metadata value. Scalars are copied out. A scalar STRING points to a NUL-terminated copy
 * owned by the handle (len excludes the NUL; the string may itself contain NUL bytes). For an
 * ARRAY, arr.data points to `count` native-endian, naturally aligned elements of arr.type owned by
 * the handle, or is NULL for arrays of strings (read those with nvl_gguf_arr_str()). Arrays of
 * arrays are refused at open. */
struct nvl_gguf_value {
    enum nvl_gguf_type type;
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        bool b;
        uint64_t u64;
        int64_t i64;
        double f64;
        struct {
            const char *data;
            uint64_t len;
        } str;
        struct {
            enum nvl_gguf_type type; /* element type */
            uint64_t count;
            const void *data;
        } arr;
    };
};

/* One tensor-info record. offset is relative to the start of the data section and a multiple of
 * the alignment; size is the tensor's byte size computed from type and shape. */
struct nvl_gguf_tensor {
    const char *name;        /* NUL-terminated, owned by the handle */
    enum nvl_ggml_type type; /* a known ggml type (it may still be one we cannot dequantize) */
    uint32_t n_dims;         /* 1..4 as stored; ne[n_dims..3] are 1 */
    uint64_t ne[NVL_GGUF_MAX_DIMS]; /* elements per dimension, ne[0] innermost (row length) */
    uint64_t offset;                /* bytes from nvl_gguf_data_offset() */
    uint64_t size;                  /* bytes */
};

/* Maps `path` read-only and validates it. Returns 0, or -errno with a one-line reason in err
 * (when err is NULL the reason is logged instead). */
int nvl_gguf_open(const char *path, struct nvl_gguf **out, char *err, size_t err_len);

/* Validates a GGUF held in memory. The buffer is not copied and must outlive the handle. */
int nvl_gguf_open_memory(const void *data, size_t len, struct nvl_gguf **out, char *err,
                         size_t err_len);

/* Validates a GGUF whose first `len` bytes are in memory and whose full size is file_size (for
 * metadata read from a drive before the tensor data). Header, metadata and tensor infos must lie
 * in the buffer; tensor extents are checked against file_size. nvl_gguf_tensor_data() returns
 * NULL for a tensor that is not wholly inside the buffer. */
int nvl_gguf_open_prefix(const void *data, size_t len, uint64_t file_size, struct nvl_gguf **out,
                         char *err, size_t err_len);

/* Unmaps and frees everything; NULL is a no-op. Pointers obtained from the handle die with it. */
void nvl_gguf_close(struct nvl_gguf *g);

uint32_t nvl_gguf_version(const struct nvl_gguf *g);
uint64_t nvl_gguf_file_size(const struct nvl_gguf *g);
/* general.alignment, or 32 when absent. */
uint32_t nvl_gguf_alignment(const struct nvl_gguf *g);
/* File offset of the tensor data section (a multiple of the alignment). */
uint64_t nvl_gguf_data_offset(const struct nvl_gguf *g);
/* The mapping (or the caller's buffer) and how many bytes of it are readable. */
const void *nvl_gguf_base(const struct nvl_gguf *g);
size_t nvl_gguf_mapped_size(const struct nvl_gguf *g);

/* Metadata by index (0 .. kv_count-1, in file order). */
uint64_t nvl_gguf_kv_count(const struct nvl_gguf *g);
/* Index of key, or -1 when absent. */
int64_t nvl_gguf_find_key(const struct nvl_gguf *g, const char *key);
/* NUL-terminated key, or NULL for a bad index. */
const char *nvl_gguf_kv_key(const struct nvl_gguf *g, int64_t i);
/* Value type, or NVL_GGUF_TYPE_COUNT for a bad index. */
enum nvl_gguf_type nvl_gguf_kv_type(const struct nvl_gguf *g, int64_t i);
/* File offset of the value (after the key and type), for messages. */
uint64_t nvl_gguf_kv_offset(const struct nvl_gguf *g, int64_t i);
/* Fills *v. Returns 0 or -EINVAL for a bad index. */
int nvl_gguf_kv_value(const struct nvl_gguf *g, int64_t i, struct nvl_gguf_value *v);
/* String i of a string array (not NUL-terminated, points into the file). Returns 0, or -EINVAL
 * when kv i is not an array of strings or i is out of range. */
int nvl_gguf_arr_str(const struct nvl_gguf *g, int64_t kv, uint64_t i, const char **s,
                     uint64_t *len);
/* Element i of array kv as a scalar value: v->type is the element type; a string element is
 * as nvl_gguf_arr_str() gives it. Returns 0, or -EINVAL when kv is not an array or i is out of
 * range. */
int nvl_gguf_arr_value(const struct nvl_gguf *g, int64_t kv, uint64_t i, struct nvl_gguf_value *v);
/* Writes a number or bool value as text that reads back as the same value: integers in decimal,
 * bools as true/false, floats as %g with the fewest significant digits, at least 6, that
 * strtof/strtod read back exactly (0.1f is "0.1", 10000 is "10000"). Returns the length as
 * snprintf does (truncated when it is >= len), or -EINVAL for a string, array or unknown type. */
int nvl_gguf_value_format(const struct nvl_gguf_value *v, char *buf, size_t len);

/* Typed getters by key. Each returns 0, -ENOENT when the key is absent, or -EINVAL when the value
 * has another type; *out is written only on success. */
int nvl_gguf_get_u8(const struct nvl_gguf *g, const char *key, uint8_t *out);
int nvl_gguf_get_i8(const struct nvl_gguf *g, const char *key, int8_t *out);
int nvl_gguf_get_u16(const struct nvl_gguf *g, const char *key, uint16_t *out);
int nvl_gguf_get_i16(const struct nvl_gguf *g, const char *key, int16_t *out);
int nvl_gguf_get_u32(const struct nvl_gguf *g, const char *key, uint32_t *out);
int nvl_gguf_get_i32(const struct nvl_gguf *g, const char *key, int32_t *out);
int nvl_gguf_get_u64(const struct nvl_gguf *g, const char *key, uint64_t *out);
int nvl_gguf_get_i64(const struct nvl_gguf *g, const char *key, int64_t *out);
int nvl_gguf_get_f32(const struct nvl_gguf *g, const char *key, float *out);
int nvl_gguf_get_f64(const struct nvl_gguf *g, const char *key, double *out);
int nvl_gguf_get_bool(const struct nvl_gguf *g, const char *key, bool *out);
/* Scalar string: NUL-terminated; len may be NULL. */
int nvl_gguf_get_str(const struct nvl_gguf *g, const char *key, const char **s, uint64_t *len);
/* Any integer type (converters disagree on e.g. llama.context_length being u32 or u64).
 * -ERANGE when the value does not fit in int64_t. */
int nvl_gguf_get_int(const struct nvl_gguf *g, const char *key, int64_t *out);
/* FLOAT32 or FLOAT64. */
int nvl_gguf_get_float(const struct nvl_gguf *g, const char *key, double *out);
/* An array: element type, count, and elements (NULL for string arrays; see nvl_gguf_value). */
int nvl_gguf_get_arr(const struct nvl_gguf *g, const char *key, enum nvl_gguf_type *elem_type,
                     uint64_t *count, const void **data);

/* Tensors, in file order. */
uint64_t nvl_gguf_tensor_count(const struct nvl_gguf *g);
/* Tensor i, or NULL when out of range. */
const struct nvl_gguf_tensor *nvl_gguf_tensor(const struct nvl_gguf *g, uint64_t i);
/* Index of the tensor named `name`, or -1. */
int64_t nvl_gguf_find_tensor(const struct nvl_gguf *g, const char *name);
/* The tensor by name, or NULL. */
const struct nvl_gguf_tensor *nvl_gguf_get_tensor(const struct nvl_gguf *g, const char *name);
/* File offset of the tensor's first byte. */
uint64_t nvl_gguf_tensor_file_offset(const struct nvl_gguf *g, const struct nvl_gguf_tensor *t);
/* Pointer to the tensor's bytes in the mapping, or NULL when they are not in memory (see
 * nvl_gguf_open_prefix). The open checked that the data's file offset is a multiple of what its
 * type needs (2 bytes for halves and blocks, 4 for f32, 8 for 64-bit types), so the pointer is
 * suitably aligned for a mapped file, and for a caller's buffer that is at least 8-aligned. */
const void *nvl_gguf_tensor_data(const struct nvl_gguf *g, const struct nvl_gguf_tensor *t);
/* Number of elements (product of ne). */
uint64_t nvl_gguf_tensor_nelements(const struct nvl_gguf_tensor *t);

/* ------------------------------------------------------------------------------------------ */
/* Writer */

struct nvl_gguf_writer;
/* Where a tensor callback writes its bytes. */
struct nvl_gguf_sink;

/* Appends len bytes to the tensor being written. Returns 0 or -errno; writing more than the
 * tensor's size is -EOVERFLOW. */
int nvl_gguf_sink_write(struct nvl_gguf_sink *sink, const void *data, size_t len);

/* Produces the bytes of tensor `t` (exactly t->size of them, in any number of sink writes).
 * Returns 0 or -errno, which aborts the file. */
typedef int (*nvl_gguf_tensor_fn)(void *ctx, const struct nvl_gguf_tensor *t,
                                  struct nvl_gguf_sink *sink);

int nvl_gguf_writer_create(struct nvl_gguf_writer **out);
void nvl_gguf_writer_destroy(struct nvl_gguf_writer *w);

/* GGUF version to write: 2 or 3 (default 3; the layouts are identical). */
int nvl_gguf_writer_set_version(struct nvl_gguf_writer *w, uint32_t version);
/* Tensor data alignment: a power of two up to NVL_GGUF_MAX_ALIGNMENT. Also sets the
 * general.alignment key (UINT32). */
int nvl_gguf_writer_set_alignment(struct nvl_gguf_writer *w, uint32_t alignment);

/* Metadata. Setting a key that exists replaces its value in place (its position is kept). Keys
 * are non-empty C strings. Arrays and strings are copied. Return 0 or -errno. general.alignment may
 * only be set as a valid UINT32 alignment, and then sets the alignment (as set_alignment). */
int nvl_gguf_writer_set_u8(struct nvl_gguf_writer *w, const char *key, uint8_t v);
int nvl_gguf_writer_set_i8(struct nvl_gguf_writer *w, const char *key, int8_t v);
int nvl_gguf_writer_set_u16(struct nvl_gguf_writer *w, const char *key, uint16_t v);
int nvl_gguf_writer_set_i16(struct nvl_gguf_writer *w, const char *key, int16_t v);
int nvl_gguf_writer_set_u32(struct nvl_gguf_writer *w, const char *key, uint32_t v);
int nvl_gguf_writer_set_i32(struct nvl_gguf_writer *w, const char *key, int32_t v);
int nvl_gguf_writer_set_u64(struct nvl_gguf_writer *w, const char *key, uint64_t v);
int nvl_gguf_writer_set_i64(struct nvl_gguf_writer *w, const char *key, int64_t v);
int nvl_gguf_writer_set_f32(struct nvl_gguf_writer *w, const char *key, float v);
int nvl_gguf_writer_set_f64(struct nvl_gguf_writer *w, const char *key, double v);
int nvl_gguf_writer_set_bool(struct nvl_gguf_writer *w, const char *key, bool v);
int nvl_gguf_writer_set_str(struct nvl_gguf_writer *w, const char *key, const char *s);
int nvl_gguf_writer_set_strn(struct nvl_gguf_writer *w, const char *key, const char *s,
                             uint64_t len);
/* Array of a fixed-size element type; data holds count native-endian elements. */
int nvl_gguf_writer_set_arr(struct nvl_gguf_writer *w, const char *key,
                            enum nvl_gguf_type elem_type, const void *data, uint64_t count);
/* Array of strings; lens may be NULL (then each string is NUL-terminated). */
int nvl_gguf_writer_set_arr_str(struct nvl_gguf_writer *w, const char *key, const char *const *strs,
                                const uint64_t *lens, uint64_t count);
/* Copies key/value i of a reader (any type, arrays included). */
int nvl_gguf_writer_set_kv_from(struct nvl_gguf_writer *w, const struct nvl_gguf *g, int64_t i);
/* Removes a key; -ENOENT when absent. */
int nvl_gguf_writer_remove_key(struct nvl_gguf_writer *w, const char *key);

/* Adds a tensor whose bytes are at data (not copied: it must stay valid until the file is
 * written). ne has n_dims (1..4) entries; ne[0] must be a multiple of the type's block size.
 * Tensors are written in the order they are added, each at the next offset that is a multiple of
 * the alignment and puts the data at a file offset aligned for its type's elements (which only
 * adds padding when the alignment is below 8). */
int nvl_gguf_writer_add_tensor(struct nvl_gguf_writer *w, const char *name, enum nvl_ggml_type type,
                               uint32_t n_dims, const uint64_t *ne, const void *data);
/* As above, with the bytes produced by fn(ctx, ...) when the file is written. */
int nvl_gguf_writer_add_tensor_fn(struct nvl_gguf_writer *w, const char *name,
                                  enum nvl_ggml_type type, uint32_t n_dims, const uint64_t *ne,
                                  nvl_gguf_tensor_fn fn, void *ctx);

/* Bytes of header + metadata + tensor infos + padding, i.e. the data-section offset the file
 * will have with the keys and tensors added so far. */
uint64_t nvl_gguf_writer_data_offset(const struct nvl_gguf_writer *w);
/* Total file size with the keys and tensors added so far. */
uint64_t nvl_gguf_writer_file_size(const struct nvl_gguf_writer *w);

/* Writes the file to `path` (created or truncated; removed again on failure). Returns 0 or
 * -errno, with the reason in err (logged when err is NULL). */
int nvl_gguf_writer_write_file(struct nvl_gguf_writer *w, const char *path, char *err,
                               size_t err_len);
/* Writes the file to an open descriptor at its current position (a pipe works). */
int nvl_gguf_writer_write_fd(struct nvl_gguf_writer *w, int fd, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
