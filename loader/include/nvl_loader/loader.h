/* The Layer Loader: reads lists of byte extents from an NVMe namespace or a file into a
 * destination (host memory, GPU memory, or one of the loader's pinned staging slots), through one
 * of four backends chosen at create time:
 *
 *   gpu-nvme  the GPU I/O engine drives the NVMe queues (device/ + host/, built with CUDA);
 *   cpu-nvme  a loader thread drives the same queues through the CPU driver (driver/io.h);
 *   gds       cuFile (GPUDirect Storage), loaded at run time with dlopen;
 *   file      O_DIRECT reads of a file or block device through io_uring (a pread thread pool
 *             when io_uring is unavailable).
 *
 * Reads are asynchronous. nvl_loader_read_async() queues a read and returns a handle at once; the
 * caller polls or waits on the CPU, or makes a CUDA stream wait for it on the GPU through the
 * handle's completion word, which needs no CPU involvement per read. This is what a streaming
 * model runtime uses to overlap reads of layers N+1..N+k with the compute of layer N:
 *
 *     nvl_loader_read_async(l, layer[n + k].ext, layer[n + k].n, nvl_dst_slot(s), &rd[n + k]);
 *     nvl_read_stream_wait(rd[n], compute_stream);        compute waits on the GPU, not the CPU
 *     ... launch layer n's kernels reading nvl_loader_slot_device(l, s) + nvl_read_offset() ...
 *     nvl_loader_wait(rd[n - k], &st);                    reclaim handles (and slots) k layers late
 *
 * Queue state (CIDs, tails, heads, phases) lives as long as the loader and rolls on from one read
 * to the next; nothing is reset between calls.
 *
 * Thread safety: one thread submits and waits on a loader at a time (the model's scheduler).
 * Backends may run their own threads internally. */
#ifndef NVL_LOADER_LOADER_H
#define NVL_LOADER_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nvl_ctrl; /* driver/: an initialised NVMe controller (VFIO hardware or the sim). */
struct nvl_loader;
struct nvl_read;

enum nvl_loader_backend {
    NVL_LOADER_AUTO = 0,
    NVL_LOADER_GPU_NVME = 1,
    NVL_LOADER_CPU_NVME = 2,
    NVL_LOADER_GDS = 3,
    NVL_LOADER_FILE = 4,
};
#define NVL_LOADER_BACKEND_COUNT 5

/* "auto", "gpu-nvme", "cpu-nvme", "gds", "file"; NULL for an unknown value. */
const char *nvl_loader_backend_str(enum nvl_loader_backend b);
/* Parses the names above; returns 0 or -EINVAL. */
int nvl_loader_backend_parse(const char *name, enum nvl_loader_backend *out);

/* Creation options. Start from nvl_loader_opts_init(), which sets every default, then fill in a
 * target: ctrl (+ nsid) for the NVMe backends, path for file/gds. Both may be given (a drive laid
 * out as a file's image, or the sim's backing file): auto-selection then may pick any backend. */
struct nvl_loader_opts {
    enum nvl_loader_backend backend; /* NVL_LOADER_AUTO picks the fastest usable one */
    struct nvl_ctrl *ctrl;           /* NVMe target, owned by the caller; NULL when none */
    uint32_t nsid;                   /* namespace on ctrl; 0 = the first active namespace */
    const char *path;                /* file or block device for file/gds; NULL when none */
    uint32_t n_slots;                /* pinned staging slots (default 4) */
    uint64_t slot_bytes;             /* bytes per slot, rounded up to 2 MiB (default 64 MiB) */
    uint32_t first_queue;            /* NVMe backends use the controller's I/O queue pairs */
    uint32_t n_queues;               /* [first_queue, first_queue + n_queues) (default 0, 4); */
                                     /* file/gds: n_queues sizes their thread pools */
    uint32_t queue_depth;            /* commands in flight per queue (default 64) */
    int cuda_device;                 /* CUDA device for gpu-nvme/gds/device dsts (default 0) */
    uint32_t timeout_ms; /* a command outstanding longer fails the read (default 5000) */
};

