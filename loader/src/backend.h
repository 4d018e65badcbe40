/* Internal interface between the loader core (loader.c) and its backends (backend_*.c).
 *
 * The core owns: option defaults, backend selection, argument checking, the staging slots (pinned,
 * DMA-mapped for an NVMe target, with their PRP lists built once here), the read handles and
 * their completion words, and the statistics. A backend owns: its queues or rings and the threads
 * that drive them, and moving each read's bytes from the target into the destination.
 *
 * Life of a read: nvl_loader_read_async() checks the arguments, rounds each extent out to whole
 * blocks (a span), lays the spans out in the destination, takes a completion word, stamps the start
 * time and calls ops->submit(). The backend moves the data and, exactly once, calls
 * nvl__read_complete() from whichever thread learns the outcome (a backend whose completion is
 * only visible on the GPU instead implements ops->poll/ops->wait and calls it from there). */
#ifndef NVL_LOADER_BACKEND_H
#define NVL_LOADER_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nvl_loader.h"

#define NVL_LOADER_WHO "loader"

/* One extent rounded out to whole blocks of the target. */
struct nvl_span {
    uint64_t dev_offset; /* first byte read from the target: ext.offset rounded down to a block */
    uint64_t dev_bytes;  /* bytes read from the target: a whole number of blocks */
    uint64_t skip;       /* ext.offset - dev_offset: bytes read before the first requested one */
    uint64_t len;        /* ext.len: the requested bytes */
    /* HOST/DEVICE: where the requested bytes go in dst (packed, in extent order).
     * SLOT: where the block-aligned read lands in the slot; it starts on a page boundary
     * (NVL_SLOT_ALIGN), so dst_offset + skip is what nvl_read_offset() reports. */
    uint64_t dst_offset;
};

/* Page granule of slot layouts: every span read into a slot starts on this boundary, so one PRP
 * list built at create time serves any span (see nvl__slot_prp). */
#define NVL_SLOT_ALIGN 4096u

/* A pinned staging buffer. User slots are exposed through nvl_loader_slot_*(); bounce slots are
 * the backend's (staging for HOST/DEVICE destinations that the target cannot DMA into). */
struct nvl_slot {
    uint8_t *host;  /* host virtual address, NVL_SLOT_ALIGN aligned */
    void *device;   /* CUDA device pointer of the same memory, NULL without CUDA */
    uint64_t bytes; /* multiple of NVL_SLOT_ALIGN */
    void *dma;      /* driver DMA buffer backing host (NVMe targets), else NULL */
    /* PRP list built once at create time (NVMe targets): prp_list[i] is the bus address of page i
     * of the slot (pages of NVL_SLOT_ALIGN bytes), in DMA memory the controller reads. Pages need
     * not be contiguous on the bus (no-IOMMU mode), so every address is looked up here. A command
     * covering slot bytes [off, off + len) uses PRP1 = prp_list[p] + off % page, p = off / page,
     * and PRP2 = prp_list[p + 1] when it ends in page p + 1, or a list pointer to entry p + 1 of
     * this flat list when it ends further on (NVMe 1.4 §4.3 allows a PRP list pointer with a
     * qword offset). The list spans several pages; a command whose entries would run past one of
     * them is cut there (nvl__slot_cmd_bytes), so no chain entry is ever needed. */
    uint64_t *prp_list;
    uint64_t *prp_list_page_iova; /* bus address of each page of prp_list */
    uint64_t n_pages;             /* bytes / NVL_SLOT_ALIGN */
    void *prp_dma;                /* driver DMA buffer holding prp_list */
    bool busy;                    /* a SLOT read targeting it is unfinished (user slots only) */
};

/* What a backend must provide. Entries marked optional may be NULL. */
struct nvl_backend_ops {
    enum nvl_loader_backend kind;
    const char *name;
    /* Could this backend run with these options? 0 or -errno, with the reason written to why
     * either way ("CUDA device 0 (NVIDIA H100)", "no NVMe target", ...). Creates nothing. */
    int (*probe)(const struct nvl_loader_opts *o, char *why, size_t why_len);
    /* Brings the backend up on l (l->opts, l->slots, l->bounce are ready); stores its state in
     * l->be. Sets l->capacity and l->block_size if the core could not (file targets). */
    int (*create)(struct nvl_loader *l);
    /* Quiesces and frees l->be. Reads in flight have completed (the core waited). */
    void (*destroy)(struct nvl_loader *l);
    /* Starts r. Must not block on the I/O. 0, or -errno and r is not started. */
    int (*submit)(struct nvl_loader *l, struct nvl_read *r);
    /* Optional: drives progress and returns 0 when r is complete, -EAGAIN otherwise. When NULL
     * the core checks r->done. */
    int (*poll)(struct nvl_loader *l, struct nvl_read *r);
    /* Optional: blocks until r is complete. When NULL the core waits on r->done. */
    int (*wait)(struct nvl_loader *l, struct nvl_read *r);
    /* Optional: resets the controller and recreates the queues; NULL means -ENOTSUP. */
    int (*reset)(struct nvl_loader *l);
    /* NVL_BACKEND_* flags. */
    uint32_t caps;
};

#define NVL_BACKEND_NEEDS_CTRL (1u << 0) /* slots are DMA-mapped for opts.ctrl, PRPs built */
#define NVL_BACKEND_NEEDS_PATH (1u << 1) /* the target is opts.path */
#define NVL_BACKEND_SETS_WORD  (1u << 2) /* the backend itself advances r->word (on the GPU) */
#define NVL_BACKEND_DEVICE_DST (1u << 3) /* accepts NVL_DST_DEVICE destinations */

