/* The tests' hand-written NVMe host: see sim_host.h. */
#include "sim_host.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000};

    nanosleep(&ts, NULL);
}

uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int host_create(struct host *h, const char *spec)
{
    struct nvl_sim_opts o;
    char err[256];
    int ret;

    memset(h, 0, sizeof(*h));
    nvl_sim_opts_init(&o);
    o.ready_delay_us = 200;
    o.shutdown_delay_us = 200;
    if (spec && *spec) {
        ret = nvl_sim_opts_parse(&o, spec, err, sizeof(err));
        if (ret) {
            fprintf(stderr, "host_create: %s\n", err);
            return ret;
        }
    }
    ret = nvl_sim_create(&o, &h->sim);
    if (ret)
        return ret;
    h->tr = nvl_sim_transport(h->sim);
    h->bar = (volatile uint8_t *)h->tr->bar0;
    h->stride = 4u << nvme_cap_dstrd(*(volatile uint64_t *)h->bar);
    return 0;
}

void host_destroy(struct host *h)
{
    uint32_t i;

    nvl_sim_destroy(h->sim);
    /* The sim is gone, so the buffers are just memory now. */
    for (i = 0; i < HOST_MAX_BUFS; i++)
        free(h->bufs[i]);
    memset(h, 0, sizeof(*h));
}

int host_buf(struct host *h, size_t len, struct hbuf *b)
{
    uint32_t i;

    len = (len + 4095) & ~(size_t)4095;
    b->p = aligned_alloc(4096, len);
    if (!b->p)
        return -ENOMEM;
    memset(b->p, 0, len);
    b->len = len;
    if (h->tr->ops->dma_map(h->tr, b->p, len, &b->iova))
        goto err_free;
    for (i = 0; i < HOST_MAX_BUFS; i++) {
        if (!h->bufs[i]) {
            h->bufs[i] = b->p;
            return 0;
        }
    }
    h->tr->ops->dma_unmap(h->tr, b->p, len, b->iova);
err_free:
    free(b->p);
    b->p = NULL;
    return -EIO;
}

void host_buf_free(struct host *h, struct hbuf *b)
{
    uint32_t i;

    if (b->p && h->tr->ops->dma_unmap(h->tr, b->p, b->len, b->iova) == 0) {
        for (i = 0; i < HOST_MAX_BUFS; i++)
            if (h->bufs[i] == b->p)
                h->bufs[i] = NULL;
        free(b->p);
    }
    memset(b, 0, sizeof(*b));
}

uint32_t host_reg32(struct host *h, uint32_t off)
{
    return __atomic_load_n((volatile uint32_t *)(h->bar + off), __ATOMIC_ACQUIRE);
}

void host_reg32_write(struct host *h, uint32_t off, uint32_t v)
{
    __atomic_store_n((volatile uint32_t *)(h->bar + off), v, __ATOMIC_RELEASE);
}

void host_reg64_write(struct host *h, uint32_t off, uint64_t v)
{
    host_reg32_write(h, off, (uint32_t)v);
    host_reg32_write(h, off + 4, (uint32_t)(v >> 32));
}

volatile uint32_t *host_sq_db(struct host *h, uint32_t qid)
{
    return (volatile uint32_t *)(h->bar + 0x1000 + 2u * qid * h->stride);
}

volatile uint32_t *host_cq_db(struct host *h, uint32_t qid)
{
    return (volatile uint32_t *)(h->bar + 0x1000 + (2u * qid + 1u) * h->stride);
}

void host_db_write(volatile uint32_t *db, uint32_t v)
{
    /* Release: the SQEs (or the reads of consumed CQEs) come before the new doorbell value. */
    __atomic_store_n(db, v, __ATOMIC_RELEASE);
}

int host_wait_csts(struct host *h, uint32_t mask, uint32_t want, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;

    while ((host_reg32(h, 0x1c) & mask) != want) {
        if (now_ms() > end)
            return -ETIMEDOUT;
        sleep_us(50);
    }
    return 0;
}

uint32_t host_cc_enabled(void)
{
    /* EN, CSS NVM, MPS 4 KiB, round robin, IOSQES 6, IOCQES 4. */
    return 1u | (6u << 16) | (4u << 20);
}

static int hq_alloc(struct host *h, struct hq *q, uint16_t qid, uint32_t entries)
{
    memset(q, 0, sizeof(*q));
    if (host_buf(h, (size_t)entries * 64, &q->sqm) || host_buf(h, (size_t)entries * 16, &q->cqm))
        return -ENOMEM;
    q->qid = qid;
    q->size = entries;
    q->sq = (struct nvme_sqe *)q->sqm.p;
    q->cq = (struct nvme_cqe *)q->cqm.p;
    q->phase = 1;
    return 0;
}

