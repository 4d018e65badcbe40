/* An NVMe controller brought up over a transport: the admin queue, Identify data, limits, and N
 * I/O queue pairs.
 *
 * Bring-up is an explicit state machine (enum nvl_ctrl_state), every limit read from CAP and
 * Identify (NVMe 1.4 §7.6.1): disable and wait CSTS.RDY=0 within CAP.TO; program AQA/ASQ/ACQ;
 * enable with CC.MPS = CAP.MPSMIN, IOSQES=6, IOCQES=4, CSS=NVM; wait RDY=1 within CAP.TO;
 * Identify Controller and Namespace; Set Features Number of Queues; Create I/O CQ/SQ pairs.
 * Destroy deletes the queues and shuts the controller down (CC.SHN normal, wait SHST complete).
 *
 * Admin commands are polled with a timeout. A timeout or CSTS.CFS resets the controller
 * (disable, then the transport's function reset if that fails) and reports the command and
 * the controller's name; nothing here waits without a deadline.
 *
 * Thread safety: admin commands are serialised by a lock inside the controller. Each I/O queue
 * pair has its own lock (see io.h). Create/destroy/reset must not race with anything else. */
#ifndef NVL_DRIVER_CTRL_H
#define NVL_DRIVER_CTRL_H

#include <stddef.h>
#include <stdint.h>

#include "dma.h"
#include "nvme_spec.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

struct nvl_ctrl;
struct nvl_qpair;

struct nvl_ctrl_opts {
    uint32_t n_io_queues;       /* I/O queue pairs to create (default 1); clamped, with a
                                   warning, to what Set Features Number of Queues grants */
    uint32_t io_queue_depth;    /* entries per I/O SQ and CQ (default 256); clamped, with a
                                   warning, to CAP.MQES + 1 */
    uint32_t admin_queue_depth; /* default 32; clamped to CAP.MQES + 1 and 4096 */
    uint32_t admin_timeout_ms;  /* per admin command (default 10000) */
    uint32_t io_timeout_ms;     /* per I/O call without progress (default 10000) */
    uint32_t nsid;              /* namespace the I/O API addresses (default 1) */
    uint32_t max_transfer;      /* bytes per I/O command, below MDTS; 0: MDTS, or 2 MiB when
                                   the controller reports no limit */
    int reset_first;            /* 1: function-level reset through the transport first */
};

/* Fills o with the defaults above. */
void nvl_ctrl_opts_init(struct nvl_ctrl_opts *o);

/* Bring-up states, in order. A failure leaves the controller in NVL_CTRL_FAILED. */
enum nvl_ctrl_state {
    NVL_CTRL_INIT = 0,
    NVL_CTRL_DISABLING, /* CC.EN=0 written, waiting for CSTS.RDY=0 */
    NVL_CTRL_DISABLED,
    NVL_CTRL_ADMIN_QUEUE, /* AQA/ASQ/ACQ programmed */
    NVL_CTRL_ENABLING,    /* CC.EN=1 written, waiting for CSTS.RDY=1 */
    NVL_CTRL_IDENTIFY,    /* Identify Controller and Namespace */
    NVL_CTRL_SET_QUEUES,  /* Set Features Number of Queues */
    NVL_CTRL_CREATE_QUEUES,
    NVL_CTRL_READY, /* I/O allowed */
    NVL_CTRL_SHUTTING_DOWN,
    NVL_CTRL_SHUTDOWN,
    NVL_CTRL_FAILED,
};

const char *nvl_ctrl_state_name(enum nvl_ctrl_state s);

/* What the controller is and what it allows, from CAP, VS and Identify. */
struct nvl_ctrl_info {
    uint64_t cap;            /* CAP register */
    uint32_t vs;             /* VS register */
    uint16_t vid;            /* PCI vendor id from Identify */
    char sn[21];             /* serial number, trailing spaces removed */
    char mn[41];             /* model number */
    char fr[9];              /* firmware revision */
    uint32_t max_entries;    /* CAP.MQES + 1: largest queue */
    uint32_t dstrd;          /* CAP.DSTRD */
    uint32_t timeout_ms;     /* CAP.TO in ms */
    uint32_t page_size;      /* memory page size in use (CC.MPS), bytes */
    uint64_t mdts_bytes;     /* MDTS in bytes; 0: no limit reported */
    uint32_t max_transfer;   /* bytes per I/O command the driver uses (<= MDTS) */
    uint32_t nn;             /* number of namespaces */
    uint32_t nsid;           /* namespace used for I/O */
    uint32_t lba_size;       /* bytes per logical block of nsid */
    uint64_t ns_lbas;        /* NSZE of nsid, in logical blocks */
    uint16_t oncs;           /* optional NVM commands */
    uint8_t vwc;             /* volatile write cache present */
    uint32_t max_io_queues;  /* I/O queue pairs granted by Set Features */
    uint32_t n_io_queues;    /* I/O queue pairs created */
    uint32_t io_queue_depth; /* entries per I/O queue */
    uint32_t admin_depth;    /* entries of the admin queues */
};

