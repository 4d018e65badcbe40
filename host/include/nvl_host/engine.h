/* The CPU side of the GPU I/O engine: takes I/O queue pairs of an initialised controller (created
 * by the CPU admin path in driver/), registers their rings and the controller's doorbells with
 * CUDA, launches the persistent engine kernel (device/) and lets the host post requests and learn
 * their outcome.
 *
 * What runs on the CPU is setup, request posting (a 64-byte descriptor and one store per group of
 * requests) and, optionally, a low-rate monitor thread that mirrors CSTS into memory the GPU reads
 * (the GPU never reads BAR0; docs/memory-ordering.md). SQEs, doorbells and completions are the
 * GPU's.
 *
 * BAR0 registration: on VFIO the BAR is I/O memory and is registered with
 * cudaHostRegisterIoMemory; the sim's register page is ordinary RAM and is registered with plain
 * cudaHostRegister.
 *
 * Thread safety: one thread posts, polls and releases at a time (the loader's scheduler). */
#ifndef NVL_HOST_ENGINE_H
#define NVL_HOST_ENGINE_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "nvl_device/cmd.h"
#include "nvl_device/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

struct nvl_ctrl;
struct nvl_host_engine;

struct nvl_host_engine_opts {
    uint32_t first_queue;   /* index of the controller's first I/O queue pair to take */
    uint32_t n_queues;      /* queue pairs (one warp each); 0 = all from first_queue on */
    uint32_t ring_entries;  /* request ring size, a power of two (default 1024) */
    uint32_t max_batch;     /* commands per SQ doorbell (default 128) */
    uint32_t max_cmd_bytes; /* largest command; 0 = the controller's max_transfer */
    uint32_t max_inflight;  /* commands in flight per queue pair; 0 = depth - 1 (at most
                               NVL_ENGINE_MAX_CIDS) */
    uint64_t timeout_ns;    /* command outstanding longer fails the engine (default 5 s) */
    uint32_t idle_ns;       /* sleep of an idle warp between ring polls (default 1000) */
    uint32_t idle_exit_us;  /* the kernel exits after this long with nothing to do and is
                               relaunched by the next post (default 2000); 0 = never, which
                               makes any device-wide synchronisation (cudaFree,
                               cudaDeviceSynchronize, lazy module loading) wait for a stop */
    uint32_t csts_poll_us;  /* CSTS mirror period of the monitor thread (default 1000); 0 = no
                               thread, CFS is then noticed by the host's polls only */
    int cuda_device;        /* default 0 */
};

void nvl_host_engine_opts_init(struct nvl_host_engine_opts *o);

/* Claims the queue pairs (nvl_qpair_claim), registers their memory and BAR0 with CUDA and sets
 * up the ring, control block and device tables. The engine is not started. Returns 0 or -errno:
 * -ENODEV (no CUDA device), -EBUSY (a queue pair is in use by the CPU or another engine), -EIO
 * (a CUDA registration failed; logged), -EINVAL. */
int nvl_host_engine_create(struct nvl_ctrl *c, const struct nvl_host_engine_opts *o,
                           struct nvl_host_engine **out);

/* Stops the kernel if it runs, gives the queue pairs back to the CPU driver with the ring state
 * the GPU left (nvl_qpair_unclaim), unregisters and frees everything. NULL is a no-op. */
void nvl_host_engine_destroy(struct nvl_host_engine *e);

/* Registers a destination buffer: `bytes` of pinned host memory the controller can DMA into,
 * with its flat PRP list (prp_list[i]: bus address of page i, NVL_ENGINE_PAGE pages) and the bus
 * address of each page of that list. The lists are copied to the GPU. Only while stopped.
 * *id is the index requests name in nvl_engine_req.buf. Returns 0 or -errno. */
int nvl_host_engine_add_buf(struct nvl_host_engine *e, const uint64_t *prp_list,
                            const uint64_t *prp_page_iova, uint64_t bytes, uint32_t *id);

