/* Queue pair mechanics shared by the admin queue and the I/O queues: ring memory, CID
 * tracking, PRP list pools, submission and completion processing. The ring arithmetic itself
 * is nvme_queue.h's; this file adds memory, ordering and the checks on completions. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctrl_internal.h"
#include "nvl_driver/log.h"
#include "nvl_driver/mmio.h"

uint64_t nvl__now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t round_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

int nvl__qpair_init(struct nvl_qpair *qp, struct nvl_ctrl *c, uint16_t qid, uint32_t depth,
                    size_t max_transfer)
{
    size_t page = c->info.page_size;
    size_t sq_bytes = round_up((size_t)depth * sizeof(struct nvme_sqe), page);
    size_t cq_bytes = round_up((size_t)depth * sizeof(struct nvme_cqe), page);
    uint64_t sq_db = nvme_sq_tail_db_offset(qid, c->info.dstrd);
    uint64_t cq_db = nvme_cq_head_db_offset(qid, c->info.dstrd);
    volatile uint8_t *bar = (volatile uint8_t *)c->t->bar0;
    uint32_t ncids = depth - 1;
    int rc;

    memset(qp, 0, sizeof(*qp));
    qp->ctrl = c;
    qp->qid = qid;
    qp->depth = depth;
    if (depth < 2 || cq_db + 4 > c->t->bar0_len) {
        nvl_log_error(c->name,
                      "queue %u: depth %u or doorbell offset 0x%llx outside BAR0 (%zu "
                      "bytes)",
                      qid, depth, (unsigned long long)cq_db, c->t->bar0_len);
        return -EINVAL;
    }
    rc = pthread_mutex_init(&qp->lock, NULL);
    if (rc)
        return -rc;
    /* CAP.CQR=1 (and every controller in practice) needs each queue bus-contiguous. */
    rc = nvl_dma_create(c->t, sq_bytes + cq_bytes, NVL_DMA_CONTIG, &qp->ring);
    if (rc) {
        nvl_log_error(c->name, "queue %u: cannot allocate %zu bytes of ring memory: %s", qid,
                      sq_bytes + cq_bytes, nvl_strerror(rc));
        goto err_destroy_lock;
    }
    if (qp->ring->iova & (page - 1)) {
        nvl_log_error(c->name, "queue %u: ring bus address 0x%llx is not %zu-byte aligned", qid,
                      (unsigned long long)qp->ring->iova, page);
        rc = -EINVAL;
        goto err_free_ring;
    }
    qp->cq_off = sq_bytes;
    qp->prp_pages = nvl_prp_list_pages(page - 4, max_transfer, page);
    if (qp->prp_pages) {
        size_t bytes = (size_t)ncids * qp->prp_pages * page;
        unsigned flags = page > 4096 ? NVL_DMA_CONTIG : 0;
        size_t slot;

        /* A chained list continues at lists.iova + page (prp.h), so the list pages of one
         * command must be bus-contiguous. In no-IOMMU mode 4 KiB pages lie anywhere: back the
         * pool with hugepages then, and check every command's slot below. */
        if (bytes >= NVL_DMA_HUGEPAGE || qp->prp_pages > 1)
            flags |= NVL_DMA_TRY_HUGE;
        rc = nvl_dma_create(c->t, bytes, flags, &qp->prp);
        if (rc) {
            nvl_log_error(c->name, "queue %u: cannot allocate %zu bytes of PRP lists: %s", qid,
                          bytes, nvl_strerror(rc));
            goto err_free_ring;
        }
        for (slot = 0; qp->prp_pages > 1 && slot < ncids; slot++) {
            if (!nvl_dma_contig_at(qp->prp, slot * qp->prp_pages * page, qp->prp_pages * page)) {
                nvl_log_error(c->name,
                              "queue %u: the %zu PRP list pages of a command are not "
                              "bus-contiguous (no-IOMMU mode without hugepages): reserve "
                              "hugepages or lower max_transfer",
                              qid, qp->prp_pages);
                rc = -ERANGE;
                nvl_dma_destroy(qp->prp);
                qp->prp = NULL;
                goto err_free_ring;
            }
        }
    }
    qp->cid_words = calloc(nvme_cid_map_words(ncids), sizeof(uint64_t));
    qp->reqs = calloc(ncids, sizeof(*qp->reqs));
    if (!qp->cid_words || !qp->reqs) {
        rc = -ENOMEM;
        goto err_free_tables;
    }
    nvme_sq_init(&qp->sq, (struct nvme_sqe *)qp->ring->vaddr, depth,
                 (volatile uint32_t *)(bar + sq_db), qid);
    nvme_cq_init(&qp->cq, (struct nvme_cqe *)((uint8_t *)qp->ring->vaddr + qp->cq_off), depth,
                 (volatile uint32_t *)(bar + cq_db), qid);
    nvme_cid_map_init(&qp->cids, qp->cid_words, ncids);
    return 0;

err_free_tables:
    free(qp->reqs);
    free(qp->cid_words);
    nvl_dma_destroy(qp->prp);
err_free_ring:
    nvl_dma_destroy(qp->ring);
