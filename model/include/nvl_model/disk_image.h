/* The on-drive model image: a header at byte 0 of an NVMe namespace, an extent table after it,
 * and a packed GGUF (pack.h) at byte NVL_DISK_GGUF_OFFSET. `nvload-setup write` lays it down;
 * `nvinfer --nvme` runs from it with no file at all. docs/disk-layout.md describes it byte by
 * byte.
 *
 *   byte 0            struct nvl_disk_header (4096 bytes)
 *   byte 4096         extent table: n_extents x struct nvl_disk_extent (32 bytes each)
 *   byte 1 MiB        the GGUF file, gguf_bytes long, packed
 *
 * The extent table covers the GGUF without gaps, in order: the metadata (GGUF header, key/value
 * pairs and tensor infos, up to the data section), the global tensors, then one extent per layer.
 * Each carries the CRC32C (crc32c.h) of its bytes, so every byte of the GGUF is checked.
 *
 * All integers are little-endian; the structures below are the on-drive bytes (fixed-width
 * fields, no implicit padding: static_asserts pin every offset), and this header refuses to
 * compile on a big-endian target rather than read them wrongly.
 *
 * An image is written in three steps so that an interrupted write is never taken for a good one:
 * the header with NVL_DISK_FLAG_COMPLETE clear, then the GGUF (read back and checked), then the
 * header again with the flag set and the extents' CRCs. */
#ifndef NVL_MODEL_DISK_IMAGE_H
#define NVL_MODEL_DISK_IMAGE_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvl_model/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the on-drive image layout is little-endian; this target is not"
#endif

#define NVL_DISK_MAGIC        "NVLOADIM" /* 8 bytes, no NUL */
#define NVL_DISK_VERSION      1u
#define NVL_DISK_HEADER_BYTES 4096u
/* Where the extent table starts, and where the GGUF starts: 1 MiB keeps it aligned for every LBA
 * size and leaves room for NVL_DISK_MAX_EXTENTS entries. */
#define NVL_DISK_TABLE_OFFSET 4096u
#define NVL_DISK_GGUF_OFFSET  (1u << 20)
#define NVL_DISK_MAX_EXTENTS  ((NVL_DISK_GGUF_OFFSET - NVL_DISK_TABLE_OFFSET) / 32u)
#define NVL_DISK_NAME_LEN     256u
#define NVL_DISK_ARCH_LEN     32u
#define NVL_DISK_WRITER_LEN   32u

/* header.flags */
#define NVL_DISK_FLAG_COMPLETE 0x1u /* the GGUF was written and read back; CRCs are valid */

enum nvl_disk_extent_kind {
    NVL_DISK_EXTENT_META = 1,    /* GGUF header, metadata and tensor infos */
    NVL_DISK_EXTENT_GLOBALS = 2, /* tensors of no layer (token_embd, output, ...) */
    NVL_DISK_EXTENT_LAYER = 3,   /* all tensors of one layer (blk.N.*) */
};

#define NVL_DISK_NO_LAYER 0xffffffffu

/* One entry of the extent table. */
struct nvl_disk_extent {
    uint64_t offset;   /* first byte, counted from the GGUF's first byte */
    uint64_t bytes;    /* length */
    uint32_t crc32c;   /* CRC32C of the bytes; 0 while the image is incomplete */
    uint32_t kind;     /* enum nvl_disk_extent_kind */
    uint32_t layer;    /* N of blk.N for LAYER, NVL_DISK_NO_LAYER otherwise */
    uint32_t reserved; /* 0 */
};

