/* Private structures of the software NVMe controller, shared by its source files.
 *
 * Threads and ownership:
 *  - The control thread owns the controller state machine (CC, CSTS, AQA/ASQ/ACQ), the admin
 *    queue pair, queue creation and deletion, and the doorbell checks of absent queues.
 *  - Each I/O service thread owns the I/O CQs assigned to it (cqid - 1 modulo the thread count)
 *    and every SQ bound to them, so that fetching SQEs and posting CQEs needs no lock.
 *  - Host threads call the transport's dma_map/dma_unmap/reset and the public functions.
 * What the service threads see (their queue table and the DMA region table) is published with
 * seq_cst pointer stores and retired after a grace period: every thread passes a quiescent point
 * (its epoch counter moves) or is asleep (offline) before the old copy is freed. */
#ifndef NVL_SIM_INTERNAL_H
#define NVL_SIM_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "nvl_driver/nvme_spec.h"
#include "nvl_driver/transport.h"
#include "nvl_sim.h"

#define SIM_PAGE_SHIFT        12
#define SIM_PAGE              (1u << SIM_PAGE_SHIFT) /* CAP.MPSMIN = CAP.MPSMAX = 4 KiB */
#define SIM_BATCH             64u                    /* SQEs fetched from one SQ per pass */
#define SIM_MAX_THREADS       64u
#define SIM_ERROR_LOG_ENTRIES 64u /* Identify ELPE + 1 */

#define SIM_LOAD(p)         __atomic_load_n((p), __ATOMIC_RELAXED)
#define SIM_LOAD_ACQ(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define SIM_STORE(p, v)     __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define SIM_STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define SIM_LOAD_SC(p)      __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define SIM_STORE_SC(p, v)  __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

#define sim_likely(x)   __builtin_expect(!!(x), 1)
#define sim_unlikely(x) __builtin_expect(!!(x), 0)

uint64_t nvl__sim_now_ns(void);

/* ---- DMA region registry (sim_dma.c) -------------------------------------------------- */

/* One dma_map call: host memory [vaddr, vaddr + len) is reachable at [iova, iova + len). */
struct sim_dma_region {
    uint64_t iova;
    uint64_t len;
    uint8_t *vaddr;
};

/* An immutable sorted (by iova) copy of the registry; replaced whole on every change. */
struct sim_dma_table {
    uint64_t gen; /* distinct for every table ever published */
    uint32_t n;   /* regions in r[] */
    struct sim_dma_region r[];
};

struct sim_dma {
    pthread_mutex_t lock;        /* writers only; readers never lock */
    struct sim_dma_table *table; /* current table, read with SIM_LOAD_SC */
    uint64_t next_iova;          /* bump allocator; IOVAs are never reused */
    uint64_t gen;
    struct sim_dma_table **retired; /* replaced tables waiting for a grace period */
    uint32_t n_retired;
    uint32_t cap_retired;
};

/* A reader's memo of the last region it hit, valid while the table generation is unchanged. */
struct sim_dma_cache {
    uint64_t gen;
    const struct sim_dma_region *r;
};

/* IOVAs start at 2^48, above every user-space virtual address on x86-64 (47 bits), so that a
 * driver that puts a virtual address where an IOVA belongs faults instead of working by luck. */
#define SIM_IOVA_BASE (1ull << 48)
/* Unmapped gap after every region, so that running past a region's end faults. */
#define SIM_IOVA_GUARD (1ull << 21)

int nvl__sim_dma_init(struct sim_dma *d);
void nvl__sim_dma_fini(struct sim_dma *d);
/* vaddr and len must be page aligned, len > 0. */
int nvl__sim_dma_map(struct sim_dma *d, void *vaddr, size_t len, uint64_t *iova);
/* Removes the region exactly matching (vaddr, len, iova); -EINVAL when none does. The old table
 * is retired until nvl__sim_dma_take_retired hands it back. */
