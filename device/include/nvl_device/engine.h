/* The persistent GPU I/O engine: memory layouts it shares with the host, and its launcher.
 *
 * One CUDA block of one warp serves each NVMe I/O queue pair. The host posts read requests into a
 * ring in pinned host memory ("read nlb blocks from slba into buffer `buf` at byte `buf_off`");
 * the warps split each request into commands of at most the engine's command size, write the
 * SQEs, ring one SQ doorbell per batch, reap completions 32 at a time, ring one CQ head doorbell
 * per batch, and publish one completion entry per request. The kernel runs until the host sets
 * ctl.stop, then drains: it finishes every request already posted and exits. It also leaves
 * after idle_exit_ns with nothing to do, so that device-wide synchronisations elsewhere in the
 * process cannot wait on it forever; the host relaunches it at the next post (the CLOSING
 * handshake in docs/memory-ordering.md makes sure no post is missed).
 *
 * Nothing in a request's path runs on the CPU: the host only writes the descriptor and bumps
 * ctl.producer, then waits on a completion word on the CPU or, through a stream memory
 * operation, on the GPU.
 *
 * Errors come back as status words (struct nvl_engine_cpl.status, NVL_ENGINE_ST_*), never as a
 * hang: a failed NVMe status fails the request; a command outstanding longer than the timeout
 * (a lost completion, measured with %globaltimer), CSTS.CFS in the host-mirrored ctl.csts, or a
 * completion that breaks the protocol fails the whole engine, which then completes every request
 * with an error status and exits. The host must reset the controller before using the queues
 * again. docs/memory-ordering.md explains each fence.
 *
 * This header compiles as C11 and as CUDA C++; every layout the host and GPU share is fixed-width
 * with size asserts. */
#ifndef NVL_DEVICE_ENGINE_H
#define NVL_DEVICE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "nvl_driver/nvme_queue.h"
#include "nvl_driver/nvme_spec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most queue pairs one engine serves (one warp each). */
#define NVL_ENGINE_MAX_QUEUES 64u
/* Most CIDs in flight per queue pair: the per-CID table lives in the warp's shared memory. */
#define NVL_ENGINE_MAX_CIDS 1024u
/* Most commands between two SQ doorbells. */
#define NVL_ENGINE_MAX_BATCH 256u
/* Page size of PRP entries (CC.MPS = 0). */
#define NVL_ENGINE_PAGE 4096u

/* ---- status words ----------------------------------------------------------------------- */

/* A request's status: 0 on success, else a kind in bits 31:24 and detail in bits 15:0 (the
 * NVMe Status Field, SCT << 8 | SC with CRD/M/DNR, for NVL_ENGINE_ST_NVME). */
enum nvl_engine_st_kind {
    NVL_ENGINE_ST_OK = 0,
    NVL_ENGINE_ST_NVME = 1,     /* a command completed with a non-zero NVMe status */
    NVL_ENGINE_ST_TIMEOUT = 2,  /* a command outstanding past the timeout: lost completion */
    NVL_ENGINE_ST_CFS = 3,      /* the controller reported fatal status (CSTS.CFS) */
    NVL_ENGINE_ST_ABORTED = 4,  /* not run: the engine failed before this request finished */
    NVL_ENGINE_ST_BADREQ = 5,   /* the descriptor is invalid (range, alignment, buffer) */
    NVL_ENGINE_ST_PROTOCOL = 6, /* the controller broke the protocol: spurious CID, bad sqhd */
};

NVME_HD static inline uint32_t nvl_engine_st_make(uint32_t kind, uint32_t detail)
{
    return (kind << 24) | (detail & 0xffffu);
}
NVME_HD static inline uint32_t nvl_engine_st_kind(uint32_t st)
{
    return st >> 24;
}
NVME_HD static inline uint16_t nvl_engine_st_nvme(uint32_t st)
{
    return nvl_engine_st_kind(st) == NVL_ENGINE_ST_NVME ? (uint16_t)(st & 0xffffu) : 0;
}
/* A short name of a status kind ("ok", "nvme", "timeout", ...). */
const char *nvl_engine_st_str(uint32_t st);

/* ---- host <-> GPU shared memory (pinned host memory, mapped into the GPU) ---------------- */

/* A read request. The host fills one ring entry, then publishes it by storing ctl.producer
 * with release semantics; the GPU reads it only after an acquire load of the producer. */
