/* The CPU I/O path: NVM Read/Write/Flush on queue pairs, and the synchronous LBA-range calls
 * that split, spread and poll. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "ctrl_internal.h"
#include "nvl_driver/log.h"

#define IO_CHECK_EVERY     1024u  /* empty polls between clock reads (synchronous calls) */
#define IO_POLL_CSTS_EVERY 65536u /* empty nvl_qpair_poll calls between CSTS reads */

static int io_qpair_usable(const struct nvl_qpair *qp)
{
    if (qp->claimed)
        return -EBUSY;
    if (qp->ctrl->state != NVL_CTRL_READY)
        return -ENODEV;
    return 0;
}

static void io_fill_rw(struct nvme_sqe *sqe, uint8_t opc, uint32_t nsid, uint64_t slba,
                       uint32_t nlb)
{
    memset(sqe, 0, sizeof(*sqe));
    sqe->opc = opc;
    sqe->nsid = nsid;
    sqe->cdw10 = (uint32_t)slba;
    sqe->cdw11 = (uint32_t)(slba >> 32);
    sqe->cdw12 = nlb - 1; /* 0's based */
}

/* Queues sqe on qp (and its data buffer, for PRPs) under the pair's lock, when the pair is not
 * claimed by an engine and the controller is ready. */
static int io_submit(struct nvl_qpair *qp, struct nvme_sqe *sqe, const struct nvl_dma *buf,
                     size_t off, size_t len, nvl_io_cb cb, void *arg)
{
    int rc;

    pthread_mutex_lock(&qp->lock);
    rc = io_qpair_usable(qp);
    if (rc == 0)
        rc = nvl__qpair_submit(qp, sqe, buf, off, len, cb, arg, NULL);
    pthread_mutex_unlock(&qp->lock);
    return rc;
}

/* Checks a command's range against the namespace and the transfer limit; locked or not. */
static int io_check_rw(const struct nvl_ctrl_info *in, uint64_t slba, uint64_t nlb,
                       const struct nvl_dma *buf, size_t off, uint64_t max_bytes)
{
    uint64_t bytes = nlb * in->lba_size;

    if (!buf || nlb == 0 || nlb > in->ns_lbas || slba > in->ns_lbas - nlb)
        return -EINVAL;
    if (bytes > max_bytes || off > buf->len || bytes > buf->len - off)
        return -EINVAL;
    return 0;
}

static int io_submit_rw(struct nvl_qpair *qp, uint8_t opc, uint64_t slba, uint32_t nlb,
                        const struct nvl_dma *buf, size_t off, nvl_io_cb cb, void *arg)
{
    const struct nvl_ctrl_info *in;
    struct nvme_sqe sqe;
    int rc;

    if (!qp)
        return -EINVAL;
    in = &qp->ctrl->info;
    rc = io_check_rw(in, slba, nlb, buf, off, in->max_transfer);
    if (rc)
        return rc;
    io_fill_rw(&sqe, opc, in->nsid, slba, nlb);
    return io_submit(qp, &sqe, buf, off, (size_t)nlb * in->lba_size, cb, arg);
}

int nvl_qpair_submit_read(struct nvl_qpair *qp, uint64_t slba, uint32_t nlb,
                          const struct nvl_dma *buf, size_t off, nvl_io_cb cb, void *arg)
{
    return io_submit_rw(qp, NVME_NVM_READ, slba, nlb, buf, off, cb, arg);
}

int nvl_qpair_submit_read_prp(struct nvl_qpair *qp, uint64_t slba, uint32_t nlb, uint64_t prp1,
                              uint64_t prp2, nvl_io_cb cb, void *arg)
{
    const struct nvl_ctrl_info *in;
    struct nvme_sqe sqe;

    if (!qp)
        return -EINVAL;
    in = &qp->ctrl->info;
    if (nlb == 0 || nlb > in->ns_lbas || slba > in->ns_lbas - nlb ||
        (uint64_t)nlb * in->lba_size > in->max_transfer || (prp1 & 3))
        return -EINVAL;
    io_fill_rw(&sqe, NVME_NVM_READ, in->nsid, slba, nlb);
    sqe.prp1 = prp1;
    sqe.prp2 = prp2;
    return io_submit(qp, &sqe, NULL, 0, 0, cb, arg);
}

int nvl_qpair_submit_write(struct nvl_qpair *qp, uint64_t slba, uint32_t nlb,
                           const struct nvl_dma *buf, size_t off, nvl_io_cb cb, void *arg)
{
    return io_submit_rw(qp, NVME_NVM_WRITE, slba, nlb, buf, off, cb, arg);
}

int nvl_qpair_submit_flush(struct nvl_qpair *qp, nvl_io_cb cb, void *arg)
{
    struct nvme_sqe sqe = {0};

    if (!qp)
        return -EINVAL;
    sqe.opc = NVME_NVM_FLUSH;
    sqe.nsid = qp->ctrl->info.nsid;
    return io_submit(qp, &sqe, NULL, 0, 0, cb, arg);
}