int nvl__sim_dma_unmap(struct sim_dma *d, void *vaddr, size_t len, uint64_t iova);
/* Detaches the retired tables; free them with nvl__sim_dma_free_retired after a grace period. */
struct sim_dma_table **nvl__sim_dma_take_retired(struct sim_dma *d, uint32_t *n);
void nvl__sim_dma_free_retired(struct sim_dma_table **list, uint32_t n);
/* Host address of [iova, iova + len), or NULL when the range is not inside one region. */
void *nvl__sim_dma_xlate(struct sim_dma *d, struct sim_dma_cache *c, uint64_t iova, uint64_t len);

/* ---- PRP walking (sim_prp.c) ---------------------------------------------------------- */

/* A run of host memory a command transfers to or from. */
struct sim_seg {
    uint8_t *p;
    uint64_t len;
};

struct sim_prp_result {
    uint32_t nseg;               /* segments filled (adjacent host ranges merged) */
    enum nvl_sim_violation viol; /* which rule failed when the status is not 0 */
};

/* Walks the PRP entries of a `len`-byte transfer (NVMe 1.4 §4.3) and translates each through the
 * registry. Returns 0 or the NVMe status field (Invalid PRP Offset, Data Transfer Error for an
 * untranslatable address). `segs` has room for max_segs entries (len / 4 KiB + 1 suffices). */
uint16_t nvl__sim_prp_walk(struct sim_dma *d, struct sim_dma_cache *c, uint64_t prp1, uint64_t prp2,
                           uint64_t len, struct sim_seg *segs, uint32_t max_segs,
                           struct sim_prp_result *res);

/* ---- backing store (sim_store.c) ------------------------------------------------------ */

struct sim_store {
    enum nvl_sim_backing kind;
    uint64_t bytes;         /* namespace bytes */
    uint8_t *mem;           /* MEM: the blocks */
    size_t mem_len;         /* MEM: mapping length */
    int fd;                 /* FILE: buffered descriptor */
    int fd_direct;          /* FILE: O_DIRECT descriptor or -1 */
    uint32_t dio_mem_align; /* FILE: O_DIRECT buffer alignment */
    uint32_t dio_off_align; /* FILE: O_DIRECT offset and length alignment */
    int read_only;
};

/* Opens the store `o` describes; `o->ns_bytes` of 0 is resolved to the file or default size and
 * written back. Returns 0 or -errno with a reason in err. */
int nvl__sim_store_open(struct sim_store *s, struct nvl_sim_opts *o, char *err, size_t err_len);
void nvl__sim_store_close(struct sim_store *s);
/* Moves `off`..: store -> segments (read) or segments -> store (write). 0 or -errno. */
int nvl__sim_store_read(struct sim_store *s, uint64_t off, const struct sim_seg *segs,
                        uint32_t nseg);
int nvl__sim_store_write(struct sim_store *s, uint64_t off, const struct sim_seg *segs,
                         uint32_t nseg);
int nvl__sim_store_flush(struct sim_store *s);

/* ---- bandwidth and latency model (sim_model.c) ---------------------------------------- */

struct sim_model {
    int enabled;
    double ps_per_byte; /* 1e12 / bandwidth; 0 = unlimited */
    uint64_t lat_ns;
    uint64_t t0_ns;     /* origin of bucket_ps */
    uint64_t bucket_ps; /* when the drive's data path is free again (shared, CAS) */
};

void nvl__sim_model_init(struct sim_model *m, uint64_t bw_bytes_per_s, uint64_t lat_ns,
                         uint64_t t0_ns);
/* When a command of `bytes` arriving at now_ns completes: max(arrival + latency, the end of its
 * turn in the bandwidth token bucket). Thread safe. */
uint64_t nvl__sim_model_due(struct sim_model *m, uint64_t now_ns, uint64_t bytes);

/* ---- fault injection (sim_fault.c) ----------------------------------------------------- */

struct sim_fault_slot {
    struct nvl_sim_fault f;
    uint64_t matched; /* matching commands seen (atomic) */
    uint32_t fired;   /* times fired (atomic) */
    int armed;        /* published with release after f is written */
};

