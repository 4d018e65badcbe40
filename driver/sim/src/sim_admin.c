/* Admin command set (NVMe 1.4 §5): Identify, Set/Get Features, Create/Delete I/O SQ/CQ, Get Log
 * Page, Abort and Asynchronous Event Request. Runs on the control thread only, which also owns
 * the queue arrays; service threads learn about queues through their published tables. */
#include "sim_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SIM_AERL 3 /* Identify AERL: four Asynchronous Event Requests may be outstanding */

static uint16_t admin_fail(struct sim_thread *t, enum nvl_sim_violation v, uint16_t status,
                           const struct nvme_sqe *sqe, const char *what)
{
    nvl__sim_violation(t->sim, v, "admin opcode 0x%02x CID %u: %s", sqe->opc, sqe->cid, what);
    return status | NVME_STATUS_DNR;
}

static uint16_t st_generic(uint8_t sc)
{
    return NVME_STATUS(NVME_SCT_GENERIC, sc);
}

static uint16_t st_specific(uint8_t sc)
{
    return NVME_STATUS(NVME_SCT_COMMAND_SPECIFIC, sc);
}

/* Copies `len` bytes of `src` (zero-padded up to `xfer`) into the command's data buffer. */
static uint16_t admin_to_host(struct sim_thread *t, const struct nvme_sqe *sqe, const void *src,
                              uint64_t len, uint64_t xfer)
{
    struct nvl_sim *sim = t->sim;
    struct sim_prp_result pr;
    const uint8_t *s = src;
    uint16_t st;
    uint32_t i;

    if (sim->mdts_bytes && xfer > sim->mdts_bytes)
        return admin_fail(t, NVL_SIM_VIOL_MDTS, st_generic(NVME_SC_INVALID_FIELD), sqe,
                          "transfer exceeds MDTS");
    st = nvl__sim_prp_walk(&sim->dma, &t->dcache, sqe->prp1, sqe->prp2, xfer, t->segs, t->max_segs,
                           &pr);
    if (st)
        return admin_fail(t, pr.viol, st, sqe,
                          pr.viol == NVL_SIM_VIOL_DMA ? "PRP address outside the DMA regions"
                                                      : "bad PRP offset");
    for (i = 0; i < pr.nseg; i++) {
        uint64_t n = len < t->segs[i].len ? len : t->segs[i].len;

        memcpy(t->segs[i].p, s, (size_t)n);
        memset(t->segs[i].p + n, 0, (size_t)(t->segs[i].len - n));
        s += n;
        len -= n;
    }
    return 0;
}

/* ASCII, space padded, no terminator (§1.5). */
static void pad_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);

    memset(dst, ' ', cap);
    memcpy(dst, src, n < cap ? n : cap);
}

static void identify_ctrl(struct nvl_sim *sim, struct nvme_id_ctrl *id)
{
    memset(id, 0, sizeof(*id));
    pad_copy(id->sn, sizeof(id->sn), sim->opts.serial);
    pad_copy(id->mn, sizeof(id->mn), sim->opts.model);
    pad_copy(id->fr, sizeof(id->fr), "nvl-0.1");
    id->rab = 0;
    id->mdts = sim->opts.mdts;
    id->cntlid = 1;
    id->ver = sim->vs;
    id->cntrltype = 1; /* I/O controller */
    id->acl = 3;
    id->aerl = SIM_AERL;
    id->frmw = 0x3; /* one slot, read-only */
    id->lpa = 0;
    id->elpe = SIM_ERROR_LOG_ENTRIES - 1;
    id->npss = 0;
    id->wctemp = 343;
    id->cctemp = 363;
    id->sqes = (NVME_SQE_SIZE_LOG2 << 4) | NVME_SQE_SIZE_LOG2;
    id->cqes = (NVME_CQE_SIZE_LOG2 << 4) | NVME_CQE_SIZE_LOG2;
    id->nn = 1;
    id->oncs = 0;
    id->fuses = 0;
    id->vwc = NVME_VWC_PRESENT;
    id->sgls = 0;
    id->psd[0].mp = 2500;
    snprintf(id->subnqn, sizeof(id->subnqn), "nqn.2026-01.io.nvload:sim:%s", sim->opts.serial);
}