void nvl_qpair_flush_sq(struct nvl_qpair *qp)
{
    pthread_mutex_lock(&qp->lock);
    if (!qp->claimed)
        nvl__qpair_ring(qp);
    pthread_mutex_unlock(&qp->lock);
}

int nvl_qpair_poll(struct nvl_qpair *qp, uint32_t max)
{
    int rc;

    pthread_mutex_lock(&qp->lock);
    rc = io_qpair_usable(qp);
    if (rc == 0) {
        nvl__qpair_ring(qp);
        rc = nvl__qpair_process(qp, max);
        if (rc == 0 && qp->cids.used && ++qp->empty_polls % IO_POLL_CSTS_EVERY == 0)
            rc = nvl__ctrl_check_fatal(qp->ctrl, "polling");
        else if (rc > 0)
            qp->empty_polls = 0;
        if (rc < 0)
            qp->ctrl->needs_reset = 1;
    }
    pthread_mutex_unlock(&qp->lock);
    return rc;
}

uint32_t nvl_qpair_outstanding(const struct nvl_qpair *qp)
{
    return qp->cids.used;
}

void nvl_io_opts_init(struct nvl_io_opts *o)
{
    memset(o, 0, sizeof(*o));
}

/* One synchronous call's view of one queue pair. */
struct io_queue {
    struct nvl_qpair *qp;
    struct io_call *call;
    uint32_t inflight;
};

struct io_call {
    int err;            /* first error: -EIO (NVMe status) or -ECANCELED */
    uint16_t status;    /* its NVMe status */
    uint64_t completed; /* commands completed */
};

static void io_call_done(void *arg, int err, uint16_t status)
{
    struct io_queue *q = arg;

    q->inflight--;
    q->call->completed++;
    if (err && !q->call->err) {
        q->call->err = err;
        q->call->status = status;
    }
}

/* Resolves the queue range of o; returns the number of queues or -errno. */
static int io_resolve(struct nvl_ctrl *c, const struct nvl_io_opts *o, struct nvl_io_opts *r)
{
    uint32_t count = c->info.n_io_queues;

    if (o)
        *r = *o;
    else
        nvl_io_opts_init(r);
    if (r->first_queue >= count)
        return -EINVAL;
    if (r->n_queues == 0)
        r->n_queues = count - r->first_queue;
    if (r->n_queues > count - r->first_queue)
        return -EINVAL;
    if (r->depth == 0 || r->depth > c->info.io_queue_depth - 1)
        r->depth = c->info.io_queue_depth - 1;
    if (r->max_cmd_bytes == 0 || r->max_cmd_bytes > c->info.max_transfer)
        r->max_cmd_bytes = c->info.max_transfer;
    if (r->max_cmd_bytes < c->info.lba_size)
        return -EINVAL;
    if (r->timeout_ms == 0)
        r->timeout_ms = c->opts.io_timeout_ms;
    return (int)r->n_queues;
}

static void io_unlock(struct io_queue *qs, uint32_t n)
{
    while (n-- > 0)
        pthread_mutex_unlock(&qs[n].qp->lock);
}

/* Moves nlb blocks at slba to/from buf + off with opc (Read, Write) or issues one Flush (nlb
 * 0). Holds the locks of the queue pairs it uses for the whole call. */