/* The header at byte 0 of the namespace. */
struct nvl_disk_header {
    uint8_t magic[8];                   /* NVL_DISK_MAGIC */
    uint32_t version;                   /* NVL_DISK_VERSION; a newer one is refused */
    uint32_t header_bytes;              /* sizeof(struct nvl_disk_header) */
    uint32_t flags;                     /* NVL_DISK_FLAG_* */
    uint32_t lba_size;                  /* LBA size of the namespace it was written to */
    uint64_t gguf_offset;               /* byte offset of the GGUF on the namespace */
    uint64_t gguf_bytes;                /* its length */
    uint64_t table_offset;              /* byte offset of the extent table on the namespace */
    uint32_t n_extents;                 /* entries in the table */
    uint32_t extent_bytes;              /* sizeof(struct nvl_disk_extent) */
    uint32_t table_crc32c;              /* CRC32C of the n_extents entries */
    uint32_t n_layers;                  /* extents of kind LAYER */
    uint64_t created_unix;              /* when the write started, seconds since 1970 (UTC) */
    uint64_t gguf_data_offset;          /* the GGUF's tensor data section, from its first byte */
    uint32_t gguf_alignment;            /* the GGUF's general.alignment */
    uint32_t reserved0;                 /* 0 */
    char model_name[NVL_DISK_NAME_LEN]; /* general.name (or the file name), NUL-padded */
    char arch[NVL_DISK_ARCH_LEN];       /* general.architecture, NUL-padded */
    char writer[NVL_DISK_WRITER_LEN];   /* what wrote it, e.g. "nvload-setup 0.1.0" */
    uint8_t reserved1[3684];            /* 0 */
    uint32_t header_crc32c;             /* CRC32C of bytes [0, 4092) of this header */
};

static_assert(sizeof(struct nvl_disk_extent) == 32, "disk extent");
static_assert(offsetof(struct nvl_disk_extent, crc32c) == 16, "disk extent crc32c");
static_assert(offsetof(struct nvl_disk_extent, layer) == 24, "disk extent layer");
static_assert(sizeof(struct nvl_disk_header) == NVL_DISK_HEADER_BYTES, "disk header");
static_assert(offsetof(struct nvl_disk_header, version) == 8, "disk header version");
static_assert(offsetof(struct nvl_disk_header, flags) == 16, "disk header flags");
static_assert(offsetof(struct nvl_disk_header, gguf_offset) == 24, "disk header gguf_offset");
static_assert(offsetof(struct nvl_disk_header, gguf_bytes) == 32, "disk header gguf_bytes");
static_assert(offsetof(struct nvl_disk_header, table_offset) == 40, "disk header table_offset");
static_assert(offsetof(struct nvl_disk_header, n_extents) == 48, "disk header n_extents");
static_assert(offsetof(struct nvl_disk_header, table_crc32c) == 56, "disk header table_crc32c");
static_assert(offsetof(struct nvl_disk_header, created_unix) == 64, "disk header created_unix");
static_assert(offsetof(struct nvl_disk_header, gguf_data_offset) == 72, "disk header data off");
static_assert(offsetof(struct nvl_disk_header, model_name) == 88, "disk header model_name");
static_assert(offsetof(struct nvl_disk_header, arch) == 344, "disk header arch");
static_assert(offsetof(struct nvl_disk_header, writer) == 376, "disk header writer");
static_assert(offsetof(struct nvl_disk_header, header_crc32c) == 4092, "disk header crc");

/* ---- building an image ------------------------------------------------------------------- */

/* The extent table of a packed GGUF (nvl_gguf_is_packed): META, GLOBALS (omitted when the
 * file has no global tensors), then one LAYER extent per layer, covering [0, file size). CRCs
 * are left 0. Returns the number of extents (at most max), -EINVAL with the reason in err when g
 * is not packed, or -E2BIG when it needs more than max extents. */
int nvl_disk_layout(const struct nvl_gguf *g, struct nvl_disk_extent *ext, uint32_t max, char *err,
                    size_t err_len);

/* Fills h for a GGUF of gguf_bytes written at NVL_DISK_GGUF_OFFSET of a namespace with lba_size
 * blocks, with n extents, the name, architecture and layout taken from g; flags 0 (incomplete).
 * model_name may be NULL (general.name, else "unnamed"). */
void nvl_disk_header_init(struct nvl_disk_header *h, const struct nvl_gguf *g, uint64_t gguf_bytes,
                          uint32_t lba_size, const struct nvl_disk_extent *ext, uint32_t n,
                          const char *model_name, const char *writer);

/* Computes table_crc32c over ext[0..h->n_extents) and then header_crc32c. Call after every
 * change to h or to the table, before writing them. */
void nvl_disk_header_seal(struct nvl_disk_header *h, const struct nvl_disk_extent *ext);

/* ---- reading an image -------------------------------------------------------------------- */