static void identify_ns(struct nvl_sim *sim, struct nvme_id_ns *ns)
{
    uint64_t i;

    memset(ns, 0, sizeof(*ns));
    ns->nsze = sim->nblocks;
    ns->ncap = sim->nblocks;
    ns->nuse = sim->nblocks;
    ns->nlbaf = 0;
    ns->flbas = 0;
    ns->lbaf[0].lbads = (uint8_t)sim->lba_shift;
    ns->lbaf[0].ms = 0;
    for (i = 0; i < 8; i++)
        ns->eui64[i] = (uint8_t)(0x4e + i);
}

static void admin_identify(struct sim_thread *t, const struct nvme_sqe *sqe,
                           struct sim_cmd_result *r)
{
    struct nvl_sim *sim = t->sim;
    uint32_t cns = sqe->cdw10 & 0xff;
    union {
        struct nvme_id_ctrl ctrl;
        struct nvme_id_ns ns;
        uint32_t list[1024];
        uint8_t raw[NVME_IDENTIFY_DATA_SIZE];
    } *buf = malloc(sizeof(*buf));

    if (!buf) {
        r->status = st_generic(NVME_SC_INTERNAL);
        return;
    }
    memset(buf, 0, sizeof(*buf));
    switch (cns) {
    case NVME_IDENTIFY_NS:
        if (sqe->nsid != 1) {
            r->status = admin_fail(t, NVL_SIM_VIOL_NAMESPACE, st_generic(NVME_SC_INVALID_NAMESPACE),
                                   sqe, "Identify Namespace of an invalid NSID");
            goto out_free;
        }
        identify_ns(sim, &buf->ns);
        break;
    case NVME_IDENTIFY_CTRL:
        identify_ctrl(sim, &buf->ctrl);
        break;
    case NVME_IDENTIFY_ACTIVE_NS_LIST:
        /* §5.15.2.3: NSIDs greater than CDW1.NSID; FFFFFFFEh and FFFFFFFFh are invalid. */
        if (sqe->nsid >= 0xfffffffeu) {
            r->status = admin_fail(t, NVL_SIM_VIOL_NAMESPACE, st_generic(NVME_SC_INVALID_NAMESPACE),
                                   sqe, "active namespace list from an invalid NSID");
            goto out_free;
        }
        if (sqe->nsid < 1)
            buf->list[0] = 1;
        break;
    case NVME_IDENTIFY_NS_DESC_LIST:
        if (sqe->nsid != 1) {
            r->status = admin_fail(t, NVL_SIM_VIOL_NAMESPACE, st_generic(NVME_SC_INVALID_NAMESPACE),
                                   sqe, "descriptor list of an invalid NSID");
            goto out_free;
        }
        /* One descriptor: NIDT 1 (IEEE EUI-64), NIDL 8. */
        buf->raw[0] = 1;
        buf->raw[1] = 8;
        identify_ns(sim, &buf->ns);
        memcpy(&buf->raw[4], buf->ns.eui64, 8);
        memset(&buf->raw[12], 0, sizeof(buf->raw) - 12);
        break;
    default:
        r->status = admin_fail(t, NVL_SIM_VIOL_FIELD, st_generic(NVME_SC_INVALID_FIELD), sqe,
                               "unsupported Identify CNS");
        goto out_free;
    }
    r->status = admin_to_host(t, sqe, buf, sizeof(*buf), NVME_IDENTIFY_DATA_SIZE);
out_free:
    free(buf);
}

static int feature_simple(uint32_t fid)
{
    switch (fid) {
    case NVME_FEAT_ARBITRATION:
    case NVME_FEAT_POWER_MGMT:
    case NVME_FEAT_TEMP_THRESHOLD:
    case NVME_FEAT_ERROR_RECOVERY:
    case NVME_FEAT_IRQ_COALESCE:
    case NVME_FEAT_IRQ_CONFIG:
    case NVME_FEAT_WRITE_ATOMIC:
    case NVME_FEAT_ASYNC_EVENT:
        return 1;
    default:
        return 0;
    }
}

