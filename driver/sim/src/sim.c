/* The software NVMe controller's lifetime, its transport, its register file and its counters. */
#include "sim_internal.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define SIM_BAR_MIN (16u * 1024u)

static const char *const violation_names[NVL_SIM_VIOL_COUNT] = {
    [NVL_SIM_VIOL_DMA] = "dma",
    [NVL_SIM_VIOL_PRP_OFFSET] = "prp_offset",
    [NVL_SIM_VIOL_MDTS] = "mdts",
    [NVL_SIM_VIOL_LBA_RANGE] = "lba_range",
    [NVL_SIM_VIOL_NAMESPACE] = "namespace",
    [NVL_SIM_VIOL_OPCODE] = "opcode",
    [NVL_SIM_VIOL_FIELD] = "field",
    [NVL_SIM_VIOL_CID_CONFLICT] = "cid_conflict",
    [NVL_SIM_VIOL_QUEUE_ID] = "queue_id",
    [NVL_SIM_VIOL_QUEUE_SIZE] = "queue_size",
    [NVL_SIM_VIOL_QUEUE_CQ] = "queue_cq",
    [NVL_SIM_VIOL_QUEUE_DELETE] = "queue_delete",
    [NVL_SIM_VIOL_QUEUE_CONTIG] = "queue_contig",
    [NVL_SIM_VIOL_CMD_SEQUENCE] = "cmd_sequence",
    [NVL_SIM_VIOL_LOG_PAGE] = "log_page",
    [NVL_SIM_VIOL_SQ_TAIL] = "sq_tail",
    [NVL_SIM_VIOL_CQ_HEAD] = "cq_head",
    [NVL_SIM_VIOL_DOORBELL_NOQUEUE] = "doorbell_noqueue",
    [NVL_SIM_VIOL_DOORBELL_EARLY] = "doorbell_early",
    [NVL_SIM_VIOL_ENABLE] = "enable",
    [NVL_SIM_VIOL_RO_REGISTER] = "ro_register",
    [NVL_SIM_VIOL_CQ_FULL] = "cq_full",
    [NVL_SIM_VIOL_UNMAP_IN_USE] = "unmap_in_use",
    [NVL_SIM_VIOL_QUEUE_OVERLAP] = "queue_overlap",
};

const char *nvl_sim_violation_name(enum nvl_sim_violation v)
{
    if ((unsigned)v >= NVL_SIM_VIOL_COUNT)
        return "unknown";
    return violation_names[v];
}

/* ---- registers --------------------------------------------------------------------------- */

uint32_t nvl__sim_reg32(struct nvl_sim *sim, uint32_t off)
{
    return SIM_LOAD_ACQ((uint32_t *)(sim->bar + off));
}

uint64_t nvl__sim_reg64(struct nvl_sim *sim, uint32_t off)
{
    /* Two halves, as the host writes them (mmio.h): the pair is consistent once CC.EN is seen. */
    return (uint64_t)nvl__sim_reg32(sim, off) | ((uint64_t)nvl__sim_reg32(sim, off + 4) << 32);
}

void nvl__sim_reg32_write(struct nvl_sim *sim, uint32_t off, uint32_t v)
{
    SIM_STORE_REL((uint32_t *)(sim->bar + off), v);
}

void nvl__sim_reg64_write(struct nvl_sim *sim, uint32_t off, uint64_t v)
{
    nvl__sim_reg32_write(sim, off, (uint32_t)v);
    nvl__sim_reg32_write(sim, off + 4, (uint32_t)(v >> 32));
}

volatile uint32_t *nvl__sim_sq_db(struct nvl_sim *sim, uint32_t qid)
{
    return (volatile uint32_t *)(sim->bar + NVME_REG_DBS + 2u * qid * sim->db_stride);
}

