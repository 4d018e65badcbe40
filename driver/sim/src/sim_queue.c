/* The queue engine: fetching SQEs, executing them, posting CQEs, and the service threads that
 * run it. Used for the admin queue pair (by the control thread) and for I/O queue pairs (by the
 * service threads); each queue has exactly one thread touching its ring state, so nothing here
 * locks.
 *
 * Ordering against the host (or the GPU): doorbells are read with acquire loads, so SQEs the
 * host wrote before its (release/fenced) doorbell store are seen; a CQE's first three dwords are
 * stored before its fourth (CID, status, phase tag) with a release store, so a host that sees the
 * new phase tag and then reads the body sees the body of this completion. */
#include "sim_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#define SIM_SPIN_NS 20000u /* busy-poll this long after the last work before sleeping */

int nvl__sim_cq_init(struct sim_cq *cq, uint16_t qid, struct nvme_cqe *ring, uint64_t iova,
                     uint32_t size, volatile uint32_t *db)
{
    memset(cq, 0, sizeof(*cq));
    cq->fifo = calloc(size, sizeof(*cq->fifo));
    cq->late = calloc(size, sizeof(*cq->late));
    if (!cq->fifo || !cq->late) {
        free(cq->fifo);
        free(cq->late);
        cq->fifo = NULL;
        cq->late = NULL;
        return -ENOMEM;
    }
    cq->ring = ring;
    cq->iova = iova;
    cq->bytes = (uint64_t)size * sizeof(struct nvme_cqe);
    cq->db = db;
    cq->size = size;
    cq->phase = 1;
    cq->qid = qid;
    return 0;
}

void nvl__sim_cq_fini(struct sim_cq *cq)
{
    free(cq->fifo);
    free(cq->late);
    memset(cq, 0, sizeof(*cq));
}

int nvl__sim_sq_init(struct sim_sq *sq, uint16_t qid, struct nvme_sqe *ring, uint64_t iova,
                     uint32_t size, volatile uint32_t *db, struct sim_cq *cq)
{
    memset(sq, 0, sizeof(*sq));
    sq->cids = calloc(65536 / 64, sizeof(uint64_t));
    if (!sq->cids)
        return -ENOMEM;
    sq->ring = ring;
    sq->iova = iova;
    sq->bytes = (uint64_t)size * sizeof(struct nvme_sqe);
    sq->db = db;
    sq->size = size;
    sq->qid = qid;
    sq->cq = cq;
    return 0;
}

void nvl__sim_sq_fini(struct sim_sq *sq)
{
    free(sq->cids);
    memset(sq, 0, sizeof(*sq));
}

static int cid_busy(const struct sim_sq *sq, uint16_t cid)
{
    return (int)((sq->cids[cid >> 6] >> (cid & 63)) & 1u);
}

static void cid_set(struct sim_sq *sq, uint16_t cid)
{
    sq->cids[cid >> 6] |= 1ull << (cid & 63);
}

static void cid_clear(struct sim_sq *sq, uint16_t cid)
{
    sq->cids[cid >> 6] &= ~(1ull << (cid & 63));
}

/* Writes one CQE into the slot at the tail. The caller reserved the slot. */
static void cq_post(struct sim_thread *t, struct sim_cq *cq, const struct sim_sq *sq, uint16_t cid,
                    uint16_t status, uint32_t dw0)
{
    struct nvme_cqe *e = &cq->ring[cq->tail];

    SIM_STORE(&e->dw0, dw0);
    SIM_STORE(&e->dw1, 0u);
    SIM_STORE(&e->sqhd, (uint16_t)sq->head);
    SIM_STORE(&e->sqid, sq->qid);
    SIM_STORE(&e->cid, cid);
    /* Release, last: everything above is visible before the phase tag that publishes it. The
     * host polls exactly this half-word (nvme_cq_ready), so the pair is one atomic object. */
    SIM_STORE_REL(&e->status, nvme_cqe_status_make(status, cq->phase));
    if (++cq->tail == cq->size) {
        cq->tail = 0;
        cq->phase ^= 1u;
    }
    SIM_COUNT(t, SIM_C_COMPLETIONS, 1);
    if (status)
        SIM_COUNT(t, SIM_C_ERRORS, 1);
}