static void admin_set_features(struct sim_thread *t, const struct nvme_sqe *sqe,
                               struct sim_cmd_result *r)
{
    struct nvl_sim *sim = t->sim;
    uint32_t fid = sqe->cdw10 & 0xff;

    if (sqe->cdw10 & (1u << 31)) {
        r->status = admin_fail(t, NVL_SIM_VIOL_FIELD, st_specific(NVME_SC_FEATURE_ID_NOT_SAVEABLE),
                               sqe, "features cannot be saved");
        return;
    }
    if (fid == NVME_FEAT_NUM_QUEUES) {
        uint32_t nsqr = sqe->cdw11 & 0xffff, ncqr = sqe->cdw11 >> 16;

        /* §5.21.1.7: 65535 is invalid; the feature may only be set before any I/O queue is
         * created. */
        if (nsqr == 0xffff || ncqr == 0xffff) {
            r->status = admin_fail(t, NVL_SIM_VIOL_FIELD, st_generic(NVME_SC_INVALID_FIELD), sqe,
                                   "Number of Queues of 65536");
            return;
        }
        if (sim->queues_created) {
            r->status =
                admin_fail(t, NVL_SIM_VIOL_CMD_SEQUENCE, st_generic(NVME_SC_COMMAND_SEQUENCE_ERROR),
                           sqe, "Number of Queues after I/O queues were created");
            return;
        }
        sim->nsq_granted = nsqr + 1 < sim->opts.max_io_queues ? nsqr + 1 : sim->opts.max_io_queues;
        sim->ncq_granted = ncqr + 1 < sim->opts.max_io_queues ? ncqr + 1 : sim->opts.max_io_queues;
        r->dw0 = nvme_feat_num_queues_make(sim->nsq_granted, sim->ncq_granted);
        return;
    }
    if (fid == NVME_FEAT_VOLATILE_WC) {
        sim->vwc_enabled = sqe->cdw11 & 1;
        return;
    }
    if (feature_simple(fid)) {
        sim->feat[fid] = sqe->cdw11;
        return;
    }
    r->status = admin_fail(t, NVL_SIM_VIOL_FIELD, st_generic(NVME_SC_INVALID_FIELD), sqe,
                           "unsupported feature");
}

static void admin_get_features(struct sim_thread *t, const struct nvme_sqe *sqe,
                               struct sim_cmd_result *r)
{
    struct nvl_sim *sim = t->sim;
    uint32_t fid = sqe->cdw10 & 0xff;
    uint32_t sel = (sqe->cdw10 >> 8) & 0x7;

    if (sel != 0) {
        /* Only the current value: ONCS bit 4 (Save/Select) is not set. */
        r->status = admin_fail(t, NVL_SIM_VIOL_FIELD, st_generic(NVME_SC_INVALID_FIELD), sqe,
                               "Get Features SEL other than current");
        return;
    }
    if (fid == NVME_FEAT_NUM_QUEUES)
        r->dw0 = nvme_feat_num_queues_make(sim->nsq_granted, sim->ncq_granted);
    else if (fid == NVME_FEAT_VOLATILE_WC)
        r->dw0 = sim->vwc_enabled;
    else if (feature_simple(fid))
        r->dw0 = sim->feat[fid];
    else
        r->status = admin_fail(t, NVL_SIM_VIOL_FIELD, st_generic(NVME_SC_INVALID_FIELD), sqe,
                               "unsupported feature");
}

