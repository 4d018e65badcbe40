/* Internal state of a controller and its queue pairs, shared by ctrl.c, qpair.c and io.c. */
#ifndef NVL_DRIVER_CTRL_INTERNAL_H
#define NVL_DRIVER_CTRL_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "nvl_driver/ctrl.h"
#include "nvl_driver/dma.h"
#include "nvl_driver/io.h"
#include "nvl_driver/nvme_queue.h"
#include "nvl_driver/prp.h"

/* What the submitter of a command wants back. Indexed by CID. */
struct nvl_req {
    nvl_io_cb cb;  /* called once on completion; may be NULL */
    void *arg;     /* its argument */
    uint32_t *dw0; /* where to store the completion's DW0, or NULL */
    uint8_t opc;   /* opcode, for error messages */
};

struct nvl_qpair {
    struct nvl_ctrl *ctrl;    /* owner */
    uint16_t qid;             /* 0 for the admin queue pair */
    uint32_t depth;           /* entries per SQ and CQ */
    struct nvl_dma *ring;     /* SQ at offset 0, CQ at cq_off; IOVA-contiguous */
    size_t cq_off;            /* byte offset of the CQ in ring, page aligned */
    struct nvl_dma *prp;      /* PRP list pages: prp_pages per CID */
    size_t prp_pages;         /* list pages reserved per CID */
    struct nvme_sq sq;        /* SQ ring state */
    struct nvme_cq cq;        /* CQ ring state */
    struct nvme_cid_map cids; /* CIDs in flight; depth - 1 of them */
    uint64_t *cid_words;      /* storage of cids */
    struct nvl_req *reqs;     /* per CID */
    uint32_t unrung;          /* SQEs written since the last SQ doorbell */
    uint32_t empty_polls;     /* nvl_qpair_poll calls in a row that reaped nothing */
    int claimed;              /* 1: driven by an external engine, CPU path stays off */
    int created;              /* 1: exists on the controller (Create I/O SQ succeeded) */
    int cq_created;           /* 1: its CQ exists on the controller */
    pthread_mutex_t lock;     /* serialises every operation on this queue pair */
};

struct nvl_ctrl {
    struct nvl_transport *t;   /* not owned */
    const char *name;          /* t->name, the log prefix */
    struct nvl_ctrl_opts opts; /* as requested, after defaults */
    struct nvl_ctrl_info info; /* limits in use */
    enum nvl_ctrl_state state;
    uint32_t cc;             /* CC value written at enable */
    struct nvl_qpair admin;  /* qid 0 */
    struct nvl_qpair *io;    /* info.n_io_queues I/O pairs, qid = index + 1 */
    struct nvl_dma *scratch; /* 4 KiB for Identify / log pages during bring-up */
    struct nvme_id_ctrl id_ctrl;
    struct nvme_id_ns id_ns;
    int in_recovery; /* 1 while nvl_ctrl_reset runs: no nested resets */
    int needs_reset; /* a command timed out, CSTS.CFS, or a malformed completion */
};

/* Queue pair memory and ring state (qpair.c). qp->ctrl, qid and depth are set by the caller.
 * The rings are zeroed; nothing is sent to the controller. */
int nvl__qpair_init(struct nvl_qpair *qp, struct nvl_ctrl *c, uint16_t qid, uint32_t depth,
                    size_t max_transfer);
void nvl__qpair_fini(struct nvl_qpair *qp);
/* Zeroes the CQ, resets ring state and cancels commands in flight (callbacks get
 * -ECANCELED). Used after a controller reset. Caller holds the lock. */
void nvl__qpair_reset_rings(struct nvl_qpair *qp);

/* Writes cmd (CID and PRPs filled in here) at the SQ tail without ringing the doorbell. Data
 * are len bytes at buf + off (buf NULL: none). Caller holds the lock. Returns 0, -EAGAIN (no
 * CID or slot), -EINVAL (bad buffer), -ENOSPC (transfer needs more PRP list pages than a CID
 * has). */
int nvl__qpair_submit(struct nvl_qpair *qp, const struct nvme_sqe *cmd, const struct nvl_dma *buf,
                      size_t off, size_t len, nvl_io_cb cb, void *arg, uint32_t *dw0);
/* Rings the SQ doorbell if SQEs are waiting. Caller holds the lock. */
void nvl__qpair_ring(struct nvl_qpair *qp);
/* Reaps up to max completions (0: all available). Caller holds the lock. Returns the number
 * reaped or -EIO for a malformed completion. */
int nvl__qpair_process(struct nvl_qpair *qp, uint32_t max);

/* Monotonic clock in nanoseconds. */
uint64_t nvl__now_ns(void);

/* Polls CSTS for CFS; logs and returns -EIO when set. */
int nvl__ctrl_check_fatal(struct nvl_ctrl *c, const char *what);

#endif