/* Takes the CQ head doorbell into account. A value outside the queue, or one that moves the head
 * past entries the controller has posted, is a fatal host error (CSTS.CFS). */
static int cq_refresh_head(struct sim_thread *t, struct sim_cq *cq)
{
    uint32_t db = SIM_LOAD_ACQ(cq->db);
    uint32_t posted, adv;

    if (sim_likely(db == cq->head))
        return 0;
    posted = (cq->tail + cq->size - cq->head) % cq->size;
    adv = (db + cq->size - cq->head) % cq->size;
    if (sim_unlikely(db >= cq->size || adv > posted)) {
        nvl__sim_fatal(t->sim, NVL_SIM_VIOL_CQ_HEAD,
                       "CQ %u head doorbell %u: queue has %u entries, head %u, %u posted", cq->qid,
                       db, cq->size, cq->head, posted);
        return -1;
    }
    cq->head = db;
    cq->reserved -= adv;
    cq->stalled = 0;
    return 1;
}

static void pending_post(struct sim_thread *t, struct sim_cq *cq, struct sim_pending *p)
{
    cq_post(t, cq, p->sq, p->cid, p->status, p->dw0);
    cid_clear(p->sq, p->cid);
    p->sq->inflight--;
}

uint32_t nvl__sim_cq_service(struct sim_thread *t, struct sim_cq *cq)
{
    uint32_t work = 0, i;
    int r = cq_refresh_head(t, cq);
    uint64_t now;

    if (r < 0)
        return 0;
    work += (uint32_t)r;
    if (!cq->fifo_n && !cq->late_n)
        return work;
    now = sim_clock(t);
    while (cq->fifo_n) {
        struct sim_pending *p = &cq->fifo[cq->fifo_head];

        if (p->due_ns > now) {
            if (p->due_ns < t->next_due_ns)
                t->next_due_ns = p->due_ns;
            break;
        }
        pending_post(t, cq, p);
        if (++cq->fifo_head == cq->size)
            cq->fifo_head = 0;
        cq->fifo_n--;
        work++;
    }
    for (i = 0; i < cq->late_n;) {
        struct sim_pending *p = &cq->late[i];

        if (p->due_ns > now) {
            if (p->due_ns < t->next_due_ns)
                t->next_due_ns = p->due_ns;
            i++;
            continue;
        }
        pending_post(t, cq, p);
        cq->late[i] = cq->late[--cq->late_n];
        work++;
    }
    t->pending += cq->fifo_n + cq->late_n;
    return work;
}

/* Queues a completion for later. The caller reserved its CQ slot. */
static void pending_add(struct sim_thread *t, struct sim_sq *sq, uint16_t cid, uint16_t status,
                        uint32_t dw0, uint64_t due, int late)
{
    struct sim_cq *cq = sq->cq;
    struct sim_pending *p;

    if (late) {
        p = &cq->late[cq->late_n++];
    } else {
        uint32_t at = cq->fifo_head + cq->fifo_n;

        p = &cq->fifo[at >= cq->size ? at - cq->size : at];
        cq->fifo_n++;
    }
    p->due_ns = due;
    p->sq = sq;
    p->cid = cid;
    p->status = status;
    p->dw0 = dw0;
    cid_set(sq, cid);
    sq->inflight++;
    if (due < t->next_due_ns)
        t->next_due_ns = due;
}