volatile uint32_t *nvl__sim_cq_db(struct nvl_sim *sim, uint32_t qid)
{
    return (volatile uint32_t *)(sim->bar + NVME_REG_DBS + (2u * qid + 1u) * sim->db_stride);
}

void nvl__sim_csts_update(struct nvl_sim *sim, uint32_t clear, uint32_t set)
{
    uint32_t *csts = (uint32_t *)(sim->bar + NVME_REG_CSTS);
    uint32_t old = SIM_LOAD(csts);

    while (!__atomic_compare_exchange_n(csts, &old, (old & ~clear) | set, 1, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED))
        ;
}

/* ---- violations, fatal errors, error log -------------------------------------------------- */

void nvl__sim_violation(struct nvl_sim *sim, enum nvl_sim_violation v, const char *fmt, ...)
{
    uint64_t bit = 1ull << v;
    uint64_t seen;
    char msg[512];
    va_list ap;

    if (v >= NVL_SIM_VIOL_COUNT)
        return;
    __atomic_fetch_add(&sim->violations[v], 1, __ATOMIC_RELAXED);
    seen = __atomic_fetch_or(&sim->warned, bit, __ATOMIC_RELAXED);
    /* The first of each kind is a warning; repeats go to the debug level, and are not even
     * formatted unless that level is on (a broken host may repeat one mistake at full rate). */
    if ((seen & bit) && nvl_log_get_level() < NVL_LOG_DEBUG)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!(seen & bit))
        nvl_log_warn(sim->who, "rule %s: %s", nvl_sim_violation_name(v), msg);
    else
        nvl_log_debug(sim->who, "rule %s: %s", nvl_sim_violation_name(v), msg);
}

void nvl__sim_fatal(struct nvl_sim *sim, enum nvl_sim_violation v, const char *fmt, ...)
{
    va_list ap;

    if (v < NVL_SIM_VIOL_COUNT)
        __atomic_fetch_add(&sim->violations[v], 1, __ATOMIC_RELAXED);
    if (!__atomic_exchange_n(&sim->fatal, 1, __ATOMIC_SEQ_CST))
        __atomic_fetch_add(&sim->fatal_count, 1, __ATOMIC_RELAXED);
    nvl__sim_csts_update(sim, 0, NVME_CSTS_CFS);
    va_start(ap, fmt);
    /* Fatal errors are always worth a line. */
    {
        char msg[512];

        vsnprintf(msg, sizeof(msg), fmt, ap);
        nvl_log_error(sim->who, "controller fatal (CSTS.CFS), %s: %s",
                      v < NVL_SIM_VIOL_COUNT ? nvl_sim_violation_name(v) : "injected", msg);
    }
    va_end(ap);
}

void nvl__sim_error_log_add(struct nvl_sim *sim, uint16_t sqid, uint16_t cid, uint16_t status,
                            uint64_t lba, uint32_t nsid)
{
    struct nvme_error_log *e;

    pthread_mutex_lock(&sim->elock);
    e = &sim->errlog[sim->error_count % SIM_ERROR_LOG_ENTRIES];
    memset(e, 0, sizeof(*e));
    e->error_count = ++sim->error_count;
    e->sqid = sqid;
    e->cid = cid;
    e->status = (uint16_t)(status << 1);
    e->param_error_location = 0xffff;
    e->lba = lba;
    e->nsid = nsid;
    pthread_mutex_unlock(&sim->elock);
}

/* ---- grace periods ---------------------------------------------------------------------- */

void nvl__sim_synchronize(struct nvl_sim *sim, const struct sim_thread *self)
{
    struct timespec ts = {0, 2000};
    uint32_t i;

    for (i = 0; i <= sim->nthreads; i++) {
        struct sim_thread *t = &sim->threads[i];
        uint64_t e;

        if (t == self || !t->started)
            continue;
        e = SIM_LOAD_SC(&t->epoch);
        while (SIM_LOAD_SC(&t->online) && SIM_LOAD_SC(&t->epoch) == e)
            nanosleep(&ts, NULL);
    }
}