int nvl__sim_publish_table(struct nvl_sim *sim, uint32_t idx, struct sim_thread *self)
{
    struct sim_thread *t = &sim->threads[idx];
    struct sim_qtable *tb = NULL, *old;
    uint32_t nsq = 0, ncq = 0, q;

    for (q = 1; q <= sim->opts.max_io_queues; q++) {
        if (sim->cqs[q] && sim->cqs[q]->owner == idx)
            ncq++;
        if (sim->sqs[q] && sim->sqs[q]->cq->owner == idx)
            nsq++;
    }
    if (nsq || ncq) {
        tb = malloc(sizeof(*tb) + (nsq + ncq) * sizeof(void *));
        if (!tb)
            return -ENOMEM;
        tb->sq = (struct sim_sq **)(tb + 1);
        tb->cq = (struct sim_cq **)(tb->sq + nsq);
        tb->nsq = 0;
        tb->ncq = 0;
        for (q = 1; q <= sim->opts.max_io_queues; q++) {
            if (sim->cqs[q] && sim->cqs[q]->owner == idx)
                tb->cq[tb->ncq++] = sim->cqs[q];
            if (sim->sqs[q] && sim->sqs[q]->cq->owner == idx)
                tb->sq[tb->nsq++] = sim->sqs[q];
        }
    }
    old = __atomic_exchange_n(&t->table, tb, __ATOMIC_SEQ_CST);
    nvl__sim_synchronize(sim, self);
    free(old);
    return 0;
}

/* Queue state on cache lines of its own: queues of different service threads must not share
 * a line, or every SQE fetched on one would bounce the other's state. */
static void *sim_queue_alloc(size_t size)
{
    size_t rounded = (size + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);

    if (p)
        memset(p, 0, rounded);
    return p;
}

/* Validates and translates a contiguous queue's memory. 0 or the NVMe status. */
static uint16_t queue_memory(struct sim_thread *t, const struct nvme_sqe *sqe, uint64_t bytes,
                             void **ring)
{
    /* The base must be page aligned (CC.MPS). */
    if (sqe->prp1 & (SIM_PAGE - 1))
        return admin_fail(t, NVL_SIM_VIOL_PRP_OFFSET, st_generic(NVME_SC_INVALID_PRP_OFFSET), sqe,
                          "queue base not page aligned");
    *ring = nvl__sim_dma_xlate(&t->sim->dma, &t->dcache, sqe->prp1, bytes);
    if (!*ring)
        return admin_fail(t, NVL_SIM_VIOL_DMA, st_generic(NVME_SC_DATA_TRANSFER_ERROR), sqe,
                          "queue memory outside the DMA regions");
    /* Two queues in the same memory would corrupt each other; hardware would not notice. */
    if (nvl__sim_iova_in_use(t->sim, sqe->prp1, bytes))
        return admin_fail(t, NVL_SIM_VIOL_QUEUE_OVERLAP, st_generic(NVME_SC_INVALID_FIELD), sqe,
                          "queue memory overlaps a live queue");
    return 0;
}

static void admin_create_cq(struct sim_thread *t, const struct nvme_sqe *sqe,
                            struct sim_cmd_result *r)
{
    struct nvl_sim *sim = t->sim;
    uint32_t qid = sqe->cdw10 & 0xffff;
    uint32_t qsize = sqe->cdw10 >> 16; /* 0's based */
    uint32_t pc = sqe->cdw11 & NVME_CREATE_CQ_PC;
    uint32_t ien = sqe->cdw11 & NVME_CREATE_CQ_IEN;
    uint32_t iv = sqe->cdw11 >> 16;
    struct sim_cq *cq;
    void *ring;
    int ret;

