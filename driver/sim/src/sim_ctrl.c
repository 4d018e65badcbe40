/* The control thread: the controller state machine driven by CC (NVMe 1.4 §3.1.5, §7.6), the
 * admin queue pair, and the register and doorbell checks that need no I/O thread.
 *
 *   DISABLED --CC.EN=1, valid config--> ENABLING --ready_delay--> READY (CSTS.RDY=1)
 *   DISABLED --CC.EN=1, bad config----> FAILED (CSTS.CFS=1) --CC.EN=0--> DISABLED
 *   READY --CC.EN=0--> DISABLING (queues torn down) --ready_delay--> DISABLED (CSTS=0)
 *   READY --CC.SHN--> SHST=occurring, store flushed, --shutdown_delay--> SHST=complete
 * A function-level reset (transport reset) returns to DISABLED at once with every register
 * cleared. */
#include "sim_internal.h"

#include <errno.h>
#include <sys/prctl.h>

#define SIM_SCAN_NS 1000000u /* period of the absent-queue doorbell scan */

struct ctrl_local {
    uint64_t shn_deadline;
    uint64_t last_scan;
    int early_enable_warned;
};

/* Why CC cannot be enabled, or NULL. The one configuration this controller supports is 4 KiB
 * pages, the NVM command set, round robin and 64/16-byte entries (CAP.MPSMIN = MPSMAX = 0,
 * CAP.CSS = NVM, CAP.AMS = 0, Identify SQES/CQES = 6/4), as QEMU checks at enable. */
static const char *ctrl_cc_problem(uint32_t cc)
{
    if (nvme_cc_css(cc) != NVME_CC_CSS_NVM)
        return "CC.CSS is not the NVM command set";
    if (nvme_cc_mps(cc) != 0)
        return "CC.MPS is not 4 KiB (CAP.MPSMAX = 0)";
    if (nvme_cc_ams(cc) != NVME_CC_AMS_RR)
        return "CC.AMS is not round robin";
    if (nvme_cc_iosqes(cc) != NVME_SQE_SIZE_LOG2)
        return "CC.IOSQES is not 6 (64-byte SQEs)";
    if (nvme_cc_iocqes(cc) != NVME_CQE_SIZE_LOG2)
        return "CC.IOCQES is not 4 (16-byte CQEs)";
    if (nvme_cc_shn(cc) != NVME_CC_SHN_NONE)
        return "CC.SHN set together with CC.EN";
    return NULL;
}

/* CC.EN 0 -> 1: checks CC and the admin queue registers, then sets up the admin queues. 0, or
 * -errno after raising CSTS.CFS with the reason. */
static int ctrl_enable(struct nvl_sim *sim, struct sim_thread *t, uint32_t cc)
{
    uint32_t aqa = nvl__sim_reg32(sim, NVME_REG_AQA);
    uint64_t asq = nvl__sim_reg64(sim, NVME_REG_ASQ);
    uint64_t acq = nvl__sim_reg64(sim, NVME_REG_ACQ);
    uint32_t sqs = nvme_aqa_asqs(aqa), cqs = nvme_aqa_acqs(aqa);
    const char *why = ctrl_cc_problem(cc);
    void *sq_ring = NULL, *cq_ring = NULL;

    if (!why && (aqa & 0xf000f000u))
        why = "AQA reserved bits set";
    if (!why && (sqs < 2 || cqs < 2))
        why = "AQA admin queue of one entry";
    if (!why && ((asq & (SIM_PAGE - 1)) || (acq & (SIM_PAGE - 1))))
        why = "ASQ or ACQ not page aligned";
    if (why) {
        nvl__sim_fatal(sim, NVL_SIM_VIOL_ENABLE, "enable refused: %s (CC 0x%08x AQA 0x%08x)", why,
                       cc, aqa);
        return -EINVAL;
    }
    sq_ring =
        nvl__sim_dma_xlate(&sim->dma, &t->dcache, asq, (uint64_t)sqs * sizeof(struct nvme_sqe));
    cq_ring =
        nvl__sim_dma_xlate(&sim->dma, &t->dcache, acq, (uint64_t)cqs * sizeof(struct nvme_cqe));
    if (!sq_ring || !cq_ring) {
        nvl__sim_fatal(sim, NVL_SIM_VIOL_DMA,
                       "enable refused: admin %s queue at IOVA 0x%llx is not "
                       "in a DMA region",
                       sq_ring ? "completion" : "submission",
                       (unsigned long long)(sq_ring ? acq : asq));
        return -EFAULT;
    }
    if (nvl__sim_cq_init(&sim->acq, 0, cq_ring, acq, cqs, nvl__sim_cq_db(sim, 0)))
        goto err_nomem;
    if (nvl__sim_sq_init(&sim->asq, 0, sq_ring, asq, sqs, nvl__sim_sq_db(sim, 0), &sim->acq))
        goto err_fini_cq;
    pthread_mutex_lock(&sim->qlock);
    sim->admin_live = 1;
    pthread_mutex_unlock(&sim->qlock);
    return 0;

err_fini_cq:
    nvl__sim_cq_fini(&sim->acq);
err_nomem:
    nvl__sim_fatal(sim, NVL_SIM_VIOL_COUNT, "enable failed: out of memory");
    return -ENOMEM;
}