/* ---- transport ---------------------------------------------------------------------------- */

static struct nvl_sim *sim_of(struct nvl_transport *t)
{
    return t->priv;
}

static int sim_tr_dma_map(struct nvl_transport *t, void *vaddr, size_t len, uint64_t *iova)
{
    return nvl__sim_dma_map(&sim_of(t)->dma, vaddr, len, iova);
}

static int ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

int nvl__sim_iova_in_use(struct nvl_sim *sim, uint64_t iova, uint64_t len)
{
    uint32_t q;

    if (sim->admin_live && (ranges_overlap(iova, len, sim->asq.iova, sim->asq.bytes) ||
                            ranges_overlap(iova, len, sim->acq.iova, sim->acq.bytes)))
        return 1;
    for (q = 1; q <= sim->opts.max_io_queues; q++) {
        if (sim->sqs[q] && ranges_overlap(iova, len, sim->sqs[q]->iova, sim->sqs[q]->bytes))
            return 1;
        if (sim->cqs[q] && ranges_overlap(iova, len, sim->cqs[q]->iova, sim->cqs[q]->bytes))
            return 1;
    }
    return 0;
}

static int sim_tr_dma_unmap(struct nvl_transport *t, void *vaddr, size_t len, uint64_t iova)
{
    struct nvl_sim *sim = sim_of(t);
    struct sim_dma_table **retired;
    uint32_t n;
    int ret;

    pthread_mutex_lock(&sim->qlock);
    if (nvl__sim_iova_in_use(sim, iova, len)) {
        pthread_mutex_unlock(&sim->qlock);
        nvl__sim_violation(sim, NVL_SIM_VIOL_UNMAP_IN_USE,
                           "dma_unmap of IOVA 0x%llx (+%zu) that holds a live queue; refused",
                           (unsigned long long)iova, len);
        return -EBUSY;
    }
    ret = nvl__sim_dma_unmap(&sim->dma, vaddr, len, iova);
    pthread_mutex_unlock(&sim->qlock);
    if (ret)
        return ret;
    /* After the grace period no thread can still be copying to or from the region. */
    retired = nvl__sim_dma_take_retired(&sim->dma, &n);
    nvl__sim_synchronize(sim, NULL);
    nvl__sim_dma_free_retired(retired, n);
    return 0;
}

static int sim_tr_reset(struct nvl_transport *t)
{
    struct nvl_sim *sim = sim_of(t);
    struct timespec ts = {0, 20000};
    uint64_t want = __atomic_add_fetch(&sim->flr_req, 1, __ATOMIC_ACQ_REL);

    while (SIM_LOAD_ACQ(&sim->flr_done) < want)
        nanosleep(&ts, NULL);
    return 0;
}

static void sim_tr_destroy(struct nvl_transport *t)
{
    nvl_sim_destroy(sim_of(t));
}

static const struct nvl_transport_ops sim_transport_ops = {
    .dma_map = sim_tr_dma_map,
    .dma_unmap = sim_tr_dma_unmap,
    .reset = sim_tr_reset,
    .destroy = sim_tr_destroy,
};

struct nvl_transport *nvl_sim_transport(struct nvl_sim *sim)
{
    return &sim->transport;
}

struct nvl_sim *nvl_sim_from_transport(struct nvl_transport *t)
{
    if (!t || t->ops != &sim_transport_ops)
        return NULL;
    return t->priv;
}

/* ---- lifetime ------------------------------------------------------------------------------ */

static void sim_stop_threads(struct nvl_sim *sim)
{
    uint32_t i;

    SIM_STORE_SC(&sim->stop, 1);
    for (i = 0; i <= sim->nthreads; i++) {
        if (sim->threads[i].started) {
            pthread_join(sim->threads[i].tid, NULL);
            sim->threads[i].started = 0;
        }
    }
}