    /* §5.3 */
    if (qid == 0 || qid > sim->ncq_granted || sim->cqs[qid]) {
        r->status =
            admin_fail(t, NVL_SIM_VIOL_QUEUE_ID, st_specific(NVME_SC_INVALID_QUEUE_IDENTIFIER), sqe,
                       "Create I/O CQ: bad or used queue identifier");
        return;
    }
    if (qsize == 0 || qsize > nvme_cap_mqes(sim->cap)) {
        r->status = admin_fail(t, NVL_SIM_VIOL_QUEUE_SIZE, st_specific(NVME_SC_INVALID_QUEUE_SIZE),
                               sqe, "Create I/O CQ: size 1 or above CAP.MQES");
        return;
    }
    if (!pc) {
        r->status = admin_fail(t, NVL_SIM_VIOL_QUEUE_CONTIG, st_generic(NVME_SC_INVALID_FIELD), sqe,
                               "Create I/O CQ: PC = 0 but CAP.CQR = 1");
        return;
    }
    if (ien && iv != 0) {
        /* One interrupt vector at most; nvload polls. */
        r->status = admin_fail(t, NVL_SIM_VIOL_FIELD, st_specific(NVME_SC_INVALID_INTERRUPT_VECTOR),
                               sqe, "Create I/O CQ: interrupt vector beyond 0");
        return;
    }
    r->status = queue_memory(t, sqe, (uint64_t)(qsize + 1) * sizeof(struct nvme_cqe), &ring);
    if (r->status)
        return;
    cq = sim_queue_alloc(sizeof(*cq));
    if (!cq ||
        nvl__sim_cq_init(cq, (uint16_t)qid, ring, sqe->prp1, qsize + 1, nvl__sim_cq_db(sim, qid))) {
        free(cq);
        r->status = st_generic(NVME_SC_INTERNAL);
        return;
    }
    cq->owner = (qid - 1) % sim->nthreads;
    SIM_STORE_REL(cq->db, 0u);
    pthread_mutex_lock(&sim->qlock);
    sim->cqs[qid] = cq;
    pthread_mutex_unlock(&sim->qlock);
    sim->queues_created = 1;
    ret = nvl__sim_publish_table(sim, cq->owner, t);
    if (ret) {
        pthread_mutex_lock(&sim->qlock);
        sim->cqs[qid] = NULL;
        pthread_mutex_unlock(&sim->qlock);
        nvl__sim_cq_fini(cq);
        free(cq);
        r->status = st_generic(NVME_SC_INTERNAL);
    }
}

static void admin_create_sq(struct sim_thread *t, const struct nvme_sqe *sqe,
                            struct sim_cmd_result *r)
{
    struct nvl_sim *sim = t->sim;
    uint32_t qid = sqe->cdw10 & 0xffff;
    uint32_t qsize = sqe->cdw10 >> 16;
    uint32_t pc = sqe->cdw11 & NVME_CREATE_SQ_PC;
    uint32_t cqid = sqe->cdw11 >> 16;
    struct sim_sq *sq;
    struct sim_cq *cq;
    void *ring;
    int ret;

    /* §5.4 */
    if (qid == 0 || qid > sim->nsq_granted || sim->sqs[qid]) {
        r->status =
            admin_fail(t, NVL_SIM_VIOL_QUEUE_ID, st_specific(NVME_SC_INVALID_QUEUE_IDENTIFIER), sqe,
                       "Create I/O SQ: bad or used queue identifier");
        return;
    }
    if (qsize == 0 || qsize > nvme_cap_mqes(sim->cap)) {
        r->status = admin_fail(t, NVL_SIM_VIOL_QUEUE_SIZE, st_specific(NVME_SC_INVALID_QUEUE_SIZE),
                               sqe, "Create I/O SQ: size 1 or above CAP.MQES");
        return;
    }
    if (cqid == 0 || cqid > sim->opts.max_io_queues || !sim->cqs[cqid]) {
        r->status =
            admin_fail(t, NVL_SIM_VIOL_QUEUE_CQ, st_specific(NVME_SC_COMPLETION_QUEUE_INVALID), sqe,
                       "Create I/O SQ: completion queue does not exist");
        return;
    }
    if (!pc) {
        r->status = admin_fail(t, NVL_SIM_VIOL_QUEUE_CONTIG, st_generic(NVME_SC_INVALID_FIELD), sqe,
                               "Create I/O SQ: PC = 0 but CAP.CQR = 1");
        return;
    }
    r->status = queue_memory(t, sqe, (uint64_t)(qsize + 1) * sizeof(struct nvme_sqe), &ring);
    if (r->status)
        return;
    cq = sim->cqs[cqid];
    sq = sim_queue_alloc(sizeof(*sq));
    if (!sq || nvl__sim_sq_init(sq, (uint16_t)qid, ring, sqe->prp1, qsize + 1,
                                nvl__sim_sq_db(sim, qid), cq)) {
        free(sq);
        r->status = st_generic(NVME_SC_INTERNAL);
        return;
    }
    SIM_STORE_REL(sq->db, 0u);
    pthread_mutex_lock(&sim->qlock);
    sim->sqs[qid] = sq;
    pthread_mutex_unlock(&sim->qlock);
    cq->nsq++;
    sim->queues_created = 1;
    ret = nvl__sim_publish_table(sim, cq->owner, t);
    if (ret) {
        pthread_mutex_lock(&sim->qlock);
        sim->sqs[qid] = NULL;
        pthread_mutex_unlock(&sim->qlock);
        cq->nsq--;
        nvl__sim_sq_fini(sq);
        free(sq);
        r->status = st_generic(NVME_SC_INTERNAL);
    }
}

