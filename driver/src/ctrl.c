/* Controller bring-up, admin commands, reset and shutdown (NVMe 1.4 §7.6).
 *
 * Bring-up runs as the explicit sequence of states in enum nvl_ctrl_state. Every limit comes
 * from the controller: CAP (MQES, DSTRD, TO, MPSMIN, CQR, CSS) and Identify (MDTS, LBA format,
 * NN). Every wait has a deadline: RDY transitions use CAP.TO, admin commands the configured
 * timeout; a timeout or CSTS.CFS resets the controller and names the command. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctrl_internal.h"
#include "nvl_driver/log.h"
#include "nvl_driver/mmio.h"

#define CTRL_DEFAULT_MAX_TRANSFER (2u << 20) /* when MDTS reports no limit */
#define CTRL_ADMIN_MAX_DATA       8192u      /* largest admin data transfer we issue */

void nvl_ctrl_opts_init(struct nvl_ctrl_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->n_io_queues = 1;
    o->io_queue_depth = 256;
    o->admin_queue_depth = 32;
    o->admin_timeout_ms = 10000;
    o->io_timeout_ms = 10000;
    o->nsid = 1;
}

const char *nvl_ctrl_state_name(enum nvl_ctrl_state s)
{
    static const char *const names[] = {
        "init",       "disabling",     "disabled", "admin-queue",   "enabling", "identify",
        "set-queues", "create-queues", "ready",    "shutting-down", "shutdown", "failed",
    };

    if ((unsigned)s >= sizeof(names) / sizeof(names[0]))
        return "?";
    return names[s];
}

static const char *admin_opc_name(uint8_t opc)
{
    switch (opc) {
    case NVME_ADMIN_DELETE_SQ:
        return "Delete I/O SQ";
    case NVME_ADMIN_CREATE_SQ:
        return "Create I/O SQ";
    case NVME_ADMIN_GET_LOG_PAGE:
        return "Get Log Page";
    case NVME_ADMIN_DELETE_CQ:
        return "Delete I/O CQ";
    case NVME_ADMIN_CREATE_CQ:
        return "Create I/O CQ";
    case NVME_ADMIN_IDENTIFY:
        return "Identify";
    case NVME_ADMIN_SET_FEATURES:
        return "Set Features";
    case NVME_ADMIN_GET_FEATURES:
        return "Get Features";
    default:
        return "admin command";
    }
}

static void ctrl_set_state(struct nvl_ctrl *c, enum nvl_ctrl_state s)
{
    nvl_log_debug(c->name, "state %s -> %s", nvl_ctrl_state_name(c->state), nvl_ctrl_state_name(s));
    c->state = s;
}

static uint32_t ctrl_rd32(const struct nvl_ctrl *c, size_t off)
{
    return nvl_mmio_read32(c->t->bar0, off);
}

static void ctrl_wr32(const struct nvl_ctrl *c, size_t off, uint32_t v)
{
    nvl_mmio_write32(c->t->bar0, off, v);
}

/* Sleeps briefly between register polls: register transitions take micro- to milliseconds and
 * a spinning poller would steal the core a software controller runs on. */
static void ctrl_pause(uint64_t waited_ns)
{
    struct timespec ts = {0, waited_ns < 1000000 ? 10000 : 200000};

    nanosleep(&ts, NULL);
}

int nvl__ctrl_check_fatal(struct nvl_ctrl *c, const char *what)
{
    uint32_t csts = ctrl_rd32(c, NVME_REG_CSTS);

    if (csts == 0xffffffffu) {
        nvl_log_error(c->name, "CSTS reads all ones during %s: the device is gone", what);
        return -ENODEV;
    }
    if (nvme_csts_cfs(csts)) {
        nvl_log_error(c->name, "controller fatal status (CSTS.CFS) during %s", what);
        return -EIO;
    }
    return 0;
}

/* Waits until (CSTS & mask) == want within timeout_ms. With fail_on_cfs, CSTS.CFS ends the wait
 * with -EIO. */
static int ctrl_wait_csts(struct nvl_ctrl *c, uint32_t mask, uint32_t want, uint32_t timeout_ms,
                          int fail_on_cfs, const char *what)
{
    uint64_t start = nvl__now_ns();
    uint64_t deadline = start + (uint64_t)timeout_ms * 1000000ull;

    for (;;) {
        uint32_t csts = ctrl_rd32(c, NVME_REG_CSTS);
        uint64_t now;

        if (csts == 0xffffffffu) {
            nvl_log_error(c->name, "CSTS reads all ones while waiting for %s: device gone", what);
            return -ENODEV;
        }
        if ((csts & mask) == want)
            return 0;
        if (fail_on_cfs && nvme_csts_cfs(csts)) {
            nvl_log_error(c->name, "controller fatal status (CSTS.CFS) while waiting for %s", what);
            return -EIO;
        }
        now = nvl__now_ns();
        if (now > deadline) {
            nvl_log_error(c->name, "timed out after %u ms waiting for %s (CSTS 0x%08x)", timeout_ms,
                          what, csts);
            return -ETIMEDOUT;
        }
        ctrl_pause(now - start);
    }
}