static void sim_free_queues(struct nvl_sim *sim)
{
    uint32_t q, i;

    for (i = 0; i < sim->nthreads; i++) {
        free(sim->threads[i].table);
        sim->threads[i].table = NULL;
    }
    for (q = 1; q <= sim->opts.max_io_queues; q++) {
        if (sim->sqs[q]) {
            nvl__sim_sq_fini(sim->sqs[q]);
            free(sim->sqs[q]);
        }
        if (sim->cqs[q]) {
            nvl__sim_cq_fini(sim->cqs[q]);
            free(sim->cqs[q]);
        }
    }
    nvl__sim_sq_fini(&sim->asq);
    nvl__sim_cq_fini(&sim->acq);
}

static void sim_setup_registers(struct nvl_sim *sim)
{
    const struct nvl_sim_opts *o = &sim->opts;

    /* §3.1.1: MQES, CQR = 1, AMS = 0 (round robin only), TO, DSTRD, NSSRS = 0, CSS = NVM,
     * MPSMIN = MPSMAX = 0 (4 KiB). */
    sim->cap = (uint64_t)o->mqes | (1ull << 16) | ((uint64_t)o->cap_to << 24) |
               ((uint64_t)o->dstrd << 32) | ((uint64_t)NVME_CAP_CSS_NVM << 37);
    sim->vs = NVME_VS(1, 4, 0);
    nvl__sim_reg64_write(sim, NVME_REG_CAP, sim->cap);
    nvl__sim_reg32_write(sim, NVME_REG_VS, sim->vs);
}

