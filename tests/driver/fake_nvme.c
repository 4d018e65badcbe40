/* See fake_nvme.h. */
#include "fake_nvme.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAKE_BAR_LEN  16384
#define FAKE_MAX_QID  64
#define FAKE_MAX_RGN  256
#define FAKE_PAGE     4096u
#define FAKE_IOVA_TOP 0x100000000000ull

struct fake_region {
    uint8_t *vaddr;
    uint64_t iova;
    size_t len;
};

struct fake_queue {
    int exists;
    uint64_t iova;
    uint32_t depth;
    uint32_t head, tail; /* SQ: head = next to fetch. CQ: tail = next to post */
    uint16_t phase;      /* CQ only */
    uint16_t cqid;       /* SQ only */
};

struct fake_nvme {
    struct nvl_transport t;
    struct fake_nvme_opts o;
    uint8_t *bar;
    uint8_t *data;
    pthread_t thread;
    pthread_mutex_t lock; /* regions and counters */
    int stop;
    int enabled;
    struct fake_region rgn[FAKE_MAX_RGN];
    uint64_t next_iova;
    struct fake_queue sq[FAKE_MAX_QID], cq[FAKE_MAX_QID];
    uint64_t io_seen, io_completed;
    struct fake_nvme_counts n;
};

void fake_nvme_opts_init(struct fake_nvme_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->mqes = 255;
    o->to = 2;
    o->mdts = 5;
    o->lbads = 9;
    o->nsze = 8192;
    o->max_queues = 4;
    o->cfs_on_admin_opc = -1;
    o->drop_admin_opc = -1;
    o->fail_admin_opc = -1;
}

static uint32_t reg_rd(struct fake_nvme *f, size_t off)
{
    return __atomic_load_n((uint32_t *)(f->bar + off), __ATOMIC_ACQUIRE);
}

static void reg_wr(struct fake_nvme *f, size_t off, uint32_t v)
{
    __atomic_store_n((uint32_t *)(f->bar + off), v, __ATOMIC_RELEASE);
}

static uint64_t reg_rd64(struct fake_nvme *f, size_t off)
{
    return reg_rd(f, off) | ((uint64_t)reg_rd(f, off + 4) << 32);
}

/* Host pointer for [iova, iova + len), or NULL when outside every region. */
static void *xlate(struct fake_nvme *f, uint64_t iova, size_t len)
{
    void *p = NULL;
    int i;

    pthread_mutex_lock(&f->lock);
    for (i = 0; i < FAKE_MAX_RGN; i++) {
        struct fake_region *r = &f->rgn[i];

        if (r->len && iova >= r->iova && iova + len <= r->iova + r->len) {
            p = r->vaddr + (iova - r->iova);
            break;
        }
    }
    if (!p)
        f->n.dma_errors++;
    pthread_mutex_unlock(&f->lock);
    return p;
}