/* Waits until the owner of `sq` has no deferred completion left for it. Gives up (-EINTR) when
 * the host disables or resets the controller meanwhile, or the controller dies. */
static int wait_drained(struct sim_thread *t, struct sim_sq *sq)
{
    struct nvl_sim *sim = t->sim;
    struct timespec ts = {0, 10000};

    while (!SIM_LOAD_ACQ(&sq->drained)) {
        if (SIM_LOAD(&sim->stop) || SIM_LOAD(&sim->fatal) ||
            !(nvl__sim_reg32(sim, NVME_REG_CC) & NVME_CC_EN) ||
            SIM_LOAD(&sim->flr_req) != sim->flr_done)
            return -EINTR;
        /* Stay out of the way of grace periods while waiting. */
        SIM_STORE_SC(&t->epoch, t->epoch + 1);
        SIM_STORE_SC(&t->online, 0);
        nanosleep(&ts, NULL);
        SIM_STORE_SC(&t->online, 1);
    }
    return 0;
}

static void admin_delete_sq(struct sim_thread *t, const struct nvme_sqe *sqe,
                            struct sim_cmd_result *r)
{
    struct nvl_sim *sim = t->sim;
    uint32_t qid = sqe->cdw10 & 0xffff;
    struct sim_sq *sq;
    int ret;

    if (qid == 0 || qid > sim->opts.max_io_queues || !sim->sqs[qid]) {
        r->status =
            admin_fail(t, NVL_SIM_VIOL_QUEUE_ID, st_specific(NVME_SC_INVALID_QUEUE_IDENTIFIER), sqe,
                       "Delete I/O SQ: no such queue");
        return;
    }
    sq = sim->sqs[qid];
    /* §5.6: commands already fetched complete before the deletion does. */
    SIM_STORE_REL(&sq->deleting, 1);
    if (wait_drained(t, sq)) {
        r->hold = 1; /* the reset that interrupted us completes nothing */
        return;
    }
    pthread_mutex_lock(&sim->qlock);
    sim->sqs[qid] = NULL;
    pthread_mutex_unlock(&sim->qlock);
    ret = nvl__sim_publish_table(sim, sq->cq->owner, t);
    if (ret) {
        /* Without a new table the owner may still poll sq: keep it, but gone for the host. */
        nvl_log_error(sim->who, "Delete I/O SQ %u: %s; queue memory leaked", qid,
                      nvl_strerror(ret));
        r->status = st_generic(NVME_SC_INTERNAL);
        return;
    }
    sq->cq->nsq--;
    SIM_STORE_REL(nvl__sim_sq_db(sim, qid), 0u);
    nvl__sim_sq_fini(sq);
    free(sq);
}

static void admin_delete_cq(struct sim_thread *t, const struct nvme_sqe *sqe,
                            struct sim_cmd_result *r)
{
    struct nvl_sim *sim = t->sim;
    uint32_t qid = sqe->cdw10 & 0xffff;
    struct sim_cq *cq;
    int ret;