struct sim_faults {
    struct sim_fault_slot slot[NVL_SIM_FAULT_SLOTS];
    int n_armed; /* fast check on the hot path */
};

/* What to do with one command. */
struct sim_fault_action {
    int fired;
    enum nvl_sim_fault_kind kind;
    uint16_t status;
    uint64_t delay_ns;
};

/* Matches one fetched command; rng is the calling thread's xorshift state. */
void nvl__sim_fault_match(struct sim_faults *fs, uint16_t sqid, uint8_t opcode, uint64_t *rng,
                          struct sim_fault_action *act);
uint64_t nvl__sim_rng_next(uint64_t *state);

/* ---- queues ---------------------------------------------------------------------------- */

struct sim_cq;

struct sim_sq {
    struct nvme_sqe *ring; /* translated queue memory */
    uint64_t iova;         /* as the host gave it */
    uint64_t bytes;
    volatile uint32_t *db; /* tail doorbell in the register file */
    uint32_t size;         /* entries */
    uint32_t head;         /* next entry to fetch (owner) */
    uint32_t tail;         /* last valid tail doorbell value (owner) */
    uint16_t qid;
    struct sim_cq *cq;
    uint64_t *cids;    /* bitmap of CIDs whose completion is deferred (owner) */
    uint32_t inflight; /* deferred completions not yet posted (owner) */
    int deleting;      /* control -> owner: stop fetching (atomic) */
    int drained;       /* owner -> control: nothing left in flight (atomic) */
};

/* A completion waiting for its due time. */
struct sim_pending {
    uint64_t due_ns;
    struct sim_sq *sq;
    uint32_t dw0;
    uint16_t cid;
    uint16_t status; /* status field, no phase */
};

struct sim_cq {
    struct nvme_cqe *ring;
    uint64_t iova;
    uint64_t bytes;
    volatile uint32_t *db; /* head doorbell */
    uint32_t size;
    uint32_t tail;  /* next slot to post into (owner) */
    uint32_t head;  /* last valid head doorbell value (owner) */
    uint16_t phase; /* phase tag of the next post (owner) */
    uint16_t qid;
    uint32_t reserved; /* posted-unconsumed plus pending completions (owner) */
    int stalled;       /* in a CQ-full episode (owner) */
    /* Completions in due-time order (the model's due times never decrease per thread). */
    struct sim_pending *fifo;
    uint32_t fifo_head;
    uint32_t fifo_n;
    /* Completions delayed by fault injection, in no order. */
    struct sim_pending *late;
    uint32_t late_n;
    uint32_t nsq;   /* SQs bound to this CQ (control thread) */
    uint32_t owner; /* index of the service thread */
};

/* What one service thread polls: published whole by the control thread. */
struct sim_qtable {
    uint32_t nsq;
    uint32_t ncq;
    struct sim_sq **sq;
    struct sim_cq **cq;
};

/* Per-thread counters: one writer each, summed on demand. */
enum sim_counter {
    SIM_C_ADMIN,
    SIM_C_IO,
    SIM_C_READS,
    SIM_C_WRITES,
    SIM_C_FLUSHES,
    SIM_C_BYTES_READ,
    SIM_C_BYTES_WRITTEN,
    SIM_C_COMPLETIONS,
    SIM_C_ERRORS,
    SIM_C_FAULTS_INJECTED,
    SIM_C_COUNT
};

struct sim_thread {
    struct nvl_sim *sim;
    pthread_t tid;
    uint32_t index; /* 0..nthreads-1 service, nthreads = control */
    int started;
    struct sim_qtable *table; /* SIM_LOAD_SC */
    uint64_t epoch;           /* moves at every quiescent point (seq_cst) */
    int online;               /* 0 while asleep (seq_cst) */
    uint64_t pending;         /* completions waiting in its CQs, counted each pass */
    uint64_t next_due_ns;     /* earliest due time seen in the last pass */
    uint64_t now;             /* clock of the current pass, read lazily; 0 = not yet */
    uint64_t idle_max_ns;     /* longest idle sleep; 0 = spin */
    struct sim_dma_cache dcache;
    struct sim_seg *segs;
    uint32_t max_segs;
    uint64_t rng;
    uint64_t ctr[SIM_C_COUNT]; /* written by this thread only, read relaxed by others */
} __attribute__((aligned(64)));