static int fake_map(struct nvl_transport *t, void *vaddr, size_t len, uint64_t *iova)
{
    struct fake_nvme *f = t->priv;
    int i;

    pthread_mutex_lock(&f->lock);
    for (i = 0; i < FAKE_MAX_RGN; i++) {
        if (f->rgn[i].len == 0) {
            f->rgn[i].vaddr = vaddr;
            f->rgn[i].len = len;
            f->rgn[i].iova = f->next_iova;
            /* Deliberately far from the virtual address and 2 MiB aligned. */
            f->next_iova += (len + (2u << 20) - 1) / (2u << 20) * (2u << 20);
            *iova = f->rgn[i].iova;
            pthread_mutex_unlock(&f->lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return -ENOSPC;
}

static int fake_unmap(struct nvl_transport *t, void *vaddr, size_t len, uint64_t iova)
{
    struct fake_nvme *f = t->priv;
    int i;

    pthread_mutex_lock(&f->lock);
    for (i = 0; i < FAKE_MAX_RGN; i++) {
        if (f->rgn[i].len == len && f->rgn[i].iova == iova && f->rgn[i].vaddr == vaddr) {
            f->rgn[i].len = 0;
            pthread_mutex_unlock(&f->lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return -ENOENT;
}

static void fake_destroy_op(struct nvl_transport *t)
{
    (void)t;
}

static const struct nvl_transport_ops fake_ops = {
    .dma_map = fake_map,
    .dma_unmap = fake_unmap,
    .reset = NULL,
    .destroy = fake_destroy_op,
};

/* Walks the PRPs of a transfer and copies between the host and buf. to_host: controller
 * writes host memory (Read). Returns 0 or an NVMe status. */
static uint16_t prp_copy(struct fake_nvme *f, const struct nvme_sqe *sqe, uint8_t *buf, size_t len,
                         int to_host)
{
    uint64_t prp1 = sqe->prp1, first_off = prp1 % FAKE_PAGE;
    size_t n_pages = (first_off + len + FAKE_PAGE - 1) / FAKE_PAGE, done = 0, i, slot = 0;
    uint64_t *list = NULL;
    uint64_t addr;

    if (prp1 & 3) {
        f->n.prp_errors++;
        return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_PRP_OFFSET);
    }
    for (i = 0; i < n_pages; i++) {
        size_t chunk, page_off;
        uint8_t *p;

        if (i == 0) {
            addr = prp1;
        } else if (i == 1 && n_pages == 2) {
            addr = sqe->prp2;
        } else {
            if (i == 1) {
                list = xlate(f, sqe->prp2, 8);
                slot = 0;
            } else if (slot == FAKE_PAGE / 8 - 1) {
                /* The last entry of a full list page chains to the next one. */
                list = xlate(f, list[slot], 8);
                slot = 0;
            }
            if (!list)
                return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_DATA_TRANSFER_ERROR);
            addr = list[slot++];
        }
        if (i > 0 && addr % FAKE_PAGE) {
            f->n.prp_errors++;
            return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_PRP_OFFSET);
        }
        page_off = i == 0 ? first_off : 0;
        chunk = FAKE_PAGE - page_off;
        if (chunk > len - done)
            chunk = len - done;
        p = xlate(f, addr, chunk);
        if (!p)
            return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_DATA_TRANSFER_ERROR);
        if (to_host)
            memcpy(p, buf + done, chunk);
        else
            memcpy(buf + done, p, chunk);
        done += chunk;
    }
    return 0;
}

static void fake_identify(struct fake_nvme *f, const struct nvme_sqe *sqe, uint16_t *st)
{
    static union {
        struct nvme_id_ctrl c;
        struct nvme_id_ns n;
    } id;

    memset(&id, 0, sizeof(id));
    if ((sqe->cdw10 & 0xff) == NVME_IDENTIFY_CTRL) {
        id.c.vid = 0x1b36;
        memcpy(id.c.sn, "FAKE0001            ", 20);
        memcpy(id.c.mn, "fake nvme                               ", 40);
        memcpy(id.c.fr, "1.0     ", 8);
        id.c.mdts = f->o.mdts;
        id.c.sqes = 0x66;
        id.c.cqes = 0x44;
        id.c.nn = 1;
        id.c.vwc = 1;
    } else if ((sqe->cdw10 & 0xff) == NVME_IDENTIFY_NS) {
        if (sqe->nsid != 1) {
            *st = NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_NAMESPACE);
            return;
        }
        id.n.nsze = id.n.ncap = id.n.nuse = f->o.nsze;
        id.n.nlbaf = 0;
        id.n.flbas = 0;
        id.n.lbaf[0].lbads = f->o.lbads;
    } else {
        *st = NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_FIELD);
        return;
    }
    *st = prp_copy(f, sqe, (uint8_t *)&id, 4096, 1);
}