    if (qid == 0 || qid > sim->opts.max_io_queues || !sim->cqs[qid]) {
        r->status =
            admin_fail(t, NVL_SIM_VIOL_QUEUE_ID, st_specific(NVME_SC_INVALID_QUEUE_IDENTIFIER), sqe,
                       "Delete I/O CQ: no such queue");
        return;
    }
    cq = sim->cqs[qid];
    if (cq->nsq) {
        /* §5.5: every SQ bound to a CQ is deleted before the CQ. */
        r->status =
            admin_fail(t, NVL_SIM_VIOL_QUEUE_DELETE, st_specific(NVME_SC_INVALID_QUEUE_DELETION),
                       sqe, "Delete I/O CQ while an SQ uses it");
        return;
    }
    pthread_mutex_lock(&sim->qlock);
    sim->cqs[qid] = NULL;
    pthread_mutex_unlock(&sim->qlock);
    ret = nvl__sim_publish_table(sim, cq->owner, t);
    if (ret) {
        nvl_log_error(sim->who, "Delete I/O CQ %u: %s; queue memory leaked", qid,
                      nvl_strerror(ret));
        r->status = st_generic(NVME_SC_INTERNAL);
        return;
    }
    SIM_STORE_REL(nvl__sim_cq_db(sim, qid), 0u);
    nvl__sim_cq_fini(cq);
    free(cq);
}