/* Executes one fetched command and completes it now, later, or never (fault injection). */
static void sim_cmd(struct sim_thread *t, struct sim_sq *sq, const struct nvme_sqe *sqe)
{
    struct nvl_sim *sim = t->sim;
    struct sim_cq *cq = sq->cq;
    struct sim_cmd_result r = {0, 0, 0, 0};
    struct sim_fault_action fa;
    uint64_t due = 0, arrival = 0;

    /* With the drive model on, a command arrives when it is fetched, before its data moves. */
    if (sim->model.enabled && sq->qid)
        arrival = nvl__sim_now_ns();
    SIM_COUNT(t, sq->qid ? SIM_C_IO : SIM_C_ADMIN, 1);
    nvl__sim_fault_match(&sim->faults, sq->qid, sqe->opc, &t->rng, &fa);
    if (sim_unlikely(fa.fired)) {
        SIM_COUNT(t, SIM_C_FAULTS_INJECTED, 1);
        if (fa.kind == NVL_SIM_FAULT_FATAL) {
            nvl__sim_fatal(sim, NVL_SIM_VIOL_COUNT, "injected fatal error at SQ %u CID %u", sq->qid,
                           sqe->cid);
            return;
        }
    }
    if (sim_unlikely(cid_busy(sq, sqe->cid))) {
        /* NVMe 1.4 §4.2: a CID is unique among the commands outstanding on its SQ. */
        nvl__sim_violation(sim, NVL_SIM_VIOL_CID_CONFLICT, "SQ %u: CID %u is already outstanding",
                           sq->qid, sqe->cid);
        nvl__sim_error_log_add(
            sim, sq->qid, sqe->cid,
            NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_CID_CONFLICT) | NVME_STATUS_DNR, 0, sqe->nsid);
        /* Completed at once and outside the CID map, which still tracks the first command. */
        cq->reserved++;
        cq_post(t, cq, sq, sqe->cid,
                NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_CID_CONFLICT) | NVME_STATUS_DNR, 0);
        return;
    }
    if (sim_unlikely(fa.fired && fa.kind == NVL_SIM_FAULT_STATUS)) {
        r.status = fa.status;
    } else if (sq->qid) {
        nvl__sim_io_exec(t, sqe, &r);
    } else {
        nvl__sim_admin_exec(t, sqe, &r);
    }
    if (sim_unlikely(r.status)) {
        /* The LBA field is meaningful for Read and Write only. */
        int rw = sq->qid && (sqe->opc == NVME_NVM_READ || sqe->opc == NVME_NVM_WRITE);

        nvl__sim_error_log_add(sim, sq->qid, sqe->cid, r.status,
                               rw ? (uint64_t)sqe->cdw10 | ((uint64_t)sqe->cdw11 << 32) : 0,
                               sqe->nsid);
    }
    if (sim_unlikely(r.hold)) {
        /* Held without a CQ slot (Asynchronous Event Request); its CID stays outstanding. */
        cid_set(sq, sqe->cid);
        return;
    }
    if (sim_unlikely(fa.fired && fa.kind == NVL_SIM_FAULT_LOSE))
        return;
    cq->reserved++;
    if (arrival) {
        due = r.status ? arrival + sim->model.lat_ns
                       : nvl__sim_model_due(&sim->model, arrival, r.bytes);
        if (due <= nvl__sim_now_ns())
            due = 0;
    }
    if (sim_unlikely(fa.fired && fa.kind == NVL_SIM_FAULT_DELAY)) {
        pending_add(t, sq, sqe->cid, r.status, r.dw0, (due ? due : sim_clock(t)) + fa.delay_ns, 1);
        return;
    }
    if (due) {
        pending_add(t, sq, sqe->cid, r.status, r.dw0, due, 0);
        return;
    }
    cq_post(t, cq, sq, sqe->cid, r.status, r.dw0);
}