/* Executes an admin command. Returns 0 to post st, 1 to post nothing. */
static int fake_admin(struct fake_nvme *f, const struct nvme_sqe *sqe, uint16_t *st, uint32_t *dw0)
{
    uint16_t qid = sqe->cdw10 & 0xffff;
    uint32_t qsize = (sqe->cdw10 >> 16) + 1;

    f->n.admin++;
    if (sqe->opc == f->o.cfs_on_admin_opc) {
        reg_wr(f, NVME_REG_CSTS, reg_rd(f, NVME_REG_CSTS) | NVME_CSTS_CFS);
        return 1;
    }
    if (sqe->opc == f->o.drop_admin_opc)
        return 1;
    if (sqe->opc == f->o.fail_admin_opc) {
        *st = f->o.fail_status;
        return 0;
    }
    switch (sqe->opc) {
    case NVME_ADMIN_IDENTIFY:
        fake_identify(f, sqe, st);
        break;
    case NVME_ADMIN_SET_FEATURES:
        if ((sqe->cdw10 & 0xff) != NVME_FEAT_NUM_QUEUES) {
            *st = NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_FIELD);
            break;
        }
        *dw0 = nvme_feat_num_queues_make(f->o.max_queues, f->o.max_queues);
        break;
    case NVME_ADMIN_CREATE_CQ:
        if (qid == 0 || qid >= FAKE_MAX_QID || qid > f->o.max_queues || f->cq[qid].exists) {
            *st = NVME_STATUS(NVME_SCT_COMMAND_SPECIFIC, NVME_SC_INVALID_QUEUE_IDENTIFIER);
        } else if (qsize > (uint32_t)f->o.mqes + 1 || qsize < 2) {
            *st = NVME_STATUS(NVME_SCT_COMMAND_SPECIFIC, NVME_SC_INVALID_QUEUE_SIZE);
        } else {
            f->cq[qid] = (struct fake_queue){1, sqe->prp1, qsize, 0, 0, 1, 0};
            f->n.created_cqs++;
        }
        break;
    case NVME_ADMIN_CREATE_SQ:
        if (qid == 0 || qid >= FAKE_MAX_QID || f->sq[qid].exists) {
            *st = NVME_STATUS(NVME_SCT_COMMAND_SPECIFIC, NVME_SC_INVALID_QUEUE_IDENTIFIER);
        } else if ((sqe->cdw11 >> 16) >= FAKE_MAX_QID || !f->cq[sqe->cdw11 >> 16].exists) {
            *st = NVME_STATUS(NVME_SCT_COMMAND_SPECIFIC, NVME_SC_COMPLETION_QUEUE_INVALID);
        } else if (qsize > (uint32_t)f->o.mqes + 1 || qsize < 2) {
            *st = NVME_STATUS(NVME_SCT_COMMAND_SPECIFIC, NVME_SC_INVALID_QUEUE_SIZE);
        } else {
            f->sq[qid] =
                (struct fake_queue){1, sqe->prp1, qsize, 0, 0, 0, (uint16_t)(sqe->cdw11 >> 16)};
            f->n.created_sqs++;
        }
        break;
    case NVME_ADMIN_DELETE_SQ:
        if (qid == 0 || qid >= FAKE_MAX_QID || !f->sq[qid].exists) {
            *st = NVME_STATUS(NVME_SCT_COMMAND_SPECIFIC, NVME_SC_INVALID_QUEUE_IDENTIFIER);
        } else {
            f->sq[qid].exists = 0;
            f->n.deleted_sqs++;
        }
        break;
    case NVME_ADMIN_DELETE_CQ:
        if (qid == 0 || qid >= FAKE_MAX_QID || !f->cq[qid].exists) {
            *st = NVME_STATUS(NVME_SCT_COMMAND_SPECIFIC, NVME_SC_INVALID_QUEUE_IDENTIFIER);
        } else if (f->sq[qid].exists) {
            *st = NVME_STATUS(NVME_SCT_COMMAND_SPECIFIC, NVME_SC_INVALID_QUEUE_DELETION);
        } else {
            f->cq[qid].exists = 0;
            f->n.deleted_cqs++;
        }
        break;
    case NVME_ADMIN_GET_LOG_PAGE: {
        static uint8_t zero[4096];
        size_t len = (((sqe->cdw10 >> 16) | ((sqe->cdw11 & 0xffff) << 16)) + 1) * 4;

        *st = len > sizeof(zero) ? NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_FIELD)
                                 : prp_copy(f, sqe, zero, len, 1);
        break;
    }
    default:
        *st = NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_OPCODE);
    }
    return 0;
}