/* Reads and checks CAP and VS; fills the CAP-derived limits. */
static int ctrl_read_cap(struct nvl_ctrl *c)
{
    uint64_t cap = nvl_mmio_read64(c->t->bar0, NVME_REG_CAP);
    uint64_t page;

    if (cap == ~0ull) {
        nvl_log_error(c->name, "CAP reads all ones: BAR0 not mapped or device gone");
        return -ENODEV;
    }
    c->info.cap = cap;
    c->info.vs = ctrl_rd32(c, NVME_REG_VS);
    c->info.max_entries = nvme_cap_max_entries(cap);
    c->info.dstrd = nvme_cap_dstrd(cap);
    /* CAP.TO = 0 would mean "no time at all"; give such a controller 500 ms. */
    c->info.timeout_ms = nvme_cap_timeout_ms(cap) ? nvme_cap_timeout_ms(cap) : 500;
    page = nvme_cap_mpsmin_bytes(cap);
    if (!(nvme_cap_css(cap) & NVME_CAP_CSS_NVM)) {
        nvl_log_error(c->name, "controller does not support the NVM command set (CAP.CSS 0x%x)",
                      nvme_cap_css(cap));
        return -ENODEV;
    }
    if (c->info.max_entries < 2) {
        nvl_log_error(c->name, "CAP.MQES %u is invalid", nvme_cap_mqes(cap));
        return -ENODEV;
    }
    if (page > NVL_DMA_HUGEPAGE) {
        nvl_log_error(c->name, "CAP.MPSMIN page of %llu bytes is not supported",
                      (unsigned long long)page);
        return -EOPNOTSUPP;
    }
    if (nvme_cap_dstrd(cap) > 10 || nvme_sq_tail_db_offset(1, c->info.dstrd) >= c->t->bar0_len) {
        nvl_log_error(c->name, "CAP.DSTRD %u puts the doorbells outside BAR0 (%zu bytes)",
                      nvme_cap_dstrd(cap), c->t->bar0_len);
        return -ENODEV;
    }
    c->info.page_size = (uint32_t)page;
    nvl_log_info(c->name,
                 "CAP 0x%016llx: NVMe %u.%u.%u, MQES %u, DSTRD %u, TO %u ms, MPS %llu..%llu, "
                 "CQR %u",
                 (unsigned long long)cap, nvme_vs_mjr(c->info.vs), nvme_vs_mnr(c->info.vs),
                 nvme_vs_ter(c->info.vs), nvme_cap_mqes(cap), c->info.dstrd, c->info.timeout_ms,
                 (unsigned long long)nvme_cap_mpsmin_bytes(cap),
                 (unsigned long long)nvme_cap_mpsmax_bytes(cap), nvme_cap_cqr(cap));
    return 0;
}

/* CC.EN = 0 and wait for CSTS.RDY = 0 (§3.1.5, §7.6.1). If the controller does not get there
 * within CAP.TO, the transport's function reset is tried once. */
static int ctrl_disable(struct nvl_ctrl *c)
{
    uint32_t cc = ctrl_rd32(c, NVME_REG_CC);
    uint32_t csts = ctrl_rd32(c, NVME_REG_CSTS);
    int rc;

    ctrl_set_state(c, NVL_CTRL_DISABLING);
    if (cc == 0xffffffffu || csts == 0xffffffffu) {
        nvl_log_error(c->name, "registers read all ones: the device is gone");
        return -ENODEV;
    }
    /* Clearing EN while an enable is still in progress (EN=1, RDY=0) is undefined on some
     * controllers; let the enable finish first (as SPDK does). */
    if (nvme_cc_en(cc) && !nvme_csts_rdy(csts) && !nvme_csts_cfs(csts))
        ctrl_wait_csts(c, NVME_CSTS_RDY, NVME_CSTS_RDY, c->info.timeout_ms, 1,
                       "CSTS.RDY=1 before disabling");
    if (nvme_cc_en(cc))
        ctrl_wr32(c, NVME_REG_CC, cc & ~(NVME_CC_EN | NVME_CC_SHN_MASK));
    rc = ctrl_wait_csts(c, NVME_CSTS_RDY, 0, c->info.timeout_ms, 0, "CSTS.RDY=0 after CC.EN=0");
    if (rc == -ETIMEDOUT && c->t->ops && c->t->ops->reset) {
        nvl_log_warn(c->name, "controller did not disable; trying a function-level reset");
        rc = nvl_transport_reset(c->t);
        if (rc == 0)
            rc = ctrl_wait_csts(c, NVME_CSTS_RDY, 0, c->info.timeout_ms, 0,
                                "CSTS.RDY=0 after function reset");
    }
    if (rc)
        return rc;
    ctrl_set_state(c, NVL_CTRL_DISABLED);
    return 0;
}