err_destroy_lock:
    pthread_mutex_destroy(&qp->lock);
    memset(qp, 0, sizeof(*qp));
    return rc;
}

void nvl__qpair_fini(struct nvl_qpair *qp)
{
    if (!qp->ring)
        return;
    free(qp->reqs);
    free(qp->cid_words);
    nvl_dma_destroy(qp->prp);
    nvl_dma_destroy(qp->ring);
    pthread_mutex_destroy(&qp->lock);
    memset(qp, 0, sizeof(*qp));
}

void nvl__qpair_reset_rings(struct nvl_qpair *qp)
{
    uint32_t cid;

    for (cid = 0; cid < qp->cids.count; cid++) {
        struct nvl_req r = qp->reqs[cid];

        if (!nvme_cid_busy(&qp->cids, (uint16_t)cid))
            continue;
        nvme_cid_free(&qp->cids, (uint16_t)cid);
        memset(&qp->reqs[cid], 0, sizeof(qp->reqs[cid]));
        if (r.cb)
            r.cb(r.arg, -ECANCELED, 0);
    }
    memset(qp->ring->vaddr, 0, qp->ring->len);
    nvme_sq_init(&qp->sq, qp->sq.entries, qp->depth, qp->sq.doorbell, qp->qid);
    nvme_cq_init(&qp->cq, qp->cq.entries, qp->depth, qp->cq.doorbell, qp->qid);
    nvme_cid_map_init(&qp->cids, qp->cid_words, qp->depth - 1);
    qp->unrung = 0;
}

int nvl__qpair_submit(struct nvl_qpair *qp, const struct nvme_sqe *cmd, const struct nvl_dma *buf,
                      size_t off, size_t len, nvl_io_cb cb, void *arg, uint32_t *dw0)
{
    size_t page = qp->ctrl->info.page_size;
    struct nvme_sqe sqe = *cmd;
    uint16_t cid;
    int rc;

    if (nvme_sq_full(&qp->sq))
        return -EAGAIN;
    cid = nvme_cid_alloc(&qp->cids);
    if (cid == NVME_CID_NONE)
        return -EAGAIN;
    sqe.cid = cid;
    sqe.flags &= (uint8_t)~NVME_SQE_PSDT_MASK; /* PRPs, not SGLs */
    if (buf) {
        struct nvl_prp_list_mem lists = {0};

        if (qp->prp) {
            size_t first = (size_t)cid * qp->prp_pages;

            lists.vaddr = (uint64_t *)((uint8_t *)qp->prp->vaddr + first * page);
            lists.iova = nvl_dma_iova(qp->prp, first * page);
            lists.pages = qp->prp_pages;
        }
        rc = nvl_prp_build(buf, off, len, page, &lists, &sqe.prp1, &sqe.prp2);
        if (rc) {
            nvme_cid_free(&qp->cids, cid);
            return rc;
        }
    }
    qp->reqs[cid].cb = cb;
    qp->reqs[cid].arg = arg;
    qp->reqs[cid].dw0 = dw0;
    qp->reqs[cid].opc = sqe.opc;
    nvme_sq_write(&qp->sq, &sqe);
    nvme_sq_advance(&qp->sq, 1);
    qp->unrung++;
    return 0;
}

void nvl__qpair_ring(struct nvl_qpair *qp)
{
    if (!qp->unrung)
        return;
    /* The fence inside makes the SQEs and PRP lists visible before the new tail. */
    nvl_mmio_doorbell_write(qp->sq.doorbell, qp->sq.tail);
    qp->unrung = 0;
}

int nvl__qpair_process(struct nvl_qpair *qp, uint32_t max)
{
    uint32_t n = 0;

    while ((max == 0 || n < max) && nvme_cq_ready(&qp->cq)) {
        struct nvme_cqe cqe;
        struct nvl_req r;
        uint16_t status;

        /* The phase tag publishes the entry: read the body only after it. */
        nvl_mmio_rmb();
        cqe = *nvme_cq_head_entry(&qp->cq);
        if (cqe.sqid != qp->qid || !nvme_cid_busy(&qp->cids, cqe.cid) ||
            nvme_sq_update_head(&qp->sq, cqe.sqhd)) {
            nvl_log_error(qp->ctrl->name,
                          "queue %u: malformed completion (sqid %u, cid %u, sqhd %u; sq head "
                          "%u tail %u): the controller needs a reset",
                          qp->qid, cqe.sqid, cqe.cid, cqe.sqhd, qp->sq.head, qp->sq.tail);
            if (n)
                nvl_mmio_doorbell_write(qp->cq.doorbell, qp->cq.head);
            return -EIO;
        }
        r = qp->reqs[cqe.cid];
        memset(&qp->reqs[cqe.cid], 0, sizeof(r));
        nvme_cid_free(&qp->cids, cqe.cid);
        nvme_cq_advance(&qp->cq);
        n++;
        status = nvme_cqe_status(cqe.status);
        if (r.dw0)
            *r.dw0 = cqe.dw0;
        if (r.cb)
            r.cb(r.arg, status ? -EIO : 0, status);
    }
    if (n)
        nvl_mmio_doorbell_write(qp->cq.doorbell, qp->cq.head);
    return (int)n;
}