struct nvl_engine_req {
    uint64_t slba;     /* first LBA */
    uint32_t nlb;      /* blocks to read, >= 1 */
    uint16_t buf;      /* destination buffer index (nvl_engine_buf table) */
    uint8_t cmd_shift; /* log2 of the largest command in bytes; 0 = the engine's (MDTS) */
    uint8_t flags;     /* NVL_ENGINE_REQ_* */
    uint64_t buf_off;  /* destination byte offset in buf, a multiple of NVL_ENGINE_PAGE */
    /* Group: requests [group_first, group_first + group_size) complete together; the last of
     * them to finish stores notify_value to notify_addr. group_size 1 for a lone request. */
    uint32_t group_first;
    uint32_t group_size;
    uint64_t notify_addr;  /* device address of a uint32_t, 0 = none */
    uint32_t notify_value; /* stored with release semantics, even when the group failed */
    /* Gate: the request starts only once (int32_t)(*gate_addr - gate_value) >= 0, e.g. when the
     * copy out of a staging buffer it overwrites has finished. Requests start in ring order,
     * so a closed gate holds back the requests behind it. */
    uint32_t gate_value;
    uint64_t gate_addr; /* device address of a uint32_t, 0 = none */
    uint64_t rsvd;
};
NVME_STATIC_ASSERT(sizeof(struct nvl_engine_req) == 64, "engine request");
NVME_STATIC_ASSERT(offsetof(struct nvl_engine_req, buf_off) == 16, "engine request buf_off");
NVME_STATIC_ASSERT(offsetof(struct nvl_engine_req, notify_addr) == 32, "engine request notify");
NVME_STATIC_ASSERT(offsetof(struct nvl_engine_req, gate_addr) == 48, "engine request gate");

/* Destination offsets are taken modulo the buffer size (command c lands at
 * (buf_off + c * command bytes) mod size): benchmarks that read more than the buffer holds.
 * buf_off and the buffer size must then be multiples of the command size. */
#define NVL_ENGINE_REQ_RING_DST (1u << 0)

/* A request's completion entry. The GPU stores status, then seq = request number + 1 with
 * release semantics; the host reads seq with acquire semantics, then status. */
struct nvl_engine_cpl {
    uint32_t seq;
    uint32_t status; /* NVL_ENGINE_ST_* word */
};
NVME_STATIC_ASSERT(sizeof(struct nvl_engine_cpl) == 8, "engine completion");

/* Engine states in ctl.state. */
enum nvl_engine_state {
    NVL_ENGINE_IDLE = 0,    /* no kernel has run yet */
    NVL_ENGINE_RUNNING = 1, /* the kernel serves the ring */
    NVL_ENGINE_STOPPED = 2, /* the kernel drained and exited (ctl.stop, or idle exit) */
    NVL_ENGINE_FAILED = 3,  /* the kernel failed (ctl.fatal says why) and exited */
    NVL_ENGINE_CLOSING = 4, /* idle, deciding whether to exit: a request posted now may be
                               missed, so the host waits for RUNNING or an exit, and
                               relaunches after an exit */
};

/* Control block. The host writes the first cache line, the GPU the second, so neither side's
 * stores disturb the other's polling. */
struct nvl_engine_ctl {
    /* Written by the host. */
    uint32_t producer; /* requests [0, producer) are posted (wraps at 2^32) */
    uint32_t stop;     /* non-zero: finish what is posted, then exit */
    uint32_t csts;     /* CSTS as last read from BAR0 by the host (the GPU never reads BAR0) */
    uint32_t host_rsvd[13];
    /* Written by the GPU. */
    uint32_t state;        /* enum nvl_engine_state */
    uint32_t fatal;        /* the status word that failed the engine, 0 while healthy */
    uint32_t warps_exited; /* n_queues once every warp has left the loop */
    uint32_t gpu_rsvd[13];
};
NVME_STATIC_ASSERT(sizeof(struct nvl_engine_ctl) == 128, "engine control block");
NVME_STATIC_ASSERT(offsetof(struct nvl_engine_ctl, state) == 64, "engine control GPU line");

/* ---- GPU-side tables (device memory, written by the host before launch) ------------------ */

/* A destination buffer: pinned host memory the controller DMAs into, with its PRP list built
 * once at registration. prp_list[i] is the bus address of page i of the buffer; the list
 * itself lies in DMA memory whose page j has bus address prp_page_iova[j]. A command covering
 * pages p..q uses PRP1 = prp_list[p] (+ offset), PRP2 = prp_list[p + 1] when q = p + 1, else a
 * pointer to entry p + 1 of the list. The engine cuts commands at multiples of their size
 * (a power of two dividing 2 MiB), so the entries of one command never cross a page of the
 * list and no chain entry is needed. */
struct nvl_engine_buf {
    const uint64_t *prp_list;      /* device copy of the list: n_pages entries */
    const uint64_t *prp_page_iova; /* device copy: bus address of each page of the list */
    uint64_t bytes;                /* multiple of NVL_ENGINE_PAGE */
    uint64_t n_pages;
};

/* Per-request bookkeeping in device memory, one per ring entry. */
struct nvl_engine_mirror {
    uint64_t claim;        /* (request number << 32) | commands claimed so far */
    uint32_t done;         /* commands finished */
    uint32_t status;       /* first failure among them */
    uint32_t group_done;   /* requests of the group finished (on the group's first entry) */
    uint32_t group_status; /* first failure in the group (on the group's first entry) */
    uint32_t rsvd[2];
};
NVME_STATIC_ASSERT(sizeof(struct nvl_engine_mirror) == 32, "engine mirror");