int nvl_sim_create(const struct nvl_sim_opts *opts, struct nvl_sim **out)
{
    struct nvl_sim *sim;
    char err[256];
    uint64_t doorbell_end, max_xfer;
    uint32_t i;
    int ret;

    *out = NULL;
    sim = calloc(1, sizeof(*sim));
    if (!sim)
        return -ENOMEM;
    if (opts)
        sim->opts = *opts;
    else
        nvl_sim_opts_init(&sim->opts);
    sim->opts.name[sizeof(sim->opts.name) - 1] = '\0';
    sim->who = sim->opts.name;
    ret = nvl_sim_opts_check(&sim->opts, err, sizeof(err));
    if (ret) {
        nvl_log_error(sim->who, "bad options: %s", err);
        goto err_free;
    }
    ret = nvl__sim_store_open(&sim->store, &sim->opts, err, sizeof(err));
    if (ret) {
        nvl_log_error(sim->who, "backing store: %s", err);
        goto err_free;
    }
    sim->lba_shift = sim->opts.lba_size == 4096 ? 12 : 9;
    sim->nblocks = sim->opts.ns_bytes >> sim->lba_shift;
    sim->mdts_bytes = sim->opts.mdts ? (uint64_t)SIM_PAGE << sim->opts.mdts : 0;
    /* The largest transfer a command can describe: MDTS, or 65536 blocks without a limit. */
    max_xfer = (uint64_t)NVME_RW_NLB_MAX << sim->lba_shift;
    if (sim->mdts_bytes && sim->mdts_bytes < max_xfer)
        max_xfer = sim->mdts_bytes;
    if (max_xfer < NVME_IDENTIFY_DATA_SIZE)
        max_xfer = NVME_IDENTIFY_DATA_SIZE;
    sim->max_xfer_pages = (uint32_t)(max_xfer >> SIM_PAGE_SHIFT);

    /* Register file: registers, then a doorbell pair per queue id, at least 16 KiB. */
    sim->db_stride = 4u << sim->opts.dstrd;
    doorbell_end = NVME_REG_DBS + 2ull * (sim->opts.max_io_queues + 1u) * sim->db_stride;
    sim->bar_len = (size_t)((doorbell_end + SIM_PAGE - 1) & ~(uint64_t)(SIM_PAGE - 1));
    if (sim->bar_len < SIM_BAR_MIN)
        sim->bar_len = SIM_BAR_MIN;
    sim->max_qid = (uint32_t)((sim->bar_len - NVME_REG_DBS) / (2u * sim->db_stride)) - 1;
    sim->bar = mmap(NULL, sim->bar_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sim->bar == MAP_FAILED) {
        sim->bar = NULL;
        ret = -ENOMEM;
        goto err_close_store;
    }
    sim_setup_registers(sim);

    sim->sqs = calloc(sim->opts.max_io_queues + 1u, sizeof(*sim->sqs));
    sim->cqs = calloc(sim->opts.max_io_queues + 1u, sizeof(*sim->cqs));
    if (!sim->sqs || !sim->cqs) {
        ret = -ENOMEM;
        goto err_free_arrays;
    }
    ret = nvl__sim_dma_init(&sim->dma);
    if (ret)
        goto err_free_arrays;
    nvl__sim_model_init(&sim->model, sim->opts.bw_bytes_per_s, sim->opts.lat_ns, nvl__sim_now_ns());
    sim->nsq_granted = sim->opts.max_io_queues;
    sim->ncq_granted = sim->opts.max_io_queues;
    sim->state = SIM_ST_DISABLED;
    pthread_mutex_init(&sim->qlock, NULL);
    pthread_mutex_init(&sim->elock, NULL);

    sim->nthreads = sim->opts.threads;
    sim->threads = aligned_alloc(64, (sim->nthreads + 1u) * sizeof(*sim->threads));
    if (!sim->threads) {
        ret = -ENOMEM;
        goto err_fini_dma;
    }
    memset(sim->threads, 0, (sim->nthreads + 1u) * sizeof(*sim->threads));
    for (i = 0; i <= sim->nthreads; i++) {
        struct sim_thread *t = &sim->threads[i];

        t->sim = sim;
        t->index = i;
        t->rng = sim->opts.seed ^ (0x9e3779b97f4a7c15ull * (i + 1));
        /* The control thread always naps when idle: admin commands are not latency bound. */
        t->idle_max_ns = (uint64_t)sim->opts.idle_us * 1000u;
        if (i == sim->nthreads && !t->idle_max_ns)
            t->idle_max_ns = 200000u;
        t->max_segs = sim->max_xfer_pages + 1;
        t->segs = calloc(t->max_segs, sizeof(*t->segs));
        if (!t->segs) {
            ret = -ENOMEM;
            goto err_free_threads;
        }
    }

    sim->transport.name = sim->who;
    sim->transport.bar0 = sim->bar;
    sim->transport.bar0_len = sim->bar_len;
    sim->transport.ops = &sim_transport_ops;
    sim->transport.priv = sim;

    for (i = 0; i <= sim->nthreads; i++) {
        struct sim_thread *t = &sim->threads[i];

        ret = -pthread_create(&t->tid, NULL,
                              i < sim->nthreads ? nvl__sim_io_main : nvl__sim_ctrl_main, t);
        if (ret) {
            nvl_log_error(sim->who, "cannot start thread %u: %s", i, nvl_strerror(ret));
            goto err_stop_threads;
        }
        t->started = 1;
    }
    nvl_log_info(
        sim->who, "%s backing%s%s, %llu x %u-byte blocks, MDTS %u, MQES %u, %u queues, %u threads",
        sim->opts.backing == NVL_SIM_BACKING_FILE  ? "file"
        : sim->opts.backing == NVL_SIM_BACKING_MEM ? "memory"
                                                   : "null",
        sim->opts.path[0] ? " " : "", sim->opts.path, (unsigned long long)sim->nblocks,
        sim->opts.lba_size, sim->opts.mdts, sim->opts.mqes, sim->opts.max_io_queues, sim->nthreads);
    *out = sim;
    return 0;

err_stop_threads:
    sim_stop_threads(sim);
err_free_threads:
    for (i = 0; i <= sim->nthreads; i++)
        free(sim->threads[i].segs);
    free(sim->threads);
err_fini_dma:
    pthread_mutex_destroy(&sim->elock);
    pthread_mutex_destroy(&sim->qlock);
    nvl__sim_dma_fini(&sim->dma);
err_free_arrays:
    free(sim->sqs);
    free(sim->cqs);
    munmap(sim->bar, sim->bar_len);
err_close_store:
    nvl__sim_store_close(&sim->store);
err_free:
    free(sim);
    return ret;
}