static int fake_io(struct fake_nvme *f, const struct nvme_sqe *sqe, uint16_t *st)
{
    uint64_t slba = sqe->cdw10 | ((uint64_t)sqe->cdw11 << 32);
    uint32_t nlb = (sqe->cdw12 & 0xffff) + 1;
    size_t lba = (size_t)1 << f->o.lbads, len = (size_t)nlb * lba;
    uint64_t nth = ++f->io_seen;

    f->n.io++;
    if (f->o.drop_io_nth && nth == f->o.drop_io_nth)
        return 1;
    if (f->o.cfs_io_nth && nth == f->o.cfs_io_nth) {
        reg_wr(f, NVME_REG_CSTS, reg_rd(f, NVME_REG_CSTS) | NVME_CSTS_CFS);
        return 1;
    }
    if (f->o.fail_io_nth && nth == f->o.fail_io_nth) {
        *st = f->o.fail_status;
        return 0;
    }
    if (sqe->nsid != 1 && !(sqe->opc == NVME_NVM_FLUSH && sqe->nsid == NVME_NSID_ALL)) {
        *st = NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_NAMESPACE);
        return 0;
    }
    switch (sqe->opc) {
    case NVME_NVM_FLUSH:
        f->n.flushes++;
        break;
    case NVME_NVM_READ:
    case NVME_NVM_WRITE:
        if (slba + nlb > f->o.nsze) {
            *st = NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_LBA_OUT_OF_RANGE);
            break;
        }
        if (f->o.mdts && len > ((size_t)FAKE_PAGE << f->o.mdts)) {
            *st = NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_FIELD);
            break;
        }
        *st = prp_copy(f, sqe, f->data + slba * lba, len, sqe->opc == NVME_NVM_READ);
        if (!*st && sqe->opc == NVME_NVM_READ)
            f->n.reads++;
        else if (!*st)
            f->n.writes++;
        break;
    default:
        *st = NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_OPCODE);
    }
    return 0;
}

static void post(struct fake_nvme *f, uint16_t qid, uint16_t cid, uint16_t sqhd, uint16_t st,
                 uint32_t dw0)
{
    struct fake_queue *cq = &f->cq[f->sq[qid].cqid];
    struct nvme_cqe *e = xlate(f, cq->iova + (uint64_t)cq->tail * 16, 16);

    if (!e)
        return;
    e->dw0 = dw0;
    e->dw1 = 0;
    e->sqhd = sqhd;
    e->sqid = qid;
    e->cid = cid;
    __atomic_store_n(&e->status, nvme_cqe_status_make(st, cq->phase), __ATOMIC_RELEASE);
    if (++cq->tail == cq->depth) {
        cq->tail = 0;
        cq->phase ^= 1;
    }
}

struct pending {
    uint16_t cid, st;
    uint32_t dw0;
};

static void service_sq(struct fake_nvme *f, uint16_t qid)
{
    struct fake_queue *sq = &f->sq[qid];
    uint64_t dboff = nvme_sq_tail_db_offset(qid, f->o.dstrd);
    uint32_t tail = reg_rd(f, (size_t)dboff);
    struct pending batch[64];
    uint32_t nb = 0, i;

    if (tail >= sq->depth)
        return;
    while (sq->head != tail && nb < 64) {
        struct nvme_sqe *p = xlate(f, sq->iova + (uint64_t)sq->head * 64, 64);
        struct nvme_sqe sqe;
        uint16_t st = 0;
        uint32_t dw0 = 0;
        int drop;

        if (!p)
            return;
        sqe = *p;
        sq->head = (sq->head + 1) % sq->depth;
        drop = qid == 0 ? fake_admin(f, &sqe, &st, &dw0) : fake_io(f, &sqe, &st);
        if (drop)
            continue;
        if (qid && f->o.bad_cid_io_nth && ++f->io_completed == (uint64_t)f->o.bad_cid_io_nth)
            sqe.cid ^= 0x4000;
        batch[nb].cid = sqe.cid;
        batch[nb].st = st;
        batch[nb].dw0 = dw0;
        nb++;
    }
    if (f->o.reverse && nb > 1)
        f->n.reversed_batches++;
    for (i = 0; i < nb; i++) {
        struct pending *b = &batch[f->o.reverse ? nb - 1 - i : i];

        post(f, qid, b->cid, (uint16_t)sq->head, b->st, b->dw0);
    }
    if (qid && nb > f->n.max_inflight)
        f->n.max_inflight = nb;
}