/* Counters of one queue pair, updated by its warp when it leaves the kernel. */
struct nvl_engine_qp_stats {
    uint64_t commands;     /* SQEs submitted */
    uint64_t completions;  /* CQEs reaped */
    uint64_t sq_doorbells; /* SQ tail doorbell writes */
    uint64_t cq_doorbells; /* CQ head doorbell writes */
    uint64_t polls;        /* warp-wide CQ polls */
    uint64_t empty_polls;  /* polls that found nothing */
    uint64_t errors;       /* commands that completed with an error status */
    uint64_t spurious;     /* CQEs naming a CID not in flight */
};

/* The state of one queue pair that outlives a launch: ring indices, phases and CIDs roll on. */
struct nvl_engine_qp {
    struct nvme_sq sq; /* entries and doorbell are device pointers */
    struct nvme_cq cq;
    uint32_t n_cids; /* CIDs in use: min(depth - 1, NVL_ENGINE_MAX_CIDS) */
    uint32_t cid_hint;
    uint32_t cid_used;
    uint32_t rsvd;
    uint64_t cid_words[NVL_ENGINE_MAX_CIDS / 64];
    struct nvl_engine_qp_stats stats;
};

/* Engine-wide state in device memory. */
struct nvl_engine_global {
    uint32_t req_next;     /* oldest request that may still have unclaimed commands */
    uint32_t fatal;        /* status word that failed the engine, 0 while healthy */
    uint32_t warps_active; /* warps still in the loop */
    uint32_t exit_now;     /* idle exit decided: warps leave once nothing is in flight */
    uint64_t idle_mask;    /* warps idle for idle_exit_ns (bit per queue pair) */
    uint32_t idle_epoch;   /* bumped when an idle exit is called off: idle bits restart */
    uint32_t rsvd;
};

/* Everything one launch needs, passed by value. All pointers are device pointers. */
struct nvl_engine_params {
    struct nvl_engine_qp *qp; /* n_queues entries */
    uint32_t n_queues;
    uint32_t nsid;
    uint32_t lba_shift;     /* log2 of the LBA size, 9..12 */
    uint32_t max_cmd_shift; /* log2 of the largest command in bytes (MDTS, at most 2 MiB) */
    uint32_t max_batch;     /* commands per SQ doorbell, 1..NVL_ENGINE_MAX_BATCH */
    uint32_t ring_entries;  /* R: power of two */
    const struct nvl_engine_req *ring; /* R request descriptors (host memory) */
    struct nvl_engine_cpl *cpl;        /* R completion entries (host memory) */
    struct nvl_engine_ctl *ctl;        /* control block (host memory) */
    struct nvl_engine_mirror *mirror;  /* R entries (device memory) */
    struct nvl_engine_global *global;  /* device memory */
    const struct nvl_engine_buf *bufs; /* n_bufs entries (device memory) */
    uint32_t n_bufs;
    uint32_t idle_ns;    /* sleep of an idle warp between polls of the ring */
    uint64_t timeout_ns; /* a command outstanding longer fails the engine */
    /* When every warp has been idle (nothing posted, nothing in flight) this long, the kernel
     * exits and the host relaunches it at the next post; 0 = never. A kernel that never exits
     * makes every device-wide synchronisation of the process (cudaFree, cudaDeviceSynchronize,
     * lazy module loading) wait forever. */
    uint64_t idle_exit_ns;
};

/* Launches the engine kernel on `stream` (n_queues blocks of one warp). The kernel runs until
 * ctl.stop is set and everything posted is finished, until it has been idle for idle_exit_ns, or
 * until it fails. Returns 0 or -errno
 * (-EINVAL for bad parameters, -EIO when the launch fails). */
int nvl_engine_launch(const struct nvl_engine_params *p, cudaStream_t stream);

/* Enqueues on `stream` a one-thread kernel that spins until (int32_t)(*word - value) >= 0,
 * for streams that cannot use cuStreamWaitValue32. It gives up after timeout_ns and then sets
 * *timed_out (device or mapped memory, may be NULL) to 1 so a lost wake-up is no hang.
 * Returns 0 or -EIO. */
int nvl_engine_wait_word_launch(const uint32_t *word, uint32_t value, uint64_t timeout_ns,
                                uint32_t *timed_out, cudaStream_t stream);

/* Enqueues on `stream` a one-thread kernel that stores value to *word with release semantics at
 * system scope once everything before it on the stream is done (the fallback of
 * cuStreamWriteValue32). Returns 0 or -EIO. */
int nvl_engine_write_word_launch(uint32_t *word, uint32_t value, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