void nvl_loader_opts_init(struct nvl_loader_opts *o);

/* Opens the loader on the chosen (or auto-selected) backend, allocates and pins the staging
 * slots, builds each slot's PRP lists once, and for NVMe backends takes n_queues I/O queue pairs
 * of ctrl. Auto-selection logs (nvl_log_info) which backend it picked and why each other one was
 * not; nvl_loader_reason() returns the same text. Returns 0 or -errno: -ENODEV when the forced
 * backend (or, for auto, every backend) cannot run here; the error log and nvl_loader_probe() say
 * what is missing. */
int nvl_loader_create(const struct nvl_loader_opts *o, struct nvl_loader **out);
/* Waits for reads in flight, then frees everything. NULL is a no-op. */
void nvl_loader_destroy(struct nvl_loader *l);

/* Says whether backend b could run with options o, without creating anything: 0 when it could,
 * else -errno, with a human-readable reason in why (always NUL-terminated). */
int nvl_loader_probe(enum nvl_loader_backend b, const struct nvl_loader_opts *o, char *why,
                     size_t why_len);

enum nvl_loader_backend nvl_loader_backend(const struct nvl_loader *l);
const char *nvl_loader_backend_name(const struct nvl_loader *l);
/* Which backend was used and why, e.g. "gpu-nvme: CUDA device 0 (NVIDIA H100) and NVMe target;
 * gds skipped: ...". Valid for the loader's lifetime. */
const char *nvl_loader_reason(const struct nvl_loader *l);
/* Bytes the target holds (namespace size or file size). */
uint64_t nvl_loader_capacity(const struct nvl_loader *l);
/* The unit of lba in nvl_loader_load_layer() and the granule of device reads: the namespace's LBA
 * size, or the file's O_DIRECT alignment (its logical block size). */
uint32_t nvl_loader_block_size(const struct nvl_loader *l);

/* The staging slots: pinned host memory the loader owns, which the drive DMAs into. A read with
 * an nvl_dst_slot() destination lands there and is used in place (zero copy): the CPU through the
 * host pointer, the GPU through the device pointer of the same memory (NULL without CUDA). */
uint32_t nvl_loader_slot_count(const struct nvl_loader *l);
uint64_t nvl_loader_slot_bytes(const struct nvl_loader *l);
void *nvl_loader_slot_host(const struct nvl_loader *l, uint32_t slot);
void *nvl_loader_slot_device(const struct nvl_loader *l, uint32_t slot);

/* A byte range of the target. Any offset and length: reads are rounded out to whole blocks
 * internally and only the requested bytes are delivered (or, for slots, reported). */
struct nvl_extent {
    uint64_t offset;
    uint64_t len;
};

enum nvl_dst_kind {
    NVL_DST_HOST = 0,   /* host memory; extents are packed back to back from ptr */
    NVL_DST_DEVICE = 1, /* CUDA device memory; packed back to back from ptr */
    NVL_DST_SLOT = 2,   /* staging slot `slot`; each extent starts at nvl_read_offset(r, i) */
};

struct nvl_dst {
    enum nvl_dst_kind kind;
    void *ptr;      /* HOST, DEVICE: first byte of the packed extents */
    uint64_t bytes; /* HOST, DEVICE: capacity at ptr; a read that does not fit fails -ENOSPC */
    uint32_t slot;  /* SLOT: the staging slot */
};

static inline struct nvl_dst nvl_dst_host(void *ptr, uint64_t bytes)
{
    struct nvl_dst d = {NVL_DST_HOST, ptr, bytes, 0};
    return d;
}

static inline struct nvl_dst nvl_dst_device(void *ptr, uint64_t bytes)
{
    struct nvl_dst d = {NVL_DST_DEVICE, ptr, bytes, 0};
    return d;
}

static inline struct nvl_dst nvl_dst_slot(uint32_t slot)
{
    struct nvl_dst d = {NVL_DST_SLOT, NULL, 0, slot};
    return d;
}