static void *fake_thread(void *arg)
{
    struct fake_nvme *f = arg;
    struct timespec nap = {0, 20000};

    while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
        uint32_t cc = reg_rd(f, NVME_REG_CC), csts = reg_rd(f, NVME_REG_CSTS);
        uint16_t q;

        if (nvme_cc_en(cc) && !f->enabled) {
            uint32_t aqa = reg_rd(f, NVME_REG_AQA);

            f->enabled = 1;
            memset(f->sq, 0, sizeof(f->sq));
            memset(f->cq, 0, sizeof(f->cq));
            f->sq[0] =
                (struct fake_queue){1, reg_rd64(f, NVME_REG_ASQ), nvme_aqa_asqs(aqa), 0, 0, 0, 0};
            f->cq[0] =
                (struct fake_queue){1, reg_rd64(f, NVME_REG_ACQ), nvme_aqa_acqs(aqa), 0, 0, 1, 0};
            if (!f->o.never_ready)
                reg_wr(f, NVME_REG_CSTS, csts | NVME_CSTS_RDY);
        } else if (!nvme_cc_en(cc) && f->enabled) {
            f->enabled = 0;
            f->n.resets++;
            memset(f->sq, 0, sizeof(f->sq));
            memset(f->cq, 0, sizeof(f->cq));
            for (q = 0; q < 2 * FAKE_MAX_QID; q++)
                reg_wr(f, NVME_REG_DBS + (size_t)q * (4u << f->o.dstrd), 0);
            reg_wr(f, NVME_REG_CSTS, 0);
        }
        csts = reg_rd(f, NVME_REG_CSTS);
        if (nvme_cc_shn(cc) && nvme_csts_shst(csts) != NVME_CSTS_SHST_COMPLETE && f->enabled) {
            f->n.shutdowns++;
            reg_wr(f, NVME_REG_CSTS,
                   (csts & ~NVME_CSTS_SHST_MASK) |
                       (NVME_CSTS_SHST_COMPLETE << NVME_CSTS_SHST_SHIFT));
        }
        if (f->enabled && nvme_csts_rdy(csts) && !nvme_csts_cfs(csts)) {
            for (q = 0; q < FAKE_MAX_QID; q++)
                if (f->sq[q].exists)
                    service_sq(f, q);
        }
        nanosleep(&nap, NULL);
    }
    return NULL;
}

struct fake_nvme *fake_nvme_create(const struct fake_nvme_opts *o)
{
    struct fake_nvme *f = calloc(1, sizeof(*f));
    uint64_t cap;

    if (!f)
        return NULL;
    f->o = *o;
    f->bar = aligned_alloc(4096, FAKE_BAR_LEN);
    f->data = calloc(o->nsze, (size_t)1 << o->lbads);
    if (!f->bar || !f->data) {
        free(f->bar);
        free(f->data);
        free(f);
        return NULL;
    }
    memset(f->bar, 0, FAKE_BAR_LEN);
    pthread_mutex_init(&f->lock, NULL);
    f->next_iova = FAKE_IOVA_TOP;
    cap = (uint64_t)o->mqes | (1ull << 16) | ((uint64_t)o->to << 24) | ((uint64_t)o->dstrd << 32) |
          (1ull << 37);
    memcpy(f->bar + NVME_REG_CAP, &cap, 8);
    reg_wr(f, NVME_REG_VS, NVME_VS(1, 4, 0));
    f->t.name = "fake";
    f->t.bar0 = f->bar;
    f->t.bar0_len = FAKE_BAR_LEN;
    f->t.ops = &fake_ops;
    f->t.priv = f;
    pthread_create(&f->thread, NULL, fake_thread, f);
    return f;
}

void fake_nvme_destroy(struct fake_nvme *f)
{
    if (!f)
        return;
    __atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
    pthread_join(f->thread, NULL);
    pthread_mutex_destroy(&f->lock);
    free(f->bar);
    free(f->data);
    free(f);
}

struct nvl_transport *fake_nvme_transport(struct fake_nvme *f)
{
    return &f->t;
}

uint8_t *fake_nvme_data(struct fake_nvme *f)
{
    return f->data;
}

void fake_nvme_counts(struct fake_nvme *f, struct fake_nvme_counts *c)
{
    pthread_mutex_lock(&f->lock);
    *c = f->n;
    pthread_mutex_unlock(&f->lock);
}