/* The current pass's clock, read at most once per pass, and only when needed: without a model
 * and without pending completions the hot path never reads the clock. */
static inline uint64_t sim_clock(struct sim_thread *t)
{
    if (!t->now)
        t->now = nvl__sim_now_ns();
    return t->now;
}

#define SIM_COUNT(t, c, n) SIM_STORE(&(t)->ctr[(c)], SIM_LOAD(&(t)->ctr[(c)]) + (n))

/* Controller state machine of the control thread. */
enum sim_state {
    SIM_ST_DISABLED,  /* CC.EN = 0, CSTS.RDY = 0 */
    SIM_ST_ENABLING,  /* CC.EN = 1 seen, RDY after ready_delay */
    SIM_ST_READY,     /* RDY = 1, processing */
    SIM_ST_FAILED,    /* enable refused (CFS) or fatal: waits for CC.EN = 0 */
    SIM_ST_DISABLING, /* CC.EN = 0 seen, queues torn down, RDY = 0 after ready_delay */
};

struct nvl_sim {
    struct nvl_transport transport;
    struct nvl_sim_opts opts;
    const char *who;

    /* Register file. */
    uint8_t *bar;
    size_t bar_len;
    uint64_t cap;
    uint32_t vs;
    uint32_t db_stride; /* bytes */
    uint32_t max_qid;   /* highest queue id with a doorbell pair in the BAR */

    /* Namespace. */
    struct sim_store store;
    uint32_t lba_shift;
    uint64_t nblocks;
    uint64_t mdts_bytes; /* 0 = no limit */
    uint32_t max_xfer_pages;

    struct sim_dma dma;
    struct sim_model model;
    struct sim_faults faults;

    /* Control thread state. */
    enum sim_state state;
    uint64_t deadline_ns;
    uint32_t cc;  /* last CC value acted on */
    int shutdown; /* CC.SHN seen while ready */
    struct sim_sq asq;
    struct sim_cq acq;
    struct sim_sq **sqs; /* [max_io_queues + 1], NULL = absent */
    struct sim_cq **cqs;
    uint32_t nsq_granted; /* Set Features Number of Queues result */
    uint32_t ncq_granted;
    int queues_created; /* an I/O queue was created since the last reset */
    int admin_live;     /* asq/acq hold translated queues (under qlock) */
    uint32_t aer_outstanding;
    uint32_t vwc_enabled;
    uint32_t feat[16];     /* stored values of the simple features */
    pthread_mutex_t qlock; /* sqs/cqs arrays against dma_unmap's in-use check */

    int fatal;        /* atomic: stop processing, CSTS.CFS set */
    int halted;       /* atomic: shutdown, stop fetching */
    int stop;         /* atomic: threads exit */
    uint64_t flr_req; /* atomic: transport reset requests */
    uint64_t flr_done;

    uint32_t nthreads;
    struct sim_thread *threads; /* nthreads service + 1 control */

    /* Rare-event counters, atomics. */
    uint64_t violations[NVL_SIM_VIOL_COUNT];
    uint64_t resets;
    uint64_t fatal_count;
    uint64_t warned;           /* bit per violation kind already logged at warn level */
    struct nvl_sim_stats base; /* nvl_sim_reset_stats baseline */

    /* Error Information log: a ring of the newest entries. */
    pthread_mutex_t elock;
    uint64_t error_count;
    struct nvme_error_log errlog[SIM_ERROR_LOG_ENTRIES];
};