/* What one read cost. cpu_seconds is the process's CPU time (user + system, all threads) between
 * submission and completion, so it counts loader and backend threads too; divide by bytes for
 * "CPU time per GB". */
struct nvl_read_stats {
    uint64_t bytes;        /* payload delivered: the sum of the extents' lengths */
    uint64_t device_bytes; /* bytes read from the target, rounded out to whole blocks */
    uint64_t commands;     /* NVMe commands or file reads issued */
    double seconds;        /* wall clock, submission to completion */
    double gbps;           /* bytes / seconds / 1e9 */
    double cpu_seconds;
    uint16_t nvme_status; /* first failed NVMe status (SCT << 8 | SC), 0 when none */
};

/* Queues a read of n_ext extents into dst and returns its handle in *out at once. Errors in the
 * arguments (zero extents, a zero-length extent, an extent past the end: -EINVAL / -ERANGE; a
 * destination too small or a slot too small: -ENOSPC; a slot already in use by an unfinished
 * read: -EBUSY; a loader needing a reset: -EIO) are returned here and nothing is queued. */
int nvl_loader_read_async(struct nvl_loader *l, const struct nvl_extent *ext, uint32_t n_ext,
                          struct nvl_dst dst, struct nvl_read **out);

/* 0 when the read is complete (successfully: wait on it to learn the outcome), -EAGAIN while it is
 * still in flight. Never blocks. */
int nvl_read_poll(struct nvl_read *r);

/* Blocks until the read completes, fills *st (may be NULL), frees the handle, and returns the
 * read's outcome: 0; -EIO for an NVMe error status (st->nvme_status has it); -ETIMEDOUT when a
 * command did not complete within timeout_ms (a lost completion); -ENXIO when the controller
 * reported fatal status (CSTS.CFS). After -ETIMEDOUT or -ENXIO nvl_loader_needs_reset() is true
 * and later reads fail -EIO until the controller is reset. Never hangs: a backend that loses
 * track of a command gives up after timeout_ms. */
int nvl_loader_wait(struct nvl_read *r, struct nvl_read_stats *st);

/* For the slot destination: the byte offset within the slot of extent i's first requested byte.
 * For HOST/DEVICE destinations, the offset within dst (the sum of the preceding lengths). */
uint64_t nvl_read_offset(const struct nvl_read *r, uint32_t i);

/* The read's GPU completion word: a 32-bit word in device-visible memory that becomes >= *value
 * (compared wrap-safe, (int32_t)(*word - value) >= 0) once every byte of the read has landed in
 * dst and is visible to the GPU. Words are recycled but only ever count up, so a late wait on an
 * old read still passes. For cuStreamWaitValue32(..., CU_STREAM_WAIT_VALUE_GEQ) or a spinning
 * kernel. Returns 0, or -ENOTSUP when the loader was built without CUDA. */
int nvl_read_gpu_word(const struct nvl_read *r, const uint32_t **word, uint32_t *value);

/* Makes CUDA stream `stream` (a cudaStream_t) wait on the GPU until the read has landed. Costs the
 * CPU one enqueue; no synchronisation. -ENOTSUP without CUDA. */
int nvl_read_stream_wait(struct nvl_read *r, void *stream);

/* Blocking convenience, like gpu-nvme-direct's load_layer(): reads `bytes` from block `lba`
 * (nvl_loader_block_size() units) into host or device memory dst (the kind is detected: CUDA
 * device or managed pointers go through the device path). Returns what nvl_loader_wait() does. */
int nvl_loader_load_layer(struct nvl_loader *l, uint64_t lba, uint64_t bytes, void *dst,
                          struct nvl_read_stats *st);

/* True after a lost completion or a controller fatal status: the queues' state is no longer known
 * and the controller must be reset (nvl_loader_reset()) before more reads. */
bool nvl_loader_needs_reset(const struct nvl_loader *l);
/* Resets the controller through the driver, recreates the loader's queues, and clears the state.
 * Reads in flight fail. -ENOTSUP for file/gds. */
int nvl_loader_reset(struct nvl_loader *l);

#ifdef __cplusplus
}
#endif

#endif