static void put_le128(uint8_t out[16], uint64_t v)
{
    int i;

    memset(out, 0, 16);
    for (i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

static void admin_get_log_page(struct sim_thread *t, const struct nvme_sqe *sqe,
                               struct sim_cmd_result *r)
{
    struct nvl_sim *sim = t->sim;
    uint32_t lid = sqe->cdw10 & 0xff;
    uint64_t numd = (((uint64_t)(sqe->cdw11 & 0xffff) << 16) | (sqe->cdw10 >> 16)) + 1;
    uint64_t len = numd * 4;
    uint64_t off = (uint64_t)sqe->cdw12 | ((uint64_t)sqe->cdw13 << 32);
    union {
        struct nvme_error_log err[SIM_ERROR_LOG_ENTRIES];
        struct nvme_smart_log smart;
        uint8_t raw[512];
    } *log = calloc(1, sizeof(*log));
    uint64_t size;

    if (!log) {
        r->status = st_generic(NVME_SC_INTERNAL);
        return;
    }
    switch (lid) {
    case NVME_LOG_ERROR: {
        uint64_t n, i;

        /* §5.14.1.1: newest entry first. */
        pthread_mutex_lock(&sim->elock);
        n = sim->error_count < SIM_ERROR_LOG_ENTRIES ? sim->error_count : SIM_ERROR_LOG_ENTRIES;
        for (i = 0; i < n; i++)
            log->err[i] = sim->errlog[(sim->error_count - 1 - i) % SIM_ERROR_LOG_ENTRIES];
        pthread_mutex_unlock(&sim->elock);
        size = sizeof(log->err);
        break;
    }
    case NVME_LOG_SMART: {
        struct nvl_sim_stats st;

        nvl__sim_stats_raw(sim, &st);
        log->smart.temperature[0] = 313 & 0xff; /* 40 degrees C, in Kelvin */
        log->smart.temperature[1] = 313 >> 8;
        log->smart.avail_spare = 100;
        log->smart.spare_thresh = 10;
        /* Data units are thousands of 512-byte units, rounded up. */
        put_le128(log->smart.data_units_read, (st.bytes_read + 511999) / 512000);
        put_le128(log->smart.data_units_written, (st.bytes_written + 511999) / 512000);
        put_le128(log->smart.host_reads, st.reads);
        put_le128(log->smart.host_writes, st.writes);
        put_le128(log->smart.power_cycles, 1);
        put_le128(log->smart.num_err_log_entries, sim->error_count);
        size = sizeof(log->smart);
        break;
    }
    case NVME_LOG_FW_SLOT:
        log->raw[0] = 1; /* active firmware: slot 1 */
        memcpy(&log->raw[8], "nvl-0.1 ", 8);
        size = 512;
        break;
    default:
        r->status = admin_fail(t, NVL_SIM_VIOL_LOG_PAGE, st_specific(NVME_SC_INVALID_LOG_PAGE), sqe,
                               "unsupported log page");
        goto out_free;
    }
    if ((off & 3) || off >= size) {
        r->status = admin_fail(t, NVL_SIM_VIOL_LOG_PAGE, st_generic(NVME_SC_INVALID_FIELD), sqe,
                               "log page offset unaligned or past the end");
        goto out_free;
    }
    r->status =
        admin_to_host(t, sqe, (uint8_t *)log + off, size - off < len ? size - off : len, len);
out_free:
    free(log);
}

void nvl__sim_admin_exec(struct sim_thread *t, const struct nvme_sqe *sqe, struct sim_cmd_result *r)
{
    struct nvl_sim *sim = t->sim;

    if (sqe->flags & (NVME_SQE_FUSE_MASK | NVME_SQE_PSDT_MASK)) {
        r->status = admin_fail(t, NVL_SIM_VIOL_FIELD, st_generic(NVME_SC_INVALID_FIELD), sqe,
                               "FUSE or PSDT set");
        return;
    }
    switch (sqe->opc) {
    case NVME_ADMIN_IDENTIFY:
        admin_identify(t, sqe, r);
        return;
    case NVME_ADMIN_SET_FEATURES:
        admin_set_features(t, sqe, r);
        return;
    case NVME_ADMIN_GET_FEATURES:
        admin_get_features(t, sqe, r);
        return;
    case NVME_ADMIN_CREATE_CQ:
        admin_create_cq(t, sqe, r);
        return;
    case NVME_ADMIN_CREATE_SQ:
        admin_create_sq(t, sqe, r);
        return;
    case NVME_ADMIN_DELETE_SQ:
        admin_delete_sq(t, sqe, r);
        return;
    case NVME_ADMIN_DELETE_CQ:
        admin_delete_cq(t, sqe, r);
        return;
    case NVME_ADMIN_GET_LOG_PAGE:
        admin_get_log_page(t, sqe, r);
        return;
    case NVME_ADMIN_ABORT:
        /* Commands complete as soon as they are fetched: nothing is ever abortable. DW0 bit 0
         * set means "not aborted" (§5.1). */
        r->dw0 = 1;
        return;
    case NVME_ADMIN_ASYNC_EVENT_REQUEST:
        if (sim->aer_outstanding > SIM_AERL) {
            r->status = st_specific(NVME_SC_ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED) | NVME_STATUS_DNR;
            return;
        }
        /* No event ever fires; the request stays outstanding until a reset. */
        sim->aer_outstanding++;
        r->hold = 1;
        return;
    default:
        r->status = admin_fail(t, NVL_SIM_VIOL_OPCODE, st_generic(NVME_SC_INVALID_OPCODE), sqe,
                               "opcode not supported");
        return;
    }
}

void nvl__sim_admin_reset_queues(struct nvl_sim *sim, struct sim_thread *self)
{
    struct sim_qtable *old[SIM_MAX_THREADS];
    struct sim_sq **sqs;
    struct sim_cq **cqs;
    uint32_t q, n = sim->opts.max_io_queues + 1u, i;

    sqs = calloc(n, sizeof(*sqs));
    cqs = calloc(n, sizeof(*cqs));
    pthread_mutex_lock(&sim->qlock);
    if (sqs && cqs) {
        memcpy(sqs, sim->sqs, n * sizeof(*sqs));
        memcpy(cqs, sim->cqs, n * sizeof(*cqs));
    }
    memset(sim->sqs, 0, n * sizeof(*sqs));
    memset(sim->cqs, 0, n * sizeof(*cqs));
    pthread_mutex_unlock(&sim->qlock);
    /* Empty tables, then a grace period: afterwards no service thread touches a queue. */
    for (i = 0; i < sim->nthreads; i++)
        old[i] = __atomic_exchange_n(&sim->threads[i].table, NULL, __ATOMIC_SEQ_CST);
    nvl__sim_synchronize(sim, self);
    for (i = 0; i < sim->nthreads; i++)
        free(old[i]);
    if (sqs && cqs) {
        for (q = 1; q < n; q++) {
            if (sqs[q]) {
                nvl__sim_sq_fini(sqs[q]);
                free(sqs[q]);
            }
            if (cqs[q]) {
                nvl__sim_cq_fini(cqs[q]);
                free(cqs[q]);
            }
        }
    }
    free(sqs);
    free(cqs);
    sim->nsq_granted = sim->opts.max_io_queues;
    sim->ncq_granted = sim->opts.max_io_queues;
    sim->queues_created = 0;
    sim->aer_outstanding = 0;
}