void nvl_sim_destroy(struct nvl_sim *sim)
{
    uint32_t i;

    if (!sim)
        return;
    sim_stop_threads(sim);
    sim_free_queues(sim);
    for (i = 0; i <= sim->nthreads; i++)
        free(sim->threads[i].segs);
    free(sim->threads);
    pthread_mutex_destroy(&sim->elock);
    pthread_mutex_destroy(&sim->qlock);
    nvl__sim_dma_fini(&sim->dma);
    free(sim->sqs);
    free(sim->cqs);
    munmap(sim->bar, sim->bar_len);
    nvl__sim_store_close(&sim->store);
    free(sim);
}

/* ---- accessors and counters ----------------------------------------------------------------- */

uint32_t nvl_sim_lba_size(const struct nvl_sim *sim)
{
    return 1u << sim->lba_shift;
}

uint64_t nvl_sim_nblocks(const struct nvl_sim *sim)
{
    return sim->nblocks;
}

void *nvl_sim_mem(struct nvl_sim *sim, size_t *len)
{
    if (sim->store.kind != NVL_SIM_BACKING_MEM)
        return NULL;
    if (len)
        *len = (size_t)sim->store.bytes;
    return sim->store.mem;
}

const struct nvl_sim_opts *nvl_sim_opts(const struct nvl_sim *sim)
{
    return &sim->opts;
}

void nvl__sim_stats_raw(struct nvl_sim *sim, struct nvl_sim_stats *s)
{
    uint64_t c[SIM_C_COUNT] = {0};
    uint32_t i, k;

    memset(s, 0, sizeof(*s));
    for (i = 0; i <= sim->nthreads; i++)
        for (k = 0; k < SIM_C_COUNT; k++)
            c[k] += SIM_LOAD(&sim->threads[i].ctr[k]);
    s->admin_commands = c[SIM_C_ADMIN];
    s->io_commands = c[SIM_C_IO];
    s->reads = c[SIM_C_READS];
    s->writes = c[SIM_C_WRITES];
    s->flushes = c[SIM_C_FLUSHES];
    s->bytes_read = c[SIM_C_BYTES_READ];
    s->bytes_written = c[SIM_C_BYTES_WRITTEN];
    s->completions = c[SIM_C_COMPLETIONS];
    s->errors = c[SIM_C_ERRORS];
    s->faults_injected = c[SIM_C_FAULTS_INJECTED];
    s->resets = SIM_LOAD(&sim->resets);
    s->fatal = SIM_LOAD(&sim->fatal_count);
    for (k = 0; k < NVL_SIM_VIOL_COUNT; k++) {
        s->violations[k] = SIM_LOAD(&sim->violations[k]);
        s->violations_total += s->violations[k];
    }
    s->dma_faults = s->violations[NVL_SIM_VIOL_DMA];
}

void nvl_sim_get_stats(struct nvl_sim *sim, struct nvl_sim_stats *out)
{
    const uint64_t *b = (const uint64_t *)&sim->base;
    uint64_t *o = (uint64_t *)out;
    size_t i;

    nvl__sim_stats_raw(sim, out);
    /* Every field is a uint64_t counter: subtract the baseline field by field. */
    for (i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        o[i] -= b[i];
}

void nvl_sim_reset_stats(struct nvl_sim *sim)
{
    nvl__sim_stats_raw(sim, &sim->base);
}