/* Programs the admin queue and enables the controller (§7.6.1 steps 2-5). */
static int ctrl_enable(struct nvl_ctrl *c)
{
    struct nvl_qpair *aq = &c->admin;
    uint32_t mps = nvme_cap_mpsmin(c->info.cap);
    int rc;

    ctrl_set_state(c, NVL_CTRL_ADMIN_QUEUE);
    ctrl_wr32(c, NVME_REG_AQA, nvme_aqa_make(aq->depth, aq->depth));
    nvl_mmio_write64(c->t->bar0, NVME_REG_ASQ, aq->ring->iova);
    nvl_mmio_write64(c->t->bar0, NVME_REG_ACQ, aq->ring->iova + aq->cq_off);
    c->cc = nvme_cc_make(1, NVME_CC_CSS_NVM, mps, NVME_CC_AMS_RR, NVME_CC_SHN_NONE,
                         NVME_SQE_SIZE_LOG2, NVME_CQE_SIZE_LOG2);
    ctrl_set_state(c, NVL_CTRL_ENABLING);
    /* The queue memory was zeroed and the registers written before this store; the release
     * store orders them for a software controller, uncached MMIO does for hardware. */
    nvl_mmio_wmb();
    ctrl_wr32(c, NVME_REG_CC, c->cc);
    rc = ctrl_wait_csts(c, NVME_CSTS_RDY, NVME_CSTS_RDY, c->info.timeout_ms, 1,
                        "CSTS.RDY=1 after CC.EN=1");
    return rc;
}

static void admin_done(void *arg, int err, uint16_t status)
{
    struct {
        int done, err;
        uint16_t status;
    } *w = arg;

    w->done = 1;
    w->err = err;
    w->status = status;
}

/* Runs one admin command; the admin lock is held. */
static int ctrl_admin_locked(struct nvl_ctrl *c, const struct nvme_sqe *cmd,
                             const struct nvl_dma *buf, size_t off, size_t len, uint32_t *dw0,
                             uint16_t *nvme_status)
{
    struct nvl_qpair *aq = &c->admin;
    struct {
        int done, err;
        uint16_t status;
    } w = {0, 0, 0};
    uint64_t start, deadline, last_check;
    uint32_t spins = 0;
    int rc;

    if (nvme_status)
        *nvme_status = 0;
    if (c->state == NVL_CTRL_FAILED)
        return -ENODEV;
    rc = nvl__qpair_submit(aq, cmd, buf, off, len, admin_done, &w, dw0);
    if (rc) {
        nvl_log_error(c->name, "%s: cannot submit: %s", admin_opc_name(cmd->opc), nvl_strerror(rc));
        return rc;
    }
    nvl__qpair_ring(aq);
    start = last_check = nvl__now_ns();
    deadline = start + (uint64_t)c->opts.admin_timeout_ms * 1000000ull;
    while (!w.done) {
        uint64_t now;

        rc = nvl__qpair_process(aq, 0);
        if (rc < 0)
            goto err_detach;
        if (w.done)
            break;
        if (++spins < 64)
            continue;
        now = nvl__now_ns();
        if (now - last_check > 1000000ull) {
            last_check = now;
            rc = nvl__ctrl_check_fatal(c, admin_opc_name(cmd->opc));
            if (rc)
                goto err_detach;
        }
        if (now > deadline) {
            nvl_log_error(c->name,
                          "%s (opcode 0x%02x) timed out after %u ms: the controller needs a "
                          "reset",
                          admin_opc_name(cmd->opc), cmd->opc, c->opts.admin_timeout_ms);
            rc = -ETIMEDOUT;
            goto err_detach;
        }
        ctrl_pause(now - start);
    }
    if (nvme_status)
        *nvme_status = w.status;
    if (w.err) {
        nvl_log_error(c->name, "%s (opcode 0x%02x) failed: status type 0x%x code 0x%02x%s",
                      admin_opc_name(cmd->opc), cmd->opc, nvme_status_sct(w.status),
                      nvme_status_sc(w.status), nvme_status_dnr(w.status) ? " (DNR)" : "");
        return w.err;
    }
    return 0;

err_detach:
    /* The command is lost with the controller: its completion, if it ever comes, must not
     * reach this stack frame. */
    for (uint32_t cid = 0; cid < aq->cids.count; cid++)
        if (aq->reqs[cid].arg == (void *)&w)
            memset(&aq->reqs[cid], 0, sizeof(aq->reqs[cid]));
    c->needs_reset = 1;
    return rc;
}

static int ctrl_admin_checked(struct nvl_ctrl *c, const struct nvme_sqe *cmd,
                              const struct nvl_dma *buf, size_t off, size_t len, uint32_t *dw0,
                              uint16_t *nvme_status)
{
    int rc;

    pthread_mutex_lock(&c->admin.lock);
    rc = ctrl_admin_locked(c, cmd, buf, off, len, dw0, nvme_status);
    pthread_mutex_unlock(&c->admin.lock);
    return rc;
}