uint32_t nvl__sim_sq_service(struct sim_thread *t, struct sim_sq *sq)
{
    struct sim_cq *cq = sq->cq;
    uint32_t db, n = 0;

    if (sim_unlikely(SIM_LOAD(&sq->deleting))) {
        if (!sq->inflight)
            SIM_STORE_REL(&sq->drained, 1);
        return 0;
    }
    if (sim_unlikely(SIM_LOAD(&t->sim->halted)))
        return 0;
    db = SIM_LOAD_ACQ(sq->db);
    if (db != sq->tail) {
        uint32_t used = (sq->tail + sq->size - sq->head) % sq->size;
        uint32_t adv = (db + sq->size - sq->tail) % sq->size;

        /* The new tail must lie in the queue and must not run over entries not fetched yet. */
        if (sim_unlikely(db >= sq->size || adv > sq->size - 1 - used)) {
            nvl__sim_fatal(t->sim, NVL_SIM_VIOL_SQ_TAIL,
                           "SQ %u tail doorbell %u: queue has %u entries, tail %u, head %u",
                           sq->qid, db, sq->size, sq->tail, sq->head);
            return 0;
        }
        sq->tail = db;
    }
    while (sq->head != sq->tail && n < SIM_BATCH) {
        struct nvme_sqe sqe;

        if (sim_unlikely(cq->reserved >= cq->size - 1)) {
            /* Never overwrite a CQE the host has not consumed: wait for the head doorbell. */
            if (cq_refresh_head(t, cq) < 0)
                return n;
            if (cq->reserved >= cq->size - 1) {
                if (!cq->stalled) {
                    cq->stalled = 1;
                    nvl__sim_violation(t->sim, NVL_SIM_VIOL_CQ_FULL,
                                       "CQ %u is full (%u entries unconsumed); SQ %u waits",
                                       cq->qid, cq->size - 1, sq->qid);
                }
                break;
            }
        }
        memcpy(&sqe, &sq->ring[sq->head], sizeof(sqe));
        if (++sq->head == sq->size)
            sq->head = 0;
        n++;
        sim_cmd(t, sq, &sqe);
        if (sim_unlikely(SIM_LOAD(&t->sim->fatal)))
            break;
    }
    return n;
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

void nvl__sim_idle(struct sim_thread *t, uint64_t *idle_since, int worked)
{
    uint64_t max_ns = t->idle_max_ns;
    uint64_t now, sleep_ns;
    struct timespec ts;

    if (worked) {
        *idle_since = 0;
        return;
    }
    if (!max_ns) {
        cpu_relax();
        return;
    }
    now = nvl__sim_now_ns();
    if (!*idle_since)
        *idle_since = now;
    if (now - *idle_since < SIM_SPIN_NS) {
        cpu_relax();
        return;
    }
    /* Sleep longer the longer we have been idle, up to idle_us. */
    sleep_ns = (now - *idle_since) / 4;
    if (sleep_ns > max_ns)
        sleep_ns = max_ns;
    if (t->pending) {
        /* A completion is due: spin when it is close, so the latency model stays accurate. */
        if (t->next_due_ns <= now + 2 * SIM_SPIN_NS) {
            cpu_relax();
            return;
        }
        if (sleep_ns > t->next_due_ns - now - SIM_SPIN_NS)
            sleep_ns = t->next_due_ns - now - SIM_SPIN_NS;
    }
    ts.tv_sec = (time_t)(sleep_ns / 1000000000u);
    ts.tv_nsec = (long)(sleep_ns % 1000000000u);
    /* Offline while asleep: a grace period need not wait for this thread. */
    SIM_STORE_SC(&t->online, 0);
    nanosleep(&ts, NULL);
    SIM_STORE_SC(&t->online, 1);
}

void *nvl__sim_io_main(void *arg)
{
    struct sim_thread *t = arg;
    struct nvl_sim *sim = t->sim;
    uint64_t idle_since = 0;

    /* Short sleeps should be short: the default 50 us timer slack would double them. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    SIM_STORE_SC(&t->online, 1);
    while (!SIM_LOAD_ACQ(&sim->stop)) {
        struct sim_qtable *tb = SIM_LOAD_SC(&t->table);
        uint32_t work = 0, i;

        t->now = 0;
        t->next_due_ns = UINT64_MAX;
        t->pending = 0;
        if (tb && !SIM_LOAD(&sim->fatal)) {
            for (i = 0; i < tb->nsq; i++)
                work += nvl__sim_sq_service(t, tb->sq[i]);
            for (i = 0; i < tb->ncq; i++)
                work += nvl__sim_cq_service(t, tb->cq[i]);
        }
        /* Quiescent point: nothing from this pass's tables is held past here. */
        SIM_STORE_SC(&t->epoch, t->epoch + 1);
        nvl__sim_idle(t, &idle_since, work != 0);
    }
    SIM_STORE_SC(&t->online, 0);
    return NULL;
}