static void ctrl_zero_doorbells(struct nvl_sim *sim)
{
    uint32_t q;

    for (q = 0; q <= sim->max_qid; q++) {
        SIM_STORE(nvl__sim_sq_db(sim, q), 0u);
        SIM_STORE(nvl__sim_cq_db(sim, q), 0u);
    }
}

/* Doorbell writes before CSTS.RDY = 1 reach no queue: count them and drop them. */
static void ctrl_early_doorbells(struct nvl_sim *sim)
{
    uint32_t q;

    for (q = 0; q <= sim->max_qid; q++) {
        uint32_t s = SIM_LOAD(nvl__sim_sq_db(sim, q)), c = SIM_LOAD(nvl__sim_cq_db(sim, q));

        if (s || c) {
            nvl__sim_violation(
                sim, NVL_SIM_VIOL_DOORBELL_EARLY,
                "queue %u doorbell written while CSTS.RDY = 0 (SQ %u, CQ %u); dropped", q, s, c);
            SIM_STORE(nvl__sim_sq_db(sim, q), 0u);
            SIM_STORE(nvl__sim_cq_db(sim, q), 0u);
        }
    }
}

/* A doorbell of a queue that does not exist is an invalid doorbell write (§4.1, reported as an
 * asynchronous event by hardware); this controller treats it as fatal. */
static void ctrl_absent_doorbells(struct nvl_sim *sim)
{
    uint32_t q;

    for (q = 1; q <= sim->max_qid; q++) {
        int have_sq = q <= sim->opts.max_io_queues && sim->sqs[q];
        int have_cq = q <= sim->opts.max_io_queues && sim->cqs[q];

        if ((!have_sq && SIM_LOAD(nvl__sim_sq_db(sim, q))) ||
            (!have_cq && SIM_LOAD(nvl__sim_cq_db(sim, q)))) {
            nvl__sim_fatal(sim, NVL_SIM_VIOL_DOORBELL_NOQUEUE,
                           "doorbell of queue %u written, but the queue does not exist", q);
            return;
        }
    }
}

/* CAP and VS are read-only: a host store to them is a bug, and the value is put back. */
static void ctrl_check_ro(struct nvl_sim *sim)
{
    if (nvl__sim_reg64(sim, NVME_REG_CAP) != sim->cap ||
        nvl__sim_reg32(sim, NVME_REG_VS) != sim->vs) {
        nvl__sim_violation(sim, NVL_SIM_VIOL_RO_REGISTER, "host wrote CAP or VS; restored");
        nvl__sim_reg64_write(sim, NVME_REG_CAP, sim->cap);
        nvl__sim_reg32_write(sim, NVME_REG_VS, sim->vs);
    }
}

static void ctrl_teardown(struct nvl_sim *sim, struct sim_thread *t)
{
    nvl__sim_admin_reset_queues(sim, t);
    pthread_mutex_lock(&sim->qlock);
    sim->admin_live = 0;
    pthread_mutex_unlock(&sim->qlock);
    nvl__sim_sq_fini(&sim->asq);
    nvl__sim_cq_fini(&sim->acq);
    ctrl_zero_doorbells(sim);
    sim->shutdown = 0;
    SIM_STORE(&sim->halted, 0);
}

static void ctrl_flr(struct nvl_sim *sim, struct sim_thread *t)
{
    ctrl_teardown(sim, t);
    nvl__sim_reg32_write(sim, NVME_REG_CC, 0);
    nvl__sim_reg32_write(sim, NVME_REG_AQA, 0);
    nvl__sim_reg64_write(sim, NVME_REG_ASQ, 0);
    nvl__sim_reg64_write(sim, NVME_REG_ACQ, 0);
    nvl__sim_reg64_write(sim, NVME_REG_CAP, sim->cap);
    nvl__sim_reg32_write(sim, NVME_REG_VS, sim->vs);
    SIM_STORE_SC(&sim->fatal, 0);
    nvl__sim_csts_update(sim, ~0u, 0);
    sim->state = SIM_ST_DISABLED;
    __atomic_fetch_add(&sim->resets, 1, __ATOMIC_RELAXED);
}