int host_enable(struct host *h, uint32_t entries)
{
    if (!h->aq.sqm.p && hq_alloc(h, &h->aq, 0, entries))
        return -ENOMEM;
    memset(h->aq.cqm.p, 0, h->aq.cqm.len);
    h->aq.sq_tail = 0;
    h->aq.cq_head = 0;
    h->aq.phase = 1;
    host_reg32_write(h, 0x24, (entries - 1) | ((entries - 1) << 16));
    host_reg64_write(h, 0x28, h->aq.sqm.iova);
    host_reg64_write(h, 0x30, h->aq.cqm.iova);
    host_reg32_write(h, 0x14, host_cc_enabled());
    return host_wait_csts(h, 1, 1, 2000);
}

int host_disable(struct host *h)
{
    host_reg32_write(h, 0x14, 0);
    return host_wait_csts(h, 1, 0, 2000);
}

void host_push(struct hq *q, struct nvme_sqe *sqe, int keep_cid)
{
    if (!keep_cid)
        sqe->cid = q->next_cid++;
    memcpy(&q->sq[q->sq_tail], sqe, sizeof(*sqe));
    q->sq_tail = (q->sq_tail + 1) % q->size;
}

void host_ring(struct host *h, struct hq *q)
{
    host_db_write(host_sq_db(h, q->qid), q->sq_tail);
}

void host_submit(struct host *h, struct hq *q, struct nvme_sqe *sqe, int keep_cid)
{
    host_push(q, sqe, keep_cid);
    host_ring(h, q);
}

int host_cqe_ready(struct hq *q)
{
    uint16_t st = __atomic_load_n(&q->cq[q->cq_head].status, __ATOMIC_ACQUIRE);

    return (st & 1u) == q->phase;
}

int host_reap_noring(struct hq *q, struct nvme_cqe *out, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    uint32_t spins = 0;

    while (!host_cqe_ready(q)) {
        if (now_ms() > end)
            return -ETIMEDOUT;
        if (++spins > 1000)
            sleep_us(20);
    }
    /* After the acquire of the phase tag, read the body field by field as the sim wrote it. */
    {
        struct nvme_cqe *e = &q->cq[q->cq_head];

        out->dw0 = __atomic_load_n(&e->dw0, __ATOMIC_RELAXED);
        out->dw1 = __atomic_load_n(&e->dw1, __ATOMIC_RELAXED);
        out->sqhd = __atomic_load_n(&e->sqhd, __ATOMIC_RELAXED);
        out->sqid = __atomic_load_n(&e->sqid, __ATOMIC_RELAXED);
        out->cid = __atomic_load_n(&e->cid, __ATOMIC_RELAXED);
        out->status = __atomic_load_n(&e->status, __ATOMIC_RELAXED);
    }
    if (++q->cq_head == q->size) {
        q->cq_head = 0;
        q->phase ^= 1u;
    }
    return 0;
}

int host_reap(struct host *h, struct hq *q, struct nvme_cqe *out, int timeout_ms)
{
    int ret = host_reap_noring(q, out, timeout_ms);

    if (!ret)
        host_db_write(host_cq_db(h, q->qid), q->cq_head);
    return ret;
}

int host_admin(struct host *h, struct nvme_sqe *sqe, struct nvme_cqe *out)
{
    struct nvme_cqe c;

    host_submit(h, &h->aq, sqe, 0);
    if (host_reap(h, &h->aq, &c, 2000))
        return -1;
    if (out)
        *out = c;
    return CQE_STATUS(&c);
}

int host_create_ioq(struct host *h, uint16_t qid, uint32_t entries)
{
    struct hq *q = &h->ioq[qid];
    struct nvme_sqe sqe;
    int st;

    if (!q->sqm.p && hq_alloc(h, q, qid, entries))
        return -1;
    memset(&sqe, 0, sizeof(sqe));
    sqe.opc = NVME_ADMIN_CREATE_CQ;
    sqe.prp1 = q->cqm.iova;
    sqe.cdw10 = ((entries - 1) << 16) | qid;
    sqe.cdw11 = 1; /* PC */
    st = host_admin(h, &sqe, NULL);
    if (st)
        return st;
    memset(&sqe, 0, sizeof(sqe));
    sqe.opc = NVME_ADMIN_CREATE_SQ;
    sqe.prp1 = q->sqm.iova;
    sqe.cdw10 = ((entries - 1) << 16) | qid;
    sqe.cdw11 = ((uint32_t)qid << 16) | 1;
    return host_admin(h, &sqe, NULL);
}