/* Checks a header read from byte 0 (len >= NVL_DISK_HEADER_BYTES; len past that is not looked
 * at) and the namespace it is on (capacity bytes, lba_size). Returns 0 for a valid header,
 * complete or not; -ENOENT when there is no image (no magic); -ENOTSUP for a newer version;
 * -EINVAL for a damaged header (CRC, or fields that do not fit together or the namespace),
 * with the reason in err. */
int nvl_disk_header_check(const void *buf, size_t len, uint64_t capacity, uint32_t lba_size,
                          char *err, size_t err_len);

/* Checks the extent table against its header (checked already): CRC, kinds, and that the
 * extents tile [0, gguf_bytes) in order. 0 or -EINVAL with the reason in err. */
int nvl_disk_table_check(const struct nvl_disk_header *h, const struct nvl_disk_extent *ext,
                         char *err, size_t err_len);

static inline bool nvl_disk_header_complete(const struct nvl_disk_header *h)
{
    return (h->flags & NVL_DISK_FLAG_COMPLETE) != 0;
}

/* "metadata", "global tensors" or "layer N", for messages. */
const char *nvl_disk_extent_name(const struct nvl_disk_extent *e, char *buf, size_t len);

/* ---- a model on a drive -------------------------------------------------------------------- */

struct nvl_loader;
struct nvl_disk_image;

/* Reads and checks the header and extent table at byte 0 of the loader's target (a namespace,
 * or an image file). Returns 0; -ENOENT (no image on the drive), -ENODATA (the image is
 * incomplete: its write was interrupted), -ENOTSUP, -EINVAL (damaged), or the loader's error;
 * err says which in a sentence. */
int nvl_disk_image_open(struct nvl_loader *l, struct nvl_disk_image **out, char *err,
                        size_t err_len);
void nvl_disk_image_destroy(struct nvl_disk_image *img);

const struct nvl_disk_header *nvl_disk_image_header(const struct nvl_disk_image *img);
const struct nvl_disk_extent *nvl_disk_image_extents(const struct nvl_disk_image *img, uint32_t *n);

/* What reading the GGUF cost. */
struct nvl_disk_read_stats {
    uint64_t bytes;     /* GGUF bytes read */
    double seconds;     /* wall clock */
    double crc_seconds; /* of which computing CRCs (verify) */
    uint32_t reads;     /* loader reads (one per extent, or per slot-sized piece) */
};

/* Reads the whole GGUF into a new page-aligned buffer (*data, *len = gguf_bytes; free() it) one
 * extent at a time, several in flight. With verify, each extent's CRC32C is checked as it
 * arrives and a mismatch fails the read with -EBADMSG and a message naming the extent ("layer
 * 3") and its place on the drive. Returns 0 or -errno with the reason in err. */
int nvl_disk_image_read_gguf(struct nvl_disk_image *img, bool verify, void **data, uint64_t *len,
                             struct nvl_disk_read_stats *st, char *err, size_t err_len);

/* --verify on the GPU path: reads every extent through the image's loader into its slot 0 (in
 * slot-sized pieces) and checks its CRC32C where the bytes landed: on the GPU over the slot's
 * device mapping (nvl_crc32c_gpu(), crc32c.h) when the loader has one (gpu-nvme, or any backend
 * in a CUDA build with a GPU), else on the CPU; *on_gpu (may be NULL) says which. A mismatch
 * fails with -EBADMSG and the same message as nvl_disk_image_read_gguf() ("layer 4 is corrupt on
 * the drive: ..."). Slot 0 must not be in use. st (may be NULL) gets bytes, time, CRC time and
 * the number of reads. */
int nvl_disk_image_verify(struct nvl_disk_image *img, struct nvl_disk_read_stats *st, bool *on_gpu,
                          char *err, size_t err_len);

/* Whether the model in `drive` (read from an image) is the one in `file`: the same metadata
 * (general.alignment apart: packing changes it), the same tensors with the same types and
 * shapes, and byte-identical tensor data. Returns 0 when it is, else -ESTALE with the first
 * difference in err. */
int nvl_disk_same_model(const struct nvl_gguf *drive, const struct nvl_gguf *file, char *err,
                        size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