struct nvl_loader {
    struct nvl_loader_opts opts; /* copy, defaults filled in; opts.path points at path_copy */
    char *path_copy;
    const struct nvl_backend_ops *ops;
    void *be;               /* the backend's state */
    char reason[1024];      /* the chosen backend, why, and what its create() added */
    char reason_rest[1024]; /* why the others were not chosen; appended after create() */

    uint64_t capacity;   /* bytes of the target */
    uint32_t block_size; /* read granule: LBA size or the file's O_DIRECT alignment */
    uint32_t nsid;       /* resolved namespace (NVMe targets) */

    struct nvl_slot *slots;  /* opts.n_slots user slots */
    struct nvl_slot *bounce; /* n_bounce backend slots of opts.slot_bytes each */
    uint32_t n_bounce;

    /* Completion words, one per read in flight (a pool of n_words, recycled; values only grow).
     * Host-mapped pinned memory when CUDA is present (words_dev is the GPU's view). */
    uint32_t *words;
    uint32_t *words_dev;
    bool words_pinned; /* words came from the CUDA host allocator */
    uint32_t n_words;
    uint64_t words_free; /* bitmap of free words (n_words <= 64) */
    uint32_t seq;        /* last value handed out */

    atomic_bool needs_reset;
    pthread_mutex_t lock; /* guards r->done transitions for the condvar, slot busy bits */
    pthread_cond_t cond;
    struct nvl_read *reads; /* reads submitted and not yet waited for */
};

struct nvl_read {
    struct nvl_loader *loader;
    struct nvl_dst dst;
    uint32_t n_span;
    struct nvl_span *span;
    uint64_t bytes;        /* sum of span[i].len */
    uint64_t device_bytes; /* sum of span[i].dev_bytes */

    /* Completion word: words[word] reaches value when the read has landed. */
    uint32_t word;
    uint32_t value;

    /* Outcome, written by the backend through nvl__read_complete(). */
    atomic_int done;
    int err;
    uint16_t nvme_status;
    atomic_uint_fast64_t commands; /* backends add the commands they issue */

    double t_start;   /* CLOCK_MONOTONIC seconds at submission */
    double cpu_start; /* CLOCK_PROCESS_CPUTIME_ID seconds at submission */
    double t_end;
    double cpu_end;

    void *be_priv;                /* the backend's per-read state */
    struct nvl_read *next, *prev; /* on loader->reads */
};

/* Called by the backend exactly once per read, from any thread: records the outcome and the end
 * time, advances the completion word (unless NVL_BACKEND_SETS_WORD), and wakes waiters. err is 0
 * or -errno; nvme_status is the first failed NVMe status or 0. -ETIMEDOUT and -ENXIO also mark the
 * loader as needing a reset. */
void nvl__read_complete(struct nvl_read *r, int err, uint16_t nvme_status);

/* Appends "; " and a note to l->reason (what a backend's create() adds to the selection reason),
 * cut at the end of the buffer. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void nvl__reason_append(struct nvl_loader *l, const char *fmt, ...);

/* The probe step shared by the NVMe backends: a controller was given and is ready. 0, or -ENODEV
 * with the reason written to why. */
int nvl__probe_ctrl(const struct nvl_loader_opts *o, char *why, size_t why_len);

/* Wall and process-CPU clocks in seconds. */
double nvl__now(void);
double nvl__cpu_now(void);

/* The largest command, at most max_bytes, that can start at slot offset off using the slot's
 * prebuilt PRP list without its entries running past a page of the list. */
static inline uint64_t nvl__slot_cmd_bytes(uint64_t off, uint64_t max_bytes)
{
    const uint64_t page = NVL_SLOT_ALIGN, per_list_page = page / 8;
    uint64_t first = off / page;
    /* Entries first + 1 .. first + n describe pages after the first; they may use the rest of
     * the list page holding entry first + 1. */
    uint64_t room = per_list_page - (first + 1) % per_list_page;
    uint64_t limit = (first + 1 + room) * page - off;
    return max_bytes < limit ? max_bytes : limit;
}

/* PRP1 and PRP2 for a command reading len bytes into slot s at offset off, from the list built
 * at create time. len must not exceed nvl__slot_cmd_bytes(off, ...). */
static inline void nvl__slot_prp(const struct nvl_slot *s, uint64_t off, uint64_t len,
                                 uint64_t *prp1, uint64_t *prp2)
{
    const uint64_t page = NVL_SLOT_ALIGN, per_list_page = page / 8;
    uint64_t first = off / page, last = (off + len - 1) / page, next = first + 1;
    *prp1 = s->prp_list[first] + off % page;
    if (last == first)
        *prp2 = 0;
    else if (last == next)
        *prp2 = s->prp_list[next];
    else
        *prp2 = s->prp_list_page_iova[next / per_list_page] + 8 * (next % per_list_page);
}

extern const struct nvl_backend_ops nvl__backend_cpu_nvme;
extern const struct nvl_backend_ops nvl__backend_file;
extern const struct nvl_backend_ops nvl__backend_gds;
#ifdef NVL_HAVE_CUDA
extern const struct nvl_backend_ops nvl__backend_gpu_nvme;
#endif

#endif