int nvl_ctrl_admin(struct nvl_ctrl *c, const struct nvme_sqe *cmd, const struct nvl_dma *buf,
                   size_t off, size_t len, uint32_t *dw0, uint16_t *nvme_status)
{
    int rc;

    if (!c || !cmd || (buf && (len == 0 || len > CTRL_ADMIN_MAX_DATA)))
        return -EINVAL;
    rc = ctrl_admin_checked(c, cmd, buf, off, len, dw0, nvme_status);
    if (rc && c->needs_reset && c->state == NVL_CTRL_READY && !c->in_recovery) {
        int rrc = nvl_ctrl_reset(c);

        if (rrc)
            nvl_log_error(c->name, "reset after a failed admin command failed: %s",
                          nvl_strerror(rrc));
    }
    return rc;
}

int nvl_ctrl_get_log_page(struct nvl_ctrl *c, uint8_t lid, uint32_t nsid, const struct nvl_dma *buf,
                          size_t off, size_t len, uint16_t *nvme_status)
{
    struct nvme_sqe cmd = {0};

    if (!c || !buf || len == 0 || len % 4 || len > 4096)
        return -EINVAL;
    cmd.opc = NVME_ADMIN_GET_LOG_PAGE;
    cmd.nsid = nsid;
    cmd.cdw10 = nvme_get_log_cdw10(lid, (uint32_t)len);
    cmd.cdw11 = nvme_get_log_cdw11((uint32_t)len);
    return nvl_ctrl_admin(c, &cmd, buf, off, len, NULL, nvme_status);
}

/* Copies a space-padded ASCII field into a NUL-terminated string without the padding. */
static void copy_trimmed(char *dst, const char *src, size_t n)
{
    size_t i;

    memcpy(dst, src, n);
    dst[n] = '\0';
    for (i = n; i > 0 && (dst[i - 1] == ' ' || dst[i - 1] == '\0'); i--)
        dst[i - 1] = '\0';
}

static int ctrl_identify(struct nvl_ctrl *c, uint32_t cns, uint32_t nsid, void *out)
{
    struct nvme_sqe cmd = {0};
    int rc;

    cmd.opc = NVME_ADMIN_IDENTIFY;
    cmd.nsid = nsid;
    cmd.cdw10 = cns;
    memset(c->scratch->vaddr, 0, NVME_IDENTIFY_DATA_SIZE);
    rc = ctrl_admin_checked(c, &cmd, c->scratch, 0, NVME_IDENTIFY_DATA_SIZE, NULL, NULL);
    if (rc)
        return rc;
    nvl_mmio_rmb();
    memcpy(out, c->scratch->vaddr, NVME_IDENTIFY_DATA_SIZE);
    return 0;
}

/* Largest power-of-two-free multiple of `unit` not above v. */
static uint32_t round_down_u32(uint32_t v, uint32_t unit)
{
    return v / unit * unit;
}