/* Brings up the controller behind t. The controller does not own t: destroy the controller
 * first, then the transport. Returns 0 or -errno: -ENODEV (CAP unreadable/all ones, no NVM
 * command set), -ETIMEDOUT (RDY did not follow CC.EN within CAP.TO, or an admin command timed
 * out), -EIO (an admin command failed; the NVMe status is logged), -ENOMEM. */
int nvl_ctrl_create(struct nvl_transport *t, const struct nvl_ctrl_opts *o, struct nvl_ctrl **out);

/* Deletes the I/O queues, shuts the controller down cleanly (CC.SHN normal, waits for
 * SHST complete within CAP.TO), frees everything. External engines must have stopped using
 * their claimed queue pairs. NULL is a no-op. */
void nvl_ctrl_destroy(struct nvl_ctrl *c);

/* Resets the controller and brings it up again with the same queues (same memory, same
 * doorbells, ring state reset). Commands in flight on CPU-owned qpairs complete with -EIO.
 * Externally owned qpairs must be quiesced by their owner before, and re-initialised after. */
int nvl_ctrl_reset(struct nvl_ctrl *c);

enum nvl_ctrl_state nvl_ctrl_get_state(const struct nvl_ctrl *c);
const struct nvl_ctrl_info *nvl_ctrl_get_info(const struct nvl_ctrl *c);
const struct nvme_id_ctrl *nvl_ctrl_id(const struct nvl_ctrl *c);
const struct nvme_id_ns *nvl_ctrl_id_ns(const struct nvl_ctrl *c);
struct nvl_transport *nvl_ctrl_transport(const struct nvl_ctrl *c);
const char *nvl_ctrl_name(const struct nvl_ctrl *c);

/* Runs one admin command synchronously. The caller fills opcode, nsid and cdw10..15; the
 * driver sets the CID and PRPs (for len bytes at buf + off; buf NULL for no data). Returns 0
 * with *nvme_status 0, -EIO with the controller's status in *nvme_status, -ETIMEDOUT (the
 * controller was reset), -ENODEV (the controller is failed). dw0 may be NULL. */
int nvl_ctrl_admin(struct nvl_ctrl *c, const struct nvme_sqe *cmd, const struct nvl_dma *buf,
                   size_t off, size_t len, uint32_t *dw0, uint16_t *nvme_status);

/* Get Log Page into buf (len a multiple of 4, at most 4096 here). */
int nvl_ctrl_get_log_page(struct nvl_ctrl *c, uint8_t lid, uint32_t nsid, const struct nvl_dma *buf,
                          size_t off, size_t len, uint16_t *nvme_status);

/* ---- I/O queue pairs ------------------------------------------------------------------- */

uint32_t nvl_ctrl_qpair_count(const struct nvl_ctrl *c);
/* The i-th I/O queue pair (qid i + 1), or NULL. */
struct nvl_qpair *nvl_ctrl_qpair(struct nvl_ctrl *c, uint32_t i);

/* Everything another engine needs to drive a queue pair itself (the GPU engine registers the
 * memory with CUDA and writes SQEs/doorbells from device code). */
struct nvl_qpair_desc {
    uint16_t qid;                   /* I/O queue id (SQ and CQ share it) */
    uint32_t depth;                 /* entries per SQ and per CQ */
    const struct nvl_dma *ring_dma; /* DMA area holding both rings */
    struct nvme_sqe *sq_vaddr;      /* SQ ring, depth entries, CPU address */
    uint64_t sq_iova;               /* its bus address (given to Create I/O SQ) */
    struct nvme_cqe *cq_vaddr;      /* CQ ring, depth entries */
    uint64_t cq_iova;
    volatile uint32_t *sq_doorbell; /* SQ tail doorbell, CPU address inside BAR0 */
    volatile uint32_t *cq_doorbell; /* CQ head doorbell */
    uint64_t sq_doorbell_off;       /* byte offsets of the doorbells from the start of BAR0 */
    uint64_t cq_doorbell_off;
    uint32_t page_size;    /* controller memory page size for PRPs */
    uint32_t max_transfer; /* bytes per command */
    uint32_t lba_size;
    uint32_t nsid;
    /* Ring state when described: where an engine that claims the pair carries on from. */
    uint32_t sq_tail;
    uint32_t sq_head;
    uint32_t cq_head;
    uint32_t cq_phase;
};
void nvl_qpair_describe(const struct nvl_qpair *qp, struct nvl_qpair_desc *d);

/* Hands the queue pair to an external engine: the CPU I/O path will not touch it. Returns
 * -EBUSY when CPU commands are in flight on it or it is already claimed. The claim lasts until
 * nvl_qpair_unclaim; the rings must then be where the CPU left them, or the claimer resets the
 * controller. */
int nvl_qpair_claim(struct nvl_qpair *qp);
/* Gives it back. sq_tail, cq_head and cq_phase are the ring state the external engine left. */
void nvl_qpair_unclaim(struct nvl_qpair *qp, uint32_t sq_tail, uint32_t sq_head, uint32_t cq_head,
                       uint32_t cq_phase);
int nvl_qpair_is_claimed(const struct nvl_qpair *qp);

#ifdef __cplusplus
}
#endif

#endif