int host_delete_ioq(struct host *h, uint16_t qid)
{
    struct nvme_sqe sqe;
    int st;

    memset(&sqe, 0, sizeof(sqe));
    sqe.opc = NVME_ADMIN_DELETE_SQ;
    sqe.cdw10 = qid;
    st = host_admin(h, &sqe, NULL);
    if (st)
        return st;
    memset(&sqe, 0, sizeof(sqe));
    sqe.opc = NVME_ADMIN_DELETE_CQ;
    sqe.cdw10 = qid;
    return host_admin(h, &sqe, NULL);
}

int host_bringup(struct host *h, uint16_t nq, uint32_t entries)
{
    struct nvme_sqe sqe;
    uint16_t q;

    if (host_enable(h, 32))
        return -1;
    memset(&sqe, 0, sizeof(sqe));
    sqe.opc = NVME_ADMIN_SET_FEATURES;
    sqe.cdw10 = NVME_FEAT_NUM_QUEUES;
    sqe.cdw11 = (uint32_t)(nq - 1) | ((uint32_t)(nq - 1) << 16);
    if (host_admin(h, &sqe, NULL))
        return -1;
    for (q = 1; q <= nq; q++)
        if (host_create_ioq(h, q, entries))
            return -1;
    return 0;
}

void host_rw_sqe(struct nvme_sqe *sqe, uint8_t opc, uint64_t slba, uint32_t nlb, uint32_t lba_size,
                 struct hbuf *b, size_t off, struct hbuf *prp_list)
{
    size_t len = (size_t)nlb * lba_size;
    uint64_t first = 4096 - ((b->iova + off) & 4095);

    memset(sqe, 0, sizeof(*sqe));
    sqe->opc = opc;
    sqe->nsid = 1;
    sqe->cdw10 = (uint32_t)slba;
    sqe->cdw11 = (uint32_t)(slba >> 32);
    sqe->cdw12 = nlb - 1;
    sqe->prp1 = b->iova + off;
    if (len <= first)
        return;
    if (len <= first + 4096) {
        sqe->prp2 = b->iova + off + first;
        return;
    }
    /* A PRP list, chained across list pages: the last slot of a full page points to the next
     * page when more than one entry remains (NVMe 1.4 §4.3). */
    {
        uint64_t *list = (uint64_t *)prp_list->p;
        uint64_t addr = b->iova + off + first;
        size_t remaining = (len - first + 4095) / 4096;
        size_t slot = 0, page = 0;

        sqe->prp2 = prp_list->iova;
        while (remaining) {
            if (slot == 511 && remaining > 1) {
                page++;
                list[page * 512 - 1] = prp_list->iova + page * 4096;
                slot = 0;
                continue;
            }
            list[page * 512 + slot] = addr;
            addr += 4096;
            slot++;
            remaining--;
        }
    }
}

int host_io(struct host *h, uint16_t qid, uint8_t opc, uint64_t slba, uint32_t nlb, struct hbuf *b,
            size_t off, struct hbuf *prp_list)
{
    struct hq *q = &h->ioq[qid];
    struct nvme_sqe sqe;
    struct nvme_cqe c;

    host_rw_sqe(&sqe, opc, slba, nlb, nvl_sim_lba_size(h->sim), b, off, prp_list);
    host_submit(h, q, &sqe, 0);
    if (host_reap(h, q, &c, 5000))
        return -1;
    return CQE_STATUS(&c);
}

void host_stats(struct host *h, struct nvl_sim_stats *s)
{
    nvl_sim_get_stats(h->sim, s);
}

uint64_t host_viol(struct host *h, enum nvl_sim_violation v)
{
    struct nvl_sim_stats s;

    nvl_sim_get_stats(h->sim, &s);
    return s.violations[v];
}

int host_wait_viol(struct host *h, enum nvl_sim_violation v, uint64_t min, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;

    while (host_viol(h, v) < min) {
        if (now_ms() > end)
            return -ETIMEDOUT;
        sleep_us(100);
    }
    return 0;
}

static uint8_t pattern_byte(uint64_t pos, uint32_t seed)
{
    uint64_t x = (pos + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed << 32);

    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 32;
    return (uint8_t)x;
}

void pattern_fill(uint8_t *p, size_t len, uint64_t first_byte, uint32_t seed)
{
    size_t i;

    for (i = 0; i < len; i++)
        p[i] = pattern_byte(first_byte + i, seed);
}

int pattern_check(const uint8_t *p, size_t len, uint64_t first_byte, uint32_t seed)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (p[i] != pattern_byte(first_byte + i, seed))
            return -1;
    return 0;
}