/* Identify Controller and the namespace; derives MDTS, LBA size and the transfer size. */
static int ctrl_identify_all(struct nvl_ctrl *c)
{
    struct nvl_ctrl_info *in = &c->info;
    const struct nvme_id_ns *ns = &c->id_ns;
    uint64_t mdts_bytes = 0, limit;
    uint32_t fmt, unit;
    int rc;

    ctrl_set_state(c, NVL_CTRL_IDENTIFY);
    rc = ctrl_identify(c, NVME_IDENTIFY_CTRL, 0, &c->id_ctrl);
    if (rc)
        return rc;
    in->vid = c->id_ctrl.vid;
    copy_trimmed(in->sn, c->id_ctrl.sn, sizeof(c->id_ctrl.sn));
    copy_trimmed(in->mn, c->id_ctrl.mn, sizeof(c->id_ctrl.mn));
    copy_trimmed(in->fr, c->id_ctrl.fr, sizeof(c->id_ctrl.fr));
    in->nn = c->id_ctrl.nn;
    in->oncs = c->id_ctrl.oncs;
    in->vwc = c->id_ctrl.vwc & NVME_VWC_PRESENT;
    /* SQES/CQES bits 3:0 are the required size, 7:4 the maximum (log2 bytes). */
    if ((c->id_ctrl.sqes && ((c->id_ctrl.sqes & 0xf) > NVME_SQE_SIZE_LOG2 ||
                             (c->id_ctrl.sqes >> 4) < NVME_SQE_SIZE_LOG2)) ||
        (c->id_ctrl.cqes && ((c->id_ctrl.cqes & 0xf) > NVME_CQE_SIZE_LOG2 ||
                             (c->id_ctrl.cqes >> 4) < NVME_CQE_SIZE_LOG2))) {
        nvl_log_error(c->name, "controller needs SQES 0x%02x / CQES 0x%02x, not 64/16 bytes",
                      c->id_ctrl.sqes, c->id_ctrl.cqes);
        return -EOPNOTSUPP;
    }
    /* §5.15.2.1: MDTS is a power of two in units of CAP.MPSMIN; 0 means no limit. */
    if (c->id_ctrl.mdts) {
        unsigned shift = c->id_ctrl.mdts + 12 + nvme_cap_mpsmin(in->cap);

        mdts_bytes = shift >= 63 ? (1ull << 62) : (1ull << shift);
    }
    in->mdts_bytes = mdts_bytes;
    if (c->opts.nsid == 0 || c->opts.nsid > in->nn) {
        nvl_log_error(c->name, "namespace %u does not exist (the controller has %u)", c->opts.nsid,
                      in->nn);
        return -ENODEV;
    }
    in->nsid = c->opts.nsid;
    rc = ctrl_identify(c, NVME_IDENTIFY_NS, in->nsid, &c->id_ns);
    if (rc)
        return rc;
    if (ns->nsze == 0) {
        nvl_log_error(c->name, "namespace %u is not active", in->nsid);
        return -ENODEV;
    }
    fmt = nvme_id_ns_flbas_index(ns);
    if (fmt > ns->nlbaf || ns->lbaf[fmt].lbads < 9 || ns->lbaf[fmt].lbads > 16) {
        nvl_log_error(c->name, "namespace %u: bad LBA format %u (NLBAF %u, LBADS %u)", in->nsid,
                      fmt, ns->nlbaf, fmt < 64 ? ns->lbaf[fmt].lbads : 0);
        return -EIO;
    }
    if (ns->lbaf[fmt].ms) {
        nvl_log_error(c->name, "namespace %u uses %u bytes of metadata per block: unsupported",
                      in->nsid, ns->lbaf[fmt].ms);
        return -EOPNOTSUPP;
    }
    in->lba_size = 1u << ns->lbaf[fmt].lbads;
    in->ns_lbas = ns->nsze;
    /* Bytes per command: MDTS, the caller's cap, 65536 blocks (NLB is 16 bits), all rounded to
     * whole pages and blocks. */
    limit = mdts_bytes ? mdts_bytes : CTRL_DEFAULT_MAX_TRANSFER;
    if (c->opts.max_transfer) {
        if (mdts_bytes && c->opts.max_transfer > mdts_bytes)
            nvl_log_warn(c->name, "max transfer %u bytes is above MDTS (%llu bytes); clamped",
                         c->opts.max_transfer, (unsigned long long)mdts_bytes);
        else
            limit = c->opts.max_transfer;
    }
    if (limit > (uint64_t)NVME_RW_NLB_MAX * in->lba_size)
        limit = (uint64_t)NVME_RW_NLB_MAX * in->lba_size;
    if (limit > 0x80000000ull)
        limit = 0x80000000ull;
    unit = in->page_size > in->lba_size ? in->page_size : in->lba_size;
    in->max_transfer = round_down_u32((uint32_t)limit, unit);
    if (in->max_transfer == 0) {
        nvl_log_error(c->name, "MDTS %llu bytes is smaller than one block/page (%u bytes)",
                      (unsigned long long)mdts_bytes, unit);
        return -EOPNOTSUPP;
    }
    nvl_log_info(c->name,
                 "%s (SN %s, FW %s): MDTS %llu bytes (transfer %u), namespace %u: %llu blocks "
                 "of %u bytes",
                 in->mn, in->sn, in->fr, (unsigned long long)mdts_bytes, in->max_transfer, in->nsid,
                 (unsigned long long)in->ns_lbas, in->lba_size);
    return 0;
}

/* Set Features Number of Queues (§5.21.1.7): asks for n pairs, clamps to what is granted. */
static int ctrl_set_num_queues(struct nvl_ctrl *c, uint32_t want)
{
    struct nvme_sqe cmd = {0};
    uint32_t dw0 = 0, nsq, ncq, granted;
    int rc;

    ctrl_set_state(c, NVL_CTRL_SET_QUEUES);
    cmd.opc = NVME_ADMIN_SET_FEATURES;
    cmd.cdw10 = NVME_FEAT_NUM_QUEUES;
    cmd.cdw11 = nvme_feat_num_queues_make(want, want);
    rc = ctrl_admin_checked(c, &cmd, NULL, 0, 0, &dw0, NULL);
    if (rc)
        return rc;
    nsq = nvme_feat_num_queues_nsq(dw0);
    ncq = nvme_feat_num_queues_ncq(dw0);
    granted = nsq < ncq ? nsq : ncq;
    c->info.max_io_queues = granted;
    if (granted < want) {
        nvl_log_warn(c->name, "asked for %u I/O queue pairs, the controller grants %u", want,
                     granted);
        want = granted;
    }
    c->info.n_io_queues = want;
    return 0;
}

static int ctrl_delete_queue(struct nvl_ctrl *c, uint8_t opc, uint16_t qid)
{
    struct nvme_sqe cmd = {0};

    cmd.opc = opc;
    cmd.cdw10 = qid;
    return ctrl_admin_checked(c, &cmd, NULL, 0, 0, NULL, NULL);
}

/* Create I/O CQ, then Create I/O SQ bound to it (§5.3, §5.4). Physically contiguous (PC=1),
 * no interrupts: nvload polls. */