/* Launches the engine kernel: from now until stop, posts are served (the kernel leaves when idle
 * for idle_exit_us and posts relaunch it). -EALREADY when started, -EIO when the engine failed
 * earlier and its controller has not been reset (nvl_host_engine_recover). */
int nvl_host_engine_start(struct nvl_host_engine *e);

/* Asks the kernel to finish everything posted and exit, and waits for it (at most the command
 * timeout plus 5 s). Returns 0 when it stopped cleanly, -EIO when it had failed (the status word
 * is in nvl_host_engine_state), -ETIMEDOUT when it did not exit. */
int nvl_host_engine_stop(struct nvl_host_engine *e);

/* After a failure and nvl_ctrl_reset(): re-reads the queue pairs' ring state from the driver,
 * clears the engine's failure, so the next start serves the fresh queues. Only while stopped. */
int nvl_host_engine_recover(struct nvl_host_engine *e);

/* Posts n requests as one group: they get consecutive request numbers *first, first + 1, ...;
 * group_first/group_size are filled in here, the rest of each descriptor (target, buffer,
 * notify word, gate) is the caller's. The GPU sees them after one release store. Returns 0,
 * -EAGAIN when the ring lacks room (release finished groups first), -EINVAL, or -EIO when the
 * engine has failed. */
int nvl_host_engine_post(struct nvl_host_engine *e, struct nvl_engine_req *reqs, uint32_t n,
                         uint32_t *first);

/* Whether requests [first, first + n) are complete. 0 when all are, with *status the first
 * non-zero status among them (0 when all succeeded); -EAGAIN while some are in flight; -EIO when
 * they never will be (the kernel has exited or crashed: *status then holds the engine's failure,
 * or an ABORTED status). Never blocks. */
int nvl_host_engine_poll(struct nvl_host_engine *e, uint32_t first, uint32_t n, uint32_t *status);

/* Blocks (sleeping, not spinning) until nvl_host_engine_poll stops answering -EAGAIN, or
 * timeout_ns passes (-ETIMEDOUT). */
int nvl_host_engine_wait(struct nvl_host_engine *e, uint32_t first, uint32_t n, uint64_t timeout_ns,
                         uint32_t *status);

/* Ring entries free for posting now. */
uint32_t nvl_host_engine_room(const struct nvl_host_engine *e);

/* Frees the ring entries of finished requests [first, first + n) for reuse. */
void nvl_host_engine_release(struct nvl_host_engine *e, uint32_t first, uint32_t n);

/* enum nvl_engine_state, and the failure status word in *fatal (may be NULL). */
uint32_t nvl_host_engine_state(struct nvl_host_engine *e, uint32_t *fatal);

/* Per-queue counters summed over the queue pairs, as of the last stop. */
void nvl_host_engine_stats(const struct nvl_host_engine *e, struct nvl_engine_qp_stats *sum);

/* CPU seconds the engine's host side has spent in its own thread (the CSTS monitor) so far; the
 * rest of its CPU cost is in the caller's thread (posting, polling). */
double nvl_host_engine_monitor_cpu_seconds(const struct nvl_host_engine *e);

/* Kernel launches so far (the first start, plus relaunches after idle exits). */
uint64_t nvl_host_engine_launches(const struct nvl_host_engine *e);

/* Facts the engine runs with. */
uint32_t nvl_host_engine_queues(const struct nvl_host_engine *e);
uint32_t nvl_host_engine_lba_size(const struct nvl_host_engine *e);
uint32_t nvl_host_engine_nsid(const struct nvl_host_engine *e);
uint32_t nvl_host_engine_max_cmd_bytes(const struct nvl_host_engine *e);
uint32_t nvl_host_engine_ring_entries(const struct nvl_host_engine *e);
uint64_t nvl_host_engine_timeout_ns(const struct nvl_host_engine *e);
/* The stream the kernel runs on (cudaStream_t). */
cudaStream_t nvl_host_engine_stream(const struct nvl_host_engine *e);

#ifdef __cplusplus
}
#endif

#endif