static int io_run(struct nvl_ctrl *c, const struct nvl_io_opts *o, uint8_t opc, uint64_t slba,
                  uint64_t nlb, const struct nvl_dma *buf, size_t off, uint16_t *nvme_status)
{
    const struct nvl_ctrl_info *in = &c->info;
    struct io_call call = {0, 0, 0};
    struct nvl_io_opts r;
    struct io_queue *qs;
    uint64_t next = 0, chunk_blocks, now, last_progress = 0, last_completed = 0;
    uint32_t i, n, spins = 0, inflight_total = 0;
    int rc, fatal = 0;

    if (nvme_status)
        *nvme_status = 0;
    if (!c)
        return -EINVAL;
    rc = io_resolve(c, o, &r);
    if (rc < 0)
        return rc;
    n = (uint32_t)rc;
    if (opc != NVME_NVM_FLUSH) {
        rc = io_check_rw(in, slba, nlb, buf, off, UINT64_MAX);
        if (rc)
            return rc;
    }
    chunk_blocks = r.max_cmd_bytes / in->lba_size;
    qs = calloc(n, sizeof(*qs));
    if (!qs)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        qs[i].qp = &c->io[r.first_queue + i];
        qs[i].call = &call;
        pthread_mutex_lock(&qs[i].qp->lock);
        rc = io_qpair_usable(qs[i].qp);
        if (rc) {
            io_unlock(qs, i + 1);
            free(qs);
            return rc;
        }
    }
    for (;;) {
        /* Submit: one command per queue per round, until each has `depth` in flight. */
        int submitted = 1;

        while (!call.err && submitted && (opc == NVME_NVM_FLUSH ? next == 0 : next < nlb)) {
            submitted = 0;
            for (i = 0; i < n && (opc == NVME_NVM_FLUSH ? next == 0 : next < nlb); i++) {
                struct io_queue *q = &qs[i];
                struct nvme_sqe sqe;
                uint64_t blocks = nlb - next < chunk_blocks ? nlb - next : chunk_blocks;

                if (q->inflight >= r.depth)
                    continue;
                if (opc == NVME_NVM_FLUSH) {
                    memset(&sqe, 0, sizeof(sqe));
                    sqe.opc = NVME_NVM_FLUSH;
                    sqe.nsid = in->nsid;
                    rc = nvl__qpair_submit(q->qp, &sqe, NULL, 0, 0, io_call_done, q, NULL);
                    blocks = 1;
                } else {
                    io_fill_rw(&sqe, opc, in->nsid, slba + next, (uint32_t)blocks);
                    rc = nvl__qpair_submit(q->qp, &sqe, buf, off + next * in->lba_size,
                                           blocks * in->lba_size, io_call_done, q, NULL);
                }
                if (rc == -EAGAIN)
                    continue;
                if (rc) {
                    nvl_log_error(c->name, "cannot submit I/O at LBA %llu: %s",
                                  (unsigned long long)(slba + next), nvl_strerror(rc));
                    call.err = rc;
                    break;
                }
                q->inflight++;
                inflight_total++;
                next += blocks;
                submitted = 1;
            }
        }
        for (i = 0; i < n; i++)
            nvl__qpair_ring(qs[i].qp);
        inflight_total = 0;
        for (i = 0; i < n; i++) {
            if (qs[i].inflight) {
                rc = nvl__qpair_process(qs[i].qp, 0);
                if (rc < 0) {
                    fatal = rc;
                    break;
                }
            }
            inflight_total += qs[i].inflight;
        }
        if (fatal)
            break;
        if (inflight_total == 0 && (call.err || (opc == NVME_NVM_FLUSH ? next != 0 : next >= nlb)))
            break;
        if (call.completed != last_completed) {
            last_completed = call.completed;
            spins = 0;
            continue;
        }
        /* Nothing completed: look at the clock and CSTS only now and then. */
        if (++spins % IO_CHECK_EVERY != 0)
            continue;
        now = nvl__now_ns();
        if (spins == IO_CHECK_EVERY) {
            last_progress = now;
        } else if (now - last_progress > (uint64_t)r.timeout_ms * 1000000ull) {
            nvl_log_error(c->name,
                          "%s: no completion for %u ms with %u commands in flight (LBA "
                          "%llu..%llu): resetting the controller",
                          opc == NVME_NVM_READ    ? "Read"
                          : opc == NVME_NVM_WRITE ? "Write"
                                                  : "Flush",
                          r.timeout_ms, inflight_total, (unsigned long long)slba,
                          (unsigned long long)(slba + nlb));
            fatal = -ETIMEDOUT;
            break;
        }
        rc = nvl__ctrl_check_fatal(c, "I/O");
        if (rc) {
            fatal = rc;
            break;
        }
        sched_yield();
    }
    io_unlock(qs, n);
    if (fatal) {
        /* The reset cancels what is still in flight; the callbacks still see qs. */
        c->needs_reset = 1;
        if (!c->in_recovery)
            nvl_ctrl_reset(c);
        free(qs);
        return fatal == -ETIMEDOUT ? -ETIMEDOUT : -EIO;
    }
    free(qs);
    if (call.err) {
        if (nvme_status)
            *nvme_status = call.status;
        if (call.err == -EIO)
            nvl_log_debug(c->name, "I/O failed: status type 0x%x code 0x%02x",
                          nvme_status_sct(call.status), nvme_status_sc(call.status));
        return call.err;
    }
    return 0;
}

int nvl_io_read(struct nvl_ctrl *c, const struct nvl_io_opts *o, uint64_t slba, uint64_t nlb,
                const struct nvl_dma *buf, size_t off, uint16_t *nvme_status)
{
    return io_run(c, o, NVME_NVM_READ, slba, nlb, buf, off, nvme_status);
}

int nvl_io_write(struct nvl_ctrl *c, const struct nvl_io_opts *o, uint64_t slba, uint64_t nlb,
                 const struct nvl_dma *buf, size_t off, uint16_t *nvme_status)
{
    return io_run(c, o, NVME_NVM_WRITE, slba, nlb, buf, off, nvme_status);
}

int nvl_io_flush(struct nvl_ctrl *c, const struct nvl_io_opts *o, uint16_t *nvme_status)
{
    struct nvl_io_opts r;

    if (!c)
        return -EINVAL;
    if (o)
        r = *o;
    else
        nvl_io_opts_init(&r);
    r.n_queues = 1;
    return io_run(c, &r, NVME_NVM_FLUSH, 0, 0, NULL, 0, nvme_status);
}