static uint32_t ctrl_shutdown(struct nvl_sim *sim, struct ctrl_local *l, uint32_t cc, uint64_t now)
{
    int ret;

    if (nvme_cc_shn(cc) != NVME_CC_SHN_NONE && sim->shutdown == 0) {
        sim->shutdown = 1;
        SIM_STORE(&sim->halted, 1);
        nvl__sim_csts_update(sim, NVME_CSTS_SHST_MASK,
                             NVME_CSTS_SHST_OCCURRING << NVME_CSTS_SHST_SHIFT);
        ret = nvl__sim_store_flush(&sim->store);
        if (ret)
            nvl_log_error(sim->who, "flush at shutdown failed: %s", nvl_strerror(ret));
        l->shn_deadline = now + (uint64_t)sim->opts.shutdown_delay_us * 1000u;
        return 1;
    }
    if (sim->shutdown == 1 && now >= l->shn_deadline) {
        sim->shutdown = 2;
        nvl__sim_csts_update(sim, NVME_CSTS_SHST_MASK,
                             NVME_CSTS_SHST_COMPLETE << NVME_CSTS_SHST_SHIFT);
        return 1;
    }
    return 0;
}

static uint32_t ctrl_tick(struct nvl_sim *sim, struct sim_thread *t, struct ctrl_local *l,
                          uint64_t now)
{
    uint64_t flr = SIM_LOAD_ACQ(&sim->flr_req);
    uint64_t delay = (uint64_t)sim->opts.ready_delay_us * 1000u;
    uint32_t cc, work;

    if (flr != sim->flr_done) {
        ctrl_flr(sim, t);
        SIM_STORE_REL(&sim->flr_done, flr);
        return 1;
    }
    ctrl_check_ro(sim);
    cc = nvl__sim_reg32(sim, NVME_REG_CC);
    switch (sim->state) {
    case SIM_ST_DISABLED:
        ctrl_early_doorbells(sim);
        if (!(cc & NVME_CC_EN))
            return 0;
        if (ctrl_enable(sim, t, cc)) {
            sim->state = SIM_ST_FAILED;
        } else {
            sim->state = SIM_ST_ENABLING;
            sim->deadline_ns = now + delay;
        }
        return 1;
    case SIM_ST_ENABLING:
        if (!(cc & NVME_CC_EN)) {
            ctrl_teardown(sim, t);
            sim->state = SIM_ST_DISABLED;
            return 1;
        }
        if (now < sim->deadline_ns)
            return 0;
        ctrl_early_doorbells(sim);
        nvl__sim_csts_update(sim, 0, NVME_CSTS_RDY);
        sim->state = SIM_ST_READY;
        l->early_enable_warned = 0;
        return 1;
    case SIM_ST_READY:
        if (!(cc & NVME_CC_EN)) {
            ctrl_teardown(sim, t);
            __atomic_fetch_add(&sim->resets, 1, __ATOMIC_RELAXED);
            sim->state = SIM_ST_DISABLING;
            sim->deadline_ns = now + delay;
            return 1;
        }
        if (SIM_LOAD(&sim->fatal))
            return 0;
        work = ctrl_shutdown(sim, l, cc, now);
        work += nvl__sim_sq_service(t, &sim->asq);
        work += nvl__sim_cq_service(t, &sim->acq);
        if (now - l->last_scan >= SIM_SCAN_NS) {
            l->last_scan = now;
            ctrl_absent_doorbells(sim);
        }
        return work;
    case SIM_ST_FAILED:
        if (cc & NVME_CC_EN)
            return 0;
        ctrl_teardown(sim, t);
        SIM_STORE_SC(&sim->fatal, 0);
        nvl__sim_csts_update(sim, ~0u, 0);
        sim->state = SIM_ST_DISABLED;
        return 1;
    case SIM_ST_DISABLING:
        if ((cc & NVME_CC_EN) && !l->early_enable_warned) {
            l->early_enable_warned = 1;
            nvl__sim_violation(sim, NVL_SIM_VIOL_ENABLE,
                               "CC.EN set again before CSTS.RDY went to 0");
        }
        if (now < sim->deadline_ns)
            return 0;
        SIM_STORE_SC(&sim->fatal, 0);
        nvl__sim_csts_update(sim, ~0u, 0);
        sim->state = SIM_ST_DISABLED;
        return 1;
    }
    return 0;
}

void *nvl__sim_ctrl_main(void *arg)
{
    struct sim_thread *t = arg;
    struct nvl_sim *sim = t->sim;
    struct ctrl_local l = {0, 0, 0};
    uint64_t idle_since = 0;

    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    SIM_STORE_SC(&t->online, 1);
    while (!SIM_LOAD_ACQ(&sim->stop)) {
        uint32_t work;

        t->next_due_ns = UINT64_MAX;
        t->pending = 0;
        t->now = nvl__sim_now_ns();
        work = ctrl_tick(sim, t, &l, t->now);
        SIM_STORE_SC(&t->epoch, t->epoch + 1);
        nvl__sim_idle(t, &idle_since, work != 0);
    }
    SIM_STORE_SC(&t->online, 0);
    return NULL;
}
