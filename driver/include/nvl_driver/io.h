/* The CPU I/O path: NVM Read, Write and Flush submitted by CPU threads.
 *
 * Two levels:
 *  - per queue pair, asynchronous: nvl_qpair_submit_* then nvl_qpair_poll, with a callback per
 *    command. Splitting at the transfer limit is the caller's job at this level.
 *  - per controller, synchronous: nvl_io_read/write/flush move an LBA range of any length into
 *    or out of a DMA buffer, split into commands of at most max_transfer bytes, spread round
 *    robin over a range of queue pairs with up to `depth` commands in flight on each.
 *
 * Errors: functions return 0 or -errno. An NVMe error status travels separately: the callback
 * gets it, and the synchronous calls return -EIO with the first failing status in
 * *nvme_status (nvme_spec.h's status field: cqe.status >> 1).
 *
 * Thread safety: each queue pair has a mutex that every nvl_qpair_* call takes, so any thread
 * may use any queue pair. For throughput use one queue pair per thread (disjoint
 * nvl_io_opts ranges); threads sharing a queue pair serialise on its lock. Callbacks run with
 * the queue pair's lock held and must not call back into the same queue pair. */
#ifndef NVL_DRIVER_IO_H
#define NVL_DRIVER_IO_H

#include <stddef.h>
#include <stdint.h>

#include "ctrl.h"
#include "dma.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Completion callback: err is 0, -EIO (NVMe error in nvme_status) or -ECANCELED (the command
 * was dropped by a controller reset). */
typedef void (*nvl_io_cb)(void *arg, int err, uint16_t nvme_status);

/* Queues a read of nlb blocks at slba into buf + off (nlb * lba_size <= max_transfer). The SQE
 * is written but the doorbell is rung only by nvl_qpair_flush_sq or nvl_qpair_poll, so several
 * submissions share one doorbell write. Returns 0, -EAGAIN (no free CID or SQ slot: poll
 * first), -EINVAL (bad range or buffer), -EBUSY (claimed by an external engine), -ENODEV
 * (controller failed). */
int nvl_qpair_submit_read(struct nvl_qpair *qp, uint64_t slba, uint32_t nlb,
                          const struct nvl_dma *buf, size_t off, nvl_io_cb cb, void *arg);
int nvl_qpair_submit_write(struct nvl_qpair *qp, uint64_t slba, uint32_t nlb,
                           const struct nvl_dma *buf, size_t off, nvl_io_cb cb, void *arg);
/* Like nvl_qpair_submit_read, but the data pointer is PRP1/PRP2 the caller built (NVMe 1.4
 * §4.3) in memory mapped through the controller's transport: for buffers whose PRP lists are
 * built once at setup (the loader's staging slots) instead of per command. */
int nvl_qpair_submit_read_prp(struct nvl_qpair *qp, uint64_t slba, uint32_t nlb, uint64_t prp1,
                              uint64_t prp2, nvl_io_cb cb, void *arg);
int nvl_qpair_submit_flush(struct nvl_qpair *qp, nvl_io_cb cb, void *arg);

/* Rings the SQ doorbell for everything submitted since the last ring. */
void nvl_qpair_flush_sq(struct nvl_qpair *qp);

/* Rings the SQ doorbell if needed, then reaps up to max completions (0: no limit), calling
 * their callbacks, and writes the CQ head doorbell once. Returns the number reaped, or -errno:
 * -EIO when the controller posted a malformed completion (unknown CID, sqhd outside the
 * window) or reports fatal status (CSTS.CFS, read once every 65536 polls that reaped nothing
 * while commands are in flight); the controller then needs nvl_ctrl_reset. Timeouts are the
 * caller's: a command that never completes is not detected here. */
int nvl_qpair_poll(struct nvl_qpair *qp, uint32_t max);

/* Commands submitted and not yet completed. */
uint32_t nvl_qpair_outstanding(const struct nvl_qpair *qp);

struct nvl_io_opts {
    uint32_t first_queue;   /* index of the first queue pair to use */
    uint32_t n_queues;      /* number of queue pairs; 0: all from first_queue on */
    uint32_t depth;         /* commands in flight per queue pair; 0: queue depth - 1 */
    uint32_t max_cmd_bytes; /* split size, a multiple of the LBA size; 0: max_transfer */
    uint32_t timeout_ms;    /* give up after this long without a completion; 0: the
                               controller's io_timeout_ms */
};

void nvl_io_opts_init(struct nvl_io_opts *o);

/* Reads nlb blocks starting at slba into buf + off (needs nlb * lba_size bytes there). o may
 * be NULL for the defaults. Returns 0; -EIO with *nvme_status; -ETIMEDOUT (the controller is
 * then reset); -EINVAL (range beyond the namespace, buffer too small, queue range invalid or
 * claimed). nvme_status may be NULL. */
int nvl_io_read(struct nvl_ctrl *c, const struct nvl_io_opts *o, uint64_t slba, uint64_t nlb,
                const struct nvl_dma *buf, size_t off, uint16_t *nvme_status);
int nvl_io_write(struct nvl_ctrl *c, const struct nvl_io_opts *o, uint64_t slba, uint64_t nlb,
                 const struct nvl_dma *buf, size_t off, uint16_t *nvme_status);
/* Flushes the namespace's volatile write cache (one command, on the first queue). */
int nvl_io_flush(struct nvl_ctrl *c, const struct nvl_io_opts *o, uint16_t *nvme_status);

#ifdef __cplusplus
}
#endif

#endif