static int ctrl_create_queue_pair(struct nvl_ctrl *c, struct nvl_qpair *qp)
{
    struct nvme_sqe cmd = {0};
    int rc;

    cmd.opc = NVME_ADMIN_CREATE_CQ;
    cmd.prp1 = qp->ring->iova + qp->cq_off;
    cmd.cdw10 = nvme_create_queue_cdw10(qp->qid, qp->depth);
    cmd.cdw11 = NVME_CREATE_CQ_PC;
    rc = ctrl_admin_checked(c, &cmd, NULL, 0, 0, NULL, NULL);
    if (rc)
        return rc;
    qp->cq_created = 1;
    memset(&cmd, 0, sizeof(cmd));
    cmd.opc = NVME_ADMIN_CREATE_SQ;
    cmd.prp1 = qp->ring->iova;
    cmd.cdw10 = nvme_create_queue_cdw10(qp->qid, qp->depth);
    cmd.cdw11 = ((uint32_t)qp->qid << 16) | NVME_CREATE_SQ_PC;
    rc = ctrl_admin_checked(c, &cmd, NULL, 0, 0, NULL, NULL);
    if (rc)
        return rc;
    qp->created = 1;
    return 0;
}

static int ctrl_create_io_queues(struct nvl_ctrl *c)
{
    uint32_t depth = c->opts.io_queue_depth;
    uint32_t i;
    int rc;

    ctrl_set_state(c, NVL_CTRL_CREATE_QUEUES);
    if (depth > c->info.max_entries) {
        nvl_log_warn(c->name, "I/O queue depth %u is above CAP.MQES + 1 = %u; clamped", depth,
                     c->info.max_entries);
        depth = c->info.max_entries;
    }
    c->info.io_queue_depth = depth;
    c->io = calloc(c->info.n_io_queues, sizeof(*c->io));
    if (!c->io)
        return -ENOMEM;
    for (i = 0; i < c->info.n_io_queues; i++) {
        rc = nvl__qpair_init(&c->io[i], c, (uint16_t)(i + 1), depth, c->info.max_transfer);
        if (rc)
            return rc;
        rc = ctrl_create_queue_pair(c, &c->io[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* Deletes the I/O queues that exist on the controller, SQ before its CQ (§5.6, §5.5). */
static void ctrl_delete_io_queues(struct nvl_ctrl *c)
{
    uint32_t i;

    if (!c->io)
        return;
    for (i = c->info.n_io_queues; i-- > 0;) {
        struct nvl_qpair *qp = &c->io[i];

        if (c->state == NVL_CTRL_FAILED)
            break;
        if (qp->created && ctrl_delete_queue(c, NVME_ADMIN_DELETE_SQ, qp->qid) == 0)
            qp->created = 0;
        if (qp->cq_created && !qp->created &&
            ctrl_delete_queue(c, NVME_ADMIN_DELETE_CQ, qp->qid) == 0)
            qp->cq_created = 0;
    }
}

/* Normal shutdown (§7.6.2): CC.SHN = 01b, wait for CSTS.SHST = 10b. */
static int ctrl_shutdown(struct nvl_ctrl *c)
{
    uint32_t cc = ctrl_rd32(c, NVME_REG_CC);
    uint32_t timeout = c->info.timeout_ms;
    int rc;

    ctrl_set_state(c, NVL_CTRL_SHUTTING_DOWN);
    /* RTD3E (µs) is the controller's own estimate of its shutdown time. */
    if (c->id_ctrl.rtd3e / 1000 > timeout)
        timeout = c->id_ctrl.rtd3e / 1000;
    cc = (cc & ~NVME_CC_SHN_MASK) | (NVME_CC_SHN_NORMAL << NVME_CC_SHN_SHIFT);
    ctrl_wr32(c, NVME_REG_CC, cc);
    rc = ctrl_wait_csts(c, NVME_CSTS_SHST_MASK, NVME_CSTS_SHST_COMPLETE << NVME_CSTS_SHST_SHIFT,
                        timeout, 1, "CSTS.SHST=complete after CC.SHN=normal");
    if (rc == 0)
        ctrl_set_state(c, NVL_CTRL_SHUTDOWN);
    return rc;
}

/* Brings everything down, whatever state bring-up reached: delete queues and shut down when
 * the controller still answers, always stop it (disable, or function reset) before the memory
 * it could DMA to is unmapped, then free. */
static void ctrl_teardown(struct nvl_ctrl *c, int clean)
{
    uint32_t i;

    if (c->state != NVL_CTRL_FAILED && clean)
        ctrl_delete_io_queues(c);
    if (c->state != NVL_CTRL_FAILED && clean && nvme_csts_rdy(ctrl_rd32(c, NVME_REG_CSTS)) &&
        ctrl_shutdown(c))
        nvl_log_warn(c->name, "shutdown did not complete; disabling instead");
    if (ctrl_disable(c)) {
        nvl_log_error(c->name, "controller could not be stopped; leaking its DMA memory so it "
                               "cannot be overwritten");
        return;
    }
    if (c->io) {
        for (i = 0; i < c->info.n_io_queues; i++)
            nvl__qpair_fini(&c->io[i]);
        free(c->io);
        c->io = NULL;
    }
    nvl__qpair_fini(&c->admin);
    nvl_dma_destroy(c->scratch);
    c->scratch = NULL;
}

static int ctrl_check_opts(const struct nvl_ctrl_opts *o)
{
    if (o->n_io_queues == 0 || o->n_io_queues > 65535 || o->io_queue_depth < 2 ||
        o->io_queue_depth > 65536 || o->admin_queue_depth < 2 || o->admin_timeout_ms == 0 ||
        o->io_timeout_ms == 0 || o->nsid == 0 || o->nsid == NVME_NSID_ALL)
        return -EINVAL;
    return 0;
}

int nvl_ctrl_create(struct nvl_transport *t, const struct nvl_ctrl_opts *o, struct nvl_ctrl **out)
{
    struct nvl_ctrl *c;
    uint32_t admin_depth;
    int rc;

    if (!t || !t->bar0 || !out || t->bar0_len < NVME_REG_DBS + 8)
        return -EINVAL;
    *out = NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->t = t;
    c->name = t->name ? t->name : "nvme";
    if (o)
        c->opts = *o;
    else
        nvl_ctrl_opts_init(&c->opts);
    rc = ctrl_check_opts(&c->opts);
    if (rc) {
        nvl_log_error(c->name, "invalid controller options");
        goto err_free_ctrl;
    }
    ctrl_set_state(c, NVL_CTRL_INIT);
    rc = ctrl_read_cap(c);
    if (rc)
        goto err_free_ctrl;
    if (c->opts.reset_first) {
        rc = nvl_transport_reset(t);
        if (rc && rc != -EOPNOTSUPP)
            nvl_log_warn(c->name, "function-level reset failed: %s", nvl_strerror(rc));
    }
    admin_depth = c->opts.admin_queue_depth;
    if (admin_depth > c->info.max_entries)
        admin_depth = c->info.max_entries;
    if (admin_depth > NVME_AQA_MAX_ENTRIES)
        admin_depth = NVME_AQA_MAX_ENTRIES;
    c->info.admin_depth = admin_depth;
    rc = nvl_dma_create(t, NVME_IDENTIFY_DATA_SIZE, 0, &c->scratch);
    if (rc)
        goto err_free_ctrl;
    rc = nvl__qpair_init(&c->admin, c, 0, admin_depth, CTRL_ADMIN_MAX_DATA);
    if (rc)
        goto err_free_scratch;
    rc = ctrl_disable(c);
    if (rc)
        goto err_fini_admin;
    rc = ctrl_enable(c);
    if (rc)
        goto err_teardown;
    rc = ctrl_identify_all(c);
    if (rc)
        goto err_teardown;
    rc = ctrl_set_num_queues(c, c->opts.n_io_queues);
    if (rc)
        goto err_teardown;
    rc = ctrl_create_io_queues(c);
    if (rc)
        goto err_teardown;
    ctrl_set_state(c, NVL_CTRL_READY);
    nvl_log_info(c->name, "ready: %u I/O queue pairs of %u entries, %u bytes per command",
                 c->info.n_io_queues, c->info.io_queue_depth, c->info.max_transfer);
    *out = c;
    return 0;

err_teardown:
    /* A controller that timed out or went fatal is not asked to delete queues. */
    if (c->needs_reset || rc == -ETIMEDOUT || rc == -ENODEV)
        ctrl_set_state(c, NVL_CTRL_FAILED);
    ctrl_teardown(c, 1);
    free(c);
    return rc;
err_fini_admin:
    nvl__qpair_fini(&c->admin);
err_free_scratch:
    nvl_dma_destroy(c->scratch);
err_free_ctrl:
    free(c);
    return rc;
}

void nvl_ctrl_destroy(struct nvl_ctrl *c)
{
    if (!c)
        return;
    ctrl_teardown(c, 1);
    free(c);
}

/* Takes every queue pair lock, admin first, then I/O in index order. */
static void ctrl_lock_all(struct nvl_ctrl *c)
{
    uint32_t i;

    pthread_mutex_lock(&c->admin.lock);
    for (i = 0; i < c->info.n_io_queues; i++)
        pthread_mutex_lock(&c->io[i].lock);
}

static void ctrl_unlock_all(struct nvl_ctrl *c)
{
    uint32_t i;

    for (i = c->info.n_io_queues; i-- > 0;)
        pthread_mutex_unlock(&c->io[i].lock);
    pthread_mutex_unlock(&c->admin.lock);
}

int nvl_ctrl_reset(struct nvl_ctrl *c)
{
    uint32_t i, want;
    int rc;

    if (!c)
        return -EINVAL;
    if (c->in_recovery)
        return -EBUSY;
    c->in_recovery = 1;
    nvl_log_warn(c->name, "resetting the controller (state %s)", nvl_ctrl_state_name(c->state));
    ctrl_lock_all(c);
    rc = ctrl_disable(c);
    if (rc)
        goto err_failed;
    /* The controller forgot every queue; cancel what was in flight and start the rings over. */
    nvl__qpair_reset_rings(&c->admin);
    c->needs_reset = 0;
    for (i = 0; i < c->info.n_io_queues; i++) {
        nvl__qpair_reset_rings(&c->io[i]);
        c->io[i].created = 0;
        c->io[i].cq_created = 0;
    }
    /* Admin commands below take the admin lock themselves. */
    pthread_mutex_unlock(&c->admin.lock);
    rc = ctrl_enable(c);
    if (rc == 0) {
        want = c->info.n_io_queues;
        rc = ctrl_set_num_queues(c, want);
        if (rc == 0 && c->info.n_io_queues != want) {
            nvl_log_error(c->name, "after reset only %u of %u queue pairs are granted",
                          c->info.n_io_queues, want);
            c->info.n_io_queues = want;
            rc = -EIO;
        }
    }
    ctrl_set_state(c, NVL_CTRL_CREATE_QUEUES);
    for (i = 0; rc == 0 && i < c->info.n_io_queues; i++)
        rc = ctrl_create_queue_pair(c, &c->io[i]);
    pthread_mutex_lock(&c->admin.lock);
    if (rc)
        goto err_failed;
    ctrl_set_state(c, NVL_CTRL_READY);
    c->needs_reset = 0;
    ctrl_unlock_all(c);
    c->in_recovery = 0;
    nvl_log_warn(c->name, "controller reset done");
    return 0;

err_failed:
    ctrl_set_state(c, NVL_CTRL_FAILED);
    ctrl_unlock_all(c);
    c->in_recovery = 0;
    nvl_log_error(c->name, "controller reset failed: %s; the controller is unusable",
                  nvl_strerror(rc));
    return rc;
}

enum nvl_ctrl_state nvl_ctrl_get_state(const struct nvl_ctrl *c)
{
    return c->state;
}

const struct nvl_ctrl_info *nvl_ctrl_get_info(const struct nvl_ctrl *c)
{
    return &c->info;
}

const struct nvme_id_ctrl *nvl_ctrl_id(const struct nvl_ctrl *c)
{
    return &c->id_ctrl;
}

const struct nvme_id_ns *nvl_ctrl_id_ns(const struct nvl_ctrl *c)
{
    return &c->id_ns;
}

struct nvl_transport *nvl_ctrl_transport(const struct nvl_ctrl *c)
{
    return c->t;
}

const char *nvl_ctrl_name(const struct nvl_ctrl *c)
{
    return c->name;
}

uint32_t nvl_ctrl_qpair_count(const struct nvl_ctrl *c)
{
    return c->info.n_io_queues;
}

struct nvl_qpair *nvl_ctrl_qpair(struct nvl_ctrl *c, uint32_t i)
{
    if (!c || !c->io || i >= c->info.n_io_queues)
        return NULL;
    return &c->io[i];
}

void nvl_qpair_describe(const struct nvl_qpair *qp, struct nvl_qpair_desc *d)
{
    const struct nvl_ctrl *c = qp->ctrl;

    memset(d, 0, sizeof(*d));
    d->qid = qp->qid;
    d->depth = qp->depth;
    d->ring_dma = qp->ring;
    d->sq_vaddr = qp->sq.entries;
    d->sq_iova = qp->ring->iova;
    d->cq_vaddr = qp->cq.entries;
    d->cq_iova = qp->ring->iova + qp->cq_off;
    d->sq_doorbell = qp->sq.doorbell;
    d->cq_doorbell = qp->cq.doorbell;
    d->sq_doorbell_off = nvme_sq_tail_db_offset(qp->qid, c->info.dstrd);
    d->cq_doorbell_off = nvme_cq_head_db_offset(qp->qid, c->info.dstrd);
    d->page_size = c->info.page_size;
    d->max_transfer = c->info.max_transfer;
    d->lba_size = c->info.lba_size;
    d->nsid = c->info.nsid;
    d->sq_tail = qp->sq.tail;
    d->sq_head = qp->sq.head;
    d->cq_head = qp->cq.head;
    d->cq_phase = qp->cq.phase;
}

int nvl_qpair_claim(struct nvl_qpair *qp)
{
    int rc = 0;

    pthread_mutex_lock(&qp->lock);
    if (qp->claimed || qp->cids.used || qp->unrung)
        rc = -EBUSY;
    else
        qp->claimed = 1;
    pthread_mutex_unlock(&qp->lock);
    return rc;
}

void nvl_qpair_unclaim(struct nvl_qpair *qp, uint32_t sq_tail, uint32_t sq_head, uint32_t cq_head,
                       uint32_t cq_phase)
{
    pthread_mutex_lock(&qp->lock);
    qp->sq.tail = sq_tail % qp->depth;
    qp->sq.head = sq_head % qp->depth;
    qp->cq.head = cq_head % qp->depth;
    qp->cq.phase = (uint16_t)(cq_phase & 1u);
    qp->claimed = 0;
    pthread_mutex_unlock(&qp->lock);
}

int nvl_qpair_is_claimed(const struct nvl_qpair *qp)
{
    return qp->claimed;
}