/* sim.c */
void nvl__sim_violation(struct nvl_sim *sim, enum nvl_sim_violation v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Marks the controller fatal: CSTS.CFS, every thread stops processing until a reset. */
void nvl__sim_fatal(struct nvl_sim *sim, enum nvl_sim_violation v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* CSTS = (CSTS & ~clear) | set, atomically (service threads may set CFS concurrently). */
void nvl__sim_csts_update(struct nvl_sim *sim, uint32_t clear, uint32_t set);
uint32_t nvl__sim_reg32(struct nvl_sim *sim, uint32_t off);
uint64_t nvl__sim_reg64(struct nvl_sim *sim, uint32_t off);
void nvl__sim_reg32_write(struct nvl_sim *sim, uint32_t off, uint32_t v);
void nvl__sim_reg64_write(struct nvl_sim *sim, uint32_t off, uint64_t v);
volatile uint32_t *nvl__sim_sq_db(struct nvl_sim *sim, uint32_t qid);
volatile uint32_t *nvl__sim_cq_db(struct nvl_sim *sim, uint32_t qid);
/* Waits until every thread other than `self` passed a quiescent point. */
void nvl__sim_synchronize(struct nvl_sim *sim, const struct sim_thread *self);
/* Whether [iova, iova + len) overlaps memory of a live queue (admin or I/O). Called with qlock
 * held, or from the control thread (the only writer of the queue arrays). */
int nvl__sim_iova_in_use(struct nvl_sim *sim, uint64_t iova, uint64_t len);
/* Counters since creation, ignoring nvl_sim_reset_stats (for the SMART log). */
void nvl__sim_stats_raw(struct nvl_sim *sim, struct nvl_sim_stats *s);
void nvl__sim_error_log_add(struct nvl_sim *sim, uint16_t sqid, uint16_t cid, uint16_t status,
                            uint64_t lba, uint32_t nsid);

/* sim_queue.c: the fetch/complete engine shared by the admin and I/O paths. */
int nvl__sim_cq_init(struct sim_cq *cq, uint16_t qid, struct nvme_cqe *ring, uint64_t iova,
                     uint32_t size, volatile uint32_t *db);
void nvl__sim_cq_fini(struct sim_cq *cq);
int nvl__sim_sq_init(struct sim_sq *sq, uint16_t qid, struct nvme_sqe *ring, uint64_t iova,
                     uint32_t size, volatile uint32_t *db, struct sim_cq *cq);
void nvl__sim_sq_fini(struct sim_sq *sq);
/* Fetches and executes up to SIM_BATCH commands of sq. Returns the number fetched. */
uint32_t nvl__sim_sq_service(struct sim_thread *t, struct sim_sq *sq);
/* Reads the CQ head doorbell and posts due completions. Returns work done. */
uint32_t nvl__sim_cq_service(struct sim_thread *t, struct sim_cq *cq);

/* sim_admin.c */
struct sim_cmd_result {
    uint16_t status; /* status field without phase; 0 = success */
    uint32_t dw0;
    int hold;       /* the command stays outstanding (Asynchronous Event Request) */
    uint64_t bytes; /* data moved, for the bandwidth model */
};
void nvl__sim_admin_exec(struct sim_thread *t, const struct nvme_sqe *sqe,
                         struct sim_cmd_result *r);
/* Tears down every I/O queue (controller reset). Control thread only. */
void nvl__sim_admin_reset_queues(struct nvl_sim *sim, struct sim_thread *self);

/* sim_io.c */
void nvl__sim_io_exec(struct sim_thread *t, const struct nvme_sqe *sqe, struct sim_cmd_result *r);

/* sim_ctrl.c: the control thread and the controller state machine. */
void *nvl__sim_ctrl_main(void *arg);
/* Service thread main loop (sim_queue.c). */
void *nvl__sim_io_main(void *arg);
/* Sleep/poll policy shared by both. */
void nvl__sim_idle(struct sim_thread *t, uint64_t *idle_since, int worked);
/* Rebuilds the queue table of service thread `idx` from sim->sqs/cqs and publishes it. */
int nvl__sim_publish_table(struct nvl_sim *sim, uint32_t idx, struct sim_thread *self);

#endif
