/* The host half of the GPU I/O engine (nvl_host/engine.h). */
#include "nvl_host/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host_internal.h"
#include "nvl_driver/ctrl.h"
#include "nvl_driver/mmio.h"

/* Destination buffers one engine can name (slots and bounce buffers of a loader). */
#define MAX_BUFS 256u

struct nvl_host_engine {
    struct nvl_ctrl *ctrl;
    struct nvl_host_engine_opts opts;
    const char *name; /* the controller's, for log lines */
    uint32_t n_queues;
    struct nvl_qpair **qps;
    struct nvl_qpair_desc *descs;
    uint32_t n_claimed;

    struct nvl__host_reg bar;
    struct nvl__host_reg *rings; /* one per queue pair */

    /* Shared with the GPU: pinned host memory (host pointers; params has the GPU's). */
    struct nvl_engine_req *ring;
    struct nvl_engine_cpl *cpl;
    struct nvl_engine_ctl *ctl;
    /* Host copies of device tables. */
    struct nvl_engine_qp *qp_host;
    struct nvl_engine_buf *bufs_host;
    uint64_t **buf_lists; /* device allocations behind bufs (2 per buffer) */
    uint32_t n_bufs;

    struct nvl_engine_params params;
    cudaStream_t stream;

    uint32_t producer; /* next request number */
    uint32_t oldest;   /* oldest request whose ring entry is not released */
    uint8_t *released; /* per ring entry */
    int started;       /* the owner wants the kernel to serve (start .. stop) */
    int running;       /* a launch has not been seen to exit */
    int failed;

    uint32_t lba_size;
    uint32_t max_cmd_bytes;

    uint64_t launches;

    pthread_t monitor;
    int monitor_running;
    atomic_int monitor_stop;
};

/* CUDA's lazy module loading (the default since 12.2) loads a kernel at its first launch, and the
 * load waits until no kernel runs on the device. A kernel first launched while the engine serves
 * requests would wait for it to go idle (seen on the H100: a stream-wait kernel launched behind
 * a busy engine). Programs that link the engine therefore load modules eagerly, unless the
 * environment says otherwise; this runs before main, ahead of CUDA's initialisation. */
__attribute__((constructor)) static void eager_module_loading(void)
{
    setenv("CUDA_MODULE_LOADING", "EAGER", 0);
}

void nvl_host_engine_opts_init(struct nvl_host_engine_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->ring_entries = 1024;
    o->max_batch = 128;
    o->timeout_ns = 5000000000ull;
    o->idle_ns = 1000;
    o->idle_exit_us = 2000;
    o->csts_poll_us = 1000;
}

static int log2_exact(uint64_t v, uint32_t *out)
{
    uint32_t s = 0;

    if (!v || (v & (v - 1)))
        return -EINVAL;
    while ((1ull << s) < v)
        s++;
    *out = s;
    return 0;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};

    nanosleep(&ts, NULL);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The monitor: mirrors CSTS into ctl.csts at a low rate so the GPU learns of CSTS.CFS (or of a
 * controller gone, all ones) without ever reading BAR0 itself. */
static void *monitor_main(void *arg)
{
    struct nvl_host_engine *e = arg;
    struct nvl_transport *t = nvl_ctrl_transport(e->ctrl);

    while (!atomic_load_explicit(&e->monitor_stop, memory_order_acquire)) {
        uint32_t csts = nvl_mmio_read32(t->bar0, NVME_REG_CSTS);

        __atomic_store_n(&e->ctl->csts, csts, __ATOMIC_RELAXED);
        sleep_ns((uint64_t)e->opts.csts_poll_us * 1000u);
    }
    return NULL;
}

static int cuda_check(cudaError_t err, const char *what)
{
    if (err == cudaSuccess)
        return 0;
    nvl_log_error(NVL_HOST_WHO, "%s: %s", what, cudaGetErrorString(err));
    cudaGetLastError();
    return err == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
}

/* The GPU's view of a queue pair's ring state, from the driver's description of it. */
static void qp_state_from_desc(struct nvl_host_engine *e, uint32_t i)
{
    const struct nvl_qpair_desc *d = &e->descs[i];
    struct nvl_engine_qp *q = &e->qp_host[i];
    uint8_t *ring_dev = e->rings[i].dev;
    uint8_t *bar_dev = e->bar.dev;
    uintptr_t sq_off = (uintptr_t)d->sq_vaddr - (uintptr_t)d->ring_dma->vaddr;
    uintptr_t cq_off = (uintptr_t)d->cq_vaddr - (uintptr_t)d->ring_dma->vaddr;

    memset(q, 0, sizeof(*q));
    nvme_sq_init(&q->sq, (struct nvme_sqe *)(ring_dev + sq_off), d->depth,
                 (volatile uint32_t *)(bar_dev + d->sq_doorbell_off), d->qid);
    nvme_cq_init(&q->cq, (struct nvme_cqe *)(ring_dev + cq_off), d->depth,
                 (volatile uint32_t *)(bar_dev + d->cq_doorbell_off), d->qid);
    /* The ring rolls on from wherever the CPU driver left it. */
    q->sq.tail = d->sq_tail;
    q->sq.head = d->sq_head;
    q->cq.head = d->cq_head;
    q->cq.phase = (uint16_t)d->cq_phase;
    q->n_cids = d->depth - 1 < NVL_ENGINE_MAX_CIDS ? d->depth - 1 : NVL_ENGINE_MAX_CIDS;
    if (e->opts.max_inflight && e->opts.max_inflight < q->n_cids)
        q->n_cids = e->opts.max_inflight;
}

static void release_queues(struct nvl_host_engine *e)
{
    for (uint32_t i = 0; i < e->n_claimed; i++) {
        const struct nvl_engine_qp *q = &e->qp_host[i];

        if (e->failed)
            /* State unknown to anyone: the owner must reset the controller. */
            nvl_qpair_unclaim(e->qps[i], e->descs[i].sq_tail, e->descs[i].sq_head,
                              e->descs[i].cq_head, e->descs[i].cq_phase);
        else
            nvl_qpair_unclaim(e->qps[i], q->sq.tail, q->sq.head, q->cq.head, q->cq.phase);
    }
    e->n_claimed = 0;
}

static int claim_queues(struct nvl_host_engine *e)
{
    for (uint32_t i = 0; i < e->n_queues; i++) {
        struct nvl_qpair *qp = nvl_ctrl_qpair(e->ctrl, e->opts.first_queue + i);
        int rc;

        if (!qp)
            return -EINVAL;
        rc = nvl_qpair_claim(qp);
        if (rc) {
            nvl_log_error(NVL_HOST_WHO, "%s: queue pair %u is busy: %s", e->name,
                          e->opts.first_queue + i, nvl_strerror(rc));
            return rc;
        }
        e->qps[i] = qp;
        nvl_qpair_describe(qp, &e->descs[i]);
        /* Until the GPU has run, what it would hand back is what it got. */
        qp_state_from_desc(e, i);
        e->n_claimed++;
    }
    return 0;
}

static int register_rings(struct nvl_host_engine *e)
{
    int rc = nvl__host_register_bar(&e->bar, nvl_ctrl_transport(e->ctrl));

    if (rc)
        return rc;
    for (uint32_t i = 0; i < e->n_queues; i++) {
        const struct nvl_dma *d = e->descs[i].ring_dma;

        rc = nvl__host_register(&e->rings[i], d->vaddr, d->len, 0, "queue rings", 0);
        if (rc)
            return rc;
        qp_state_from_desc(e, i);
    }
    return 0;
}

static void unregister_rings(struct nvl_host_engine *e)
{
    for (uint32_t i = 0; e->rings && i < e->n_queues; i++) {
        if (e->rings[i].host)
            nvl__host_unregister(&e->rings[i]);
    }
    if (e->bar.host)
        nvl__host_unregister(&e->bar);
}

/* Pinned ring, completion entries and control block; device mirror, global, queue and buffer
 * tables. */
static int alloc_shared(struct nvl_host_engine *e)
{
    const uint32_t R = e->opts.ring_entries;
    struct nvl_engine_params *p = &e->params;
    struct nvl_engine_mirror *mirror;
    struct nvl_engine_global g;
    void *dev;
    int rc;

    rc = cuda_check(cudaHostAlloc((void **)&e->ring, R * sizeof(*e->ring), cudaHostAllocMapped),
                    "request ring");
    if (rc)
        return rc;
    memset(e->ring, 0, R * sizeof(*e->ring));
    cudaHostGetDevicePointer(&dev, e->ring, 0);
    p->ring = dev;
    rc = cuda_check(cudaHostAlloc((void **)&e->cpl, R * sizeof(*e->cpl), cudaHostAllocMapped),
                    "completion ring");
    if (rc)
        return rc;
    memset(e->cpl, 0, R * sizeof(*e->cpl));
    cudaHostGetDevicePointer(&dev, e->cpl, 0);
    p->cpl = dev;
    rc = cuda_check(cudaHostAlloc((void **)&e->ctl, sizeof(*e->ctl), cudaHostAllocMapped),
                    "control block");
    if (rc)
        return rc;
    memset(e->ctl, 0, sizeof(*e->ctl));
    cudaHostGetDevicePointer(&dev, e->ctl, 0);
    p->ctl = dev;

    rc = cuda_check(cudaMalloc((void **)&p->mirror, R * sizeof(*p->mirror)), "mirror table");
    if (rc)
        return rc;
    mirror = calloc(R, sizeof(*mirror));
    if (!mirror)
        return -ENOMEM;
    /* Entry i first serves request i. */
    for (uint32_t i = 0; i < R; i++)
        mirror[i].claim = (uint64_t)i << 32;
    rc = cuda_check(cudaMemcpy(p->mirror, mirror, R * sizeof(*mirror), cudaMemcpyHostToDevice),
                    "mirror init");
    free(mirror);
    if (rc)
        return rc;
    rc = cuda_check(cudaMalloc((void **)&p->global, sizeof(*p->global)), "engine globals");
    if (rc)
        return rc;
    memset(&g, 0, sizeof(g));
    rc = cuda_check(cudaMemcpy(p->global, &g, sizeof(g), cudaMemcpyHostToDevice), "globals");
    if (rc)
        return rc;
    rc = cuda_check(cudaMalloc((void **)&p->qp, e->n_queues * sizeof(*p->qp)), "queue table");
    if (rc)
        return rc;
    rc = cuda_check(cudaMalloc((void **)&p->bufs, MAX_BUFS * sizeof(*p->bufs)), "buffer table");
    if (rc)
        return rc;
    return 0;
}

static void free_shared(struct nvl_host_engine *e)
{
    struct nvl_engine_params *p = &e->params;

    for (uint32_t i = 0; e->buf_lists && i < 2 * e->n_bufs; i++)
        cudaFree(e->buf_lists[i]);
    cudaFree((void *)p->bufs);
    cudaFree(p->qp);
    cudaFree(p->global);
    cudaFree(p->mirror);
    if (e->ctl)
        cudaFreeHost(e->ctl);
    if (e->cpl)
        cudaFreeHost(e->cpl);
    if (e->ring)
        cudaFreeHost(e->ring);
}

static int upload_queues(struct nvl_host_engine *e)
{
    return cuda_check(cudaMemcpy(e->params.qp, e->qp_host, e->n_queues * sizeof(*e->qp_host),
                                 cudaMemcpyHostToDevice),
                      "queue table upload");
}

int nvl_host_engine_create(struct nvl_ctrl *c, const struct nvl_host_engine_opts *o,
                           struct nvl_host_engine **out)
{
    struct nvl_host_engine_opts def;
    const struct nvl_ctrl_info *info;
    struct nvl_host_engine *e;
    uint32_t lba_shift, cmd_shift, ring_shift, max_cmd;
    int n_dev = 0, rc;

    *out = NULL;
    if (!c)
        return -EINVAL;
    if (!o) {
        nvl_host_engine_opts_init(&def);
        o = &def;
    }
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || o->cuda_device >= n_dev) {
        cudaGetLastError();
        nvl_log_error(NVL_HOST_WHO, "no CUDA device %d", o->cuda_device);
        return -ENODEV;
    }
    if (cuda_check(cudaSetDevice(o->cuda_device), "cudaSetDevice"))
        return -ENODEV;
    info = nvl_ctrl_get_info(c);
    e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->ctrl = c;
    e->opts = *o;
    e->name = nvl_ctrl_name(c);
    e->n_queues = o->n_queues ? o->n_queues
                              : (nvl_ctrl_qpair_count(c) > o->first_queue
                                     ? nvl_ctrl_qpair_count(c) - o->first_queue
                                     : 0);
    max_cmd = o->max_cmd_bytes ? o->max_cmd_bytes : info->max_transfer;
    /* Commands are a power of two no larger than MDTS and one page of PRP entries. */
    while (max_cmd & (max_cmd - 1))
        max_cmd &= max_cmd - 1;
    if (max_cmd > (1u << NVL_ENGINE_CMD_SHIFT_MAX))
        max_cmd = 1u << NVL_ENGINE_CMD_SHIFT_MAX;
    rc = -EINVAL;
    if (e->n_queues == 0 || e->n_queues > NVL_ENGINE_MAX_QUEUES ||
        o->first_queue + e->n_queues > nvl_ctrl_qpair_count(c) ||
        log2_exact(o->ring_entries, &ring_shift) || o->max_batch == 0 ||
        o->max_batch > NVL_ENGINE_MAX_BATCH || log2_exact(info->lba_size, &lba_shift) ||
        lba_shift < 9 || lba_shift > 12 || info->page_size != NVL_ENGINE_PAGE ||
        log2_exact(max_cmd, &cmd_shift) || cmd_shift < lba_shift) {
        nvl_log_error(NVL_HOST_WHO,
                      "%s: unsupported engine setup: %u queues from %u (controller has %u, at "
                      "most %u), ring %u, batch %u, LBA %u, page %u, command %u bytes",
                      e->name, e->n_queues, o->first_queue, nvl_ctrl_qpair_count(c),
                      NVL_ENGINE_MAX_QUEUES, o->ring_entries, o->max_batch, info->lba_size,
                      info->page_size, max_cmd);
        goto err_free;
    }
    e->lba_size = info->lba_size;
    e->max_cmd_bytes = max_cmd;
    rc = -ENOMEM;
    e->qps = calloc(e->n_queues, sizeof(*e->qps));
    e->descs = calloc(e->n_queues, sizeof(*e->descs));
    e->rings = calloc(e->n_queues, sizeof(*e->rings));
    e->qp_host = calloc(e->n_queues, sizeof(*e->qp_host));
    e->bufs_host = calloc(MAX_BUFS, sizeof(*e->bufs_host));
    e->buf_lists = calloc(2 * MAX_BUFS, sizeof(*e->buf_lists));
    e->released = calloc(o->ring_entries, 1);
    if (!e->qps || !e->descs || !e->rings || !e->qp_host || !e->bufs_host || !e->buf_lists ||
        !e->released)
        goto err_free;

    rc = claim_queues(e);
    if (rc)
        goto err_release_queues;
    rc = register_rings(e);
    if (rc)
        goto err_unregister;
    rc = alloc_shared(e);
    if (rc)
        goto err_free_shared;
    rc = upload_queues(e);
    if (rc)
        goto err_free_shared;
    rc = cuda_check(cudaStreamCreateWithFlags(&e->stream, cudaStreamNonBlocking), "engine stream");
    if (rc)
        goto err_free_shared;

    e->params.n_queues = e->n_queues;
    e->params.nsid = e->descs[0].nsid;
    e->params.lba_shift = lba_shift;
    e->params.max_cmd_shift = cmd_shift;
    e->params.max_batch = o->max_batch;
    e->params.ring_entries = o->ring_entries;
    e->params.n_bufs = 0;
    e->params.idle_ns = o->idle_ns;
    e->params.idle_exit_ns = (uint64_t)o->idle_exit_us * 1000u;
    e->params.timeout_ns = o->timeout_ns;

    if (o->csts_poll_us) {
        atomic_init(&e->monitor_stop, 0);
        rc = -pthread_create(&e->monitor, NULL, monitor_main, e);
        if (rc)
            goto err_destroy_stream;
        e->monitor_running = 1;
    }
    nvl_log_info(NVL_HOST_WHO,
                 "%s: engine on %u queue pairs (qid %u..), depth %u, commands of %u bytes, "
                 "ring %u",
                 e->name, e->n_queues, e->descs[0].qid, e->descs[0].depth, max_cmd,
                 o->ring_entries);
    *out = e;
    return 0;

err_destroy_stream:
    cudaStreamDestroy(e->stream);
err_free_shared:
    free_shared(e);
err_unregister:
    unregister_rings(e);
err_release_queues:
    release_queues(e);
err_free:
    free(e->released);
    free(e->buf_lists);
    free(e->bufs_host);
    free(e->qp_host);
    free(e->rings);
    free(e->descs);
    free(e->qps);
    free(e);
    return rc;
}

void nvl_host_engine_destroy(struct nvl_host_engine *e)
{
    if (!e)
        return;
    if (e->running && nvl_host_engine_stop(e) == -ETIMEDOUT) {
        /* The kernel still runs with pointers into everything below; freeing it would turn a
         * hang into memory corruption. Leak it and say so. */
        nvl_log_error(NVL_HOST_WHO, "%s: engine kernel did not stop; its memory is leaked",
                      e->name);
        return;
    }
    if (e->monitor_running) {
        atomic_store_explicit(&e->monitor_stop, 1, memory_order_release);
        pthread_join(e->monitor, NULL);
    }
    cudaStreamDestroy(e->stream);
    free_shared(e);
    unregister_rings(e);
    release_queues(e);
    free(e->released);
    free(e->buf_lists);
    free(e->bufs_host);
    free(e->qp_host);
    free(e->rings);
    free(e->descs);
    free(e->qps);
    free(e);
}

int nvl_host_engine_add_buf(struct nvl_host_engine *e, const uint64_t *prp_list,
                            const uint64_t *prp_page_iova, uint64_t bytes, uint32_t *id)
{
    struct nvl_engine_buf *b;
    uint64_t n_pages = bytes / NVL_ENGINE_PAGE;
    uint64_t list_pages = (n_pages + NVL_ENGINE_PRP_PER_PAGE - 1) / NVL_ENGINE_PRP_PER_PAGE;
    uint64_t *list = NULL, *pages = NULL;
    int rc;

    if (e->started || e->running || !prp_list || !prp_page_iova || !bytes ||
        bytes % NVL_ENGINE_PAGE)
        return -EINVAL;
    if (e->n_bufs == MAX_BUFS)
        return -ENOSPC;
    rc = cuda_check(cudaMalloc((void **)&list, n_pages * sizeof(*list)), "PRP list copy");
    if (rc)
        return rc;
    rc = cuda_check(cudaMalloc((void **)&pages, list_pages * sizeof(*pages)), "PRP pages copy");
    if (rc)
        goto err_free_list;
    rc = cuda_check(cudaMemcpy(list, prp_list, n_pages * sizeof(*list), cudaMemcpyHostToDevice),
                    "PRP list upload");
    if (rc)
        goto err_free_pages;
    rc = cuda_check(
        cudaMemcpy(pages, prp_page_iova, list_pages * sizeof(*pages), cudaMemcpyHostToDevice),
        "PRP pages upload");
    if (rc)
        goto err_free_pages;
    b = &e->bufs_host[e->n_bufs];
    b->prp_list = list;
    b->prp_page_iova = pages;
    b->bytes = bytes;
    b->n_pages = n_pages;
    rc = cuda_check(
        cudaMemcpy((void *)&e->params.bufs[e->n_bufs], b, sizeof(*b), cudaMemcpyHostToDevice),
        "buffer table upload");
    if (rc)
        goto err_free_pages;
    e->buf_lists[2 * e->n_bufs] = list;
    e->buf_lists[2 * e->n_bufs + 1] = pages;
    *id = e->n_bufs++;
    e->params.n_bufs = e->n_bufs;
    return 0;

err_free_pages:
    cudaFree(pages);
err_free_list:
    cudaFree(list);
    return rc;
}

/* Launches the kernel; the previous launch has exited. */
static int launch(struct nvl_host_engine *e)
{
    /* warps_active, exit_now, idle_mask, idle_epoch: fresh for every launch; req_next and
     * fatal carry over. */
    struct nvl_engine_global g = {0, 0, e->n_queues, 0, 0, 0, 0};
    int rc;

    rc = cuda_check(cudaMemcpyAsync(&e->params.global->warps_active, &g.warps_active,
                                    offsetof(struct nvl_engine_global, rsvd) -
                                        offsetof(struct nvl_engine_global, warps_active),
                                    cudaMemcpyHostToDevice, e->stream),
                    "engine launch");
    if (rc)
        return rc;
    __atomic_store_n(&e->ctl->warps_exited, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&e->ctl->state, NVL_ENGINE_IDLE, __ATOMIC_RELEASE);
    rc = nvl_engine_launch(&e->params, e->stream);
    if (rc) {
        nvl_log_error(NVL_HOST_WHO, "%s: engine launch failed: %s", e->name,
                      cudaGetErrorString(cudaGetLastError()));
        return rc;
    }
    e->running = 1;
    e->launches++;
    return 0;
}

int nvl_host_engine_start(struct nvl_host_engine *e)
{
    int rc;

    if (e->started)
        return -EALREADY;
    if (e->failed) {
        nvl_log_error(NVL_HOST_WHO, "%s: engine failed (%s); reset the controller first", e->name,
                      nvl_engine_st_str(e->ctl->fatal));
        return -EIO;
    }
    /* A kernel that idle-exited may still be leaving. */
    if (e->running && nvl_host_engine_stop(e))
        return -EIO;
    __atomic_store_n(&e->ctl->stop, 0, __ATOMIC_RELEASE);
    rc = launch(e);
    if (rc == 0)
        e->started = 1;
    return rc;
}

/* Called once the kernel has exited (or crashed): collects its state. */
static int engine_exited(struct nvl_host_engine *e, cudaError_t err)
{
    int rc = 0;

    e->running = 0;
    if (err != cudaSuccess) {
        nvl_log_error(NVL_HOST_WHO, "%s: engine kernel failed: %s", e->name,
                      cudaGetErrorString(err));
        e->failed = 1;
        return -EIO;
    }
    if (cudaMemcpy(e->qp_host, e->params.qp, e->n_queues * sizeof(*e->qp_host),
                   cudaMemcpyDeviceToHost) != cudaSuccess) {
        cudaGetLastError();
        e->failed = 1;
        return -EIO;
    }
    if (__atomic_load_n(&e->ctl->state, __ATOMIC_ACQUIRE) == NVL_ENGINE_FAILED) {
        uint32_t f = e->ctl->fatal;

        nvl_log_error(NVL_HOST_WHO, "%s: engine failed: %s (status 0x%08x)", e->name,
                      nvl_engine_st_str(f), f);
        e->failed = 1;
        rc = -EIO;
    }
    return rc;
}

/* Whether the kernel is still running; collects its state when it has exited. */
static int engine_alive(struct nvl_host_engine *e)
{
    cudaError_t err;

    if (!e->running)
        return 0;
    err = cudaStreamQuery(e->stream);
    if (err == cudaErrorNotReady)
        return 1;
    engine_exited(e, err);
    return 0;
}

int nvl_host_engine_stop(struct nvl_host_engine *e)
{
    uint64_t deadline;
    cudaError_t err;

    e->started = 0;
    if (!e->running)
        return e->failed ? -EIO : 0;
    __atomic_store_n(&e->ctl->stop, 1, __ATOMIC_RELEASE);
    deadline = now_ns() + e->opts.timeout_ns + 5000000000ull;
    while ((err = cudaStreamQuery(e->stream)) == cudaErrorNotReady) {
        if (now_ns() > deadline) {
            nvl_log_error(NVL_HOST_WHO, "%s: engine kernel did not stop within %llu ms", e->name,
                          (unsigned long long)((e->opts.timeout_ns + 5000000000ull) / 1000000));
            return -ETIMEDOUT;
        }
        sleep_ns(100000);
    }
    return engine_exited(e, err);
}

/* After a post: makes sure a kernel will see it. A running kernel does, unless it is closing
 * for an idle exit (see idle_exit_step in device/src/engine.cu): then wait until it either
 * calls the exit off or has exited, and relaunch it. */
static int ensure_served(struct nvl_host_engine *e)
{
    uint64_t deadline = now_ns() + 5000000000ull;
    cudaError_t err;
    uint32_t st;

    if (!e->started || e->failed)
        return 0;
    /* Pairs with the kernel's fence between publishing CLOSING and re-reading the producer. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    st = __atomic_load_n(&e->ctl->state, __ATOMIC_SEQ_CST);
    if (e->running && (st == NVL_ENGINE_RUNNING || st == NVL_ENGINE_IDLE))
        return 0;
    while (e->running) {
        err = cudaStreamQuery(e->stream);
        if (err != cudaErrorNotReady) {
            engine_exited(e, err);
            break;
        }
        if (__atomic_load_n(&e->ctl->state, __ATOMIC_ACQUIRE) == NVL_ENGINE_RUNNING)
            return 0;
        if (now_ns() > deadline) {
            nvl_log_error(NVL_HOST_WHO, "%s: engine neither exits nor resumes", e->name);
            return -ETIMEDOUT;
        }
        sleep_ns(2000);
    }
    return e->failed ? -EIO : launch(e);
}

int nvl_host_engine_recover(struct nvl_host_engine *e)
{
    const uint32_t mask = e->opts.ring_entries - 1;
    struct nvl_engine_global g;
    int rc;

    engine_alive(e);
    if (e->running || (e->started && !e->failed))
        return -EBUSY;
    rc = cuda_check(cudaMemcpy(&g, e->params.global, sizeof(g), cudaMemcpyDeviceToHost),
                    "engine globals");
    if (rc)
        return rc;
    /* Requests posted after the failed kernel's last pass were never claimed: complete them
     * here as aborted and recycle their bookkeeping, so nothing is left for the new queues. */
    for (uint32_t r = g.req_next; r != e->producer; r++) {
        struct nvl_engine_mirror m;

        memset(&m, 0, sizeof(m));
        m.claim = (uint64_t)(uint32_t)(r + e->opts.ring_entries) << 32;
        rc = cuda_check(
            cudaMemcpy(&e->params.mirror[r & mask], &m, sizeof(m), cudaMemcpyHostToDevice),
            "mirror reset");
        if (rc)
            return rc;
        e->cpl[r & mask].status = nvl_engine_st_make(NVL_ENGINE_ST_ABORTED, 0);
        __atomic_store_n(&e->cpl[r & mask].seq, r + 1, __ATOMIC_RELEASE);
    }
    g.req_next = e->producer;
    g.fatal = 0;
    g.warps_active = 0;
    rc = cuda_check(cudaMemcpy(e->params.global, &g, sizeof(g), cudaMemcpyHostToDevice),
                    "engine globals");
    if (rc)
        return rc;
    for (uint32_t i = 0; i < e->n_queues; i++) {
        struct nvl_engine_qp_stats stats = e->qp_host[i].stats;

        nvl_qpair_describe(e->qps[i], &e->descs[i]);
        qp_state_from_desc(e, i);
        e->qp_host[i].stats = stats;
    }
    rc = upload_queues(e);
    if (rc)
        return rc;
    e->ctl->fatal = 0;
    __atomic_store_n(&e->ctl->csts, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&e->ctl->state, NVL_ENGINE_IDLE, __ATOMIC_RELEASE);
    e->failed = 0;
    return 0;
}

int nvl_host_engine_post(struct nvl_host_engine *e, struct nvl_engine_req *reqs, uint32_t n,
                         uint32_t *first)
{
    const uint32_t mask = e->opts.ring_entries - 1;

    if (!reqs || n == 0 || n > e->opts.ring_entries)
        return -EINVAL;
    if (!engine_alive(e) && e->failed)
        return -EIO;
    if (e->producer - e->oldest + n > e->opts.ring_entries)
        return -EAGAIN;
    for (uint32_t i = 0; i < n; i++) {
        reqs[i].group_first = e->producer;
        reqs[i].group_size = n;
        e->ring[(e->producer + i) & mask] = reqs[i];
        e->released[(e->producer + i) & mask] = 0;
    }
    *first = e->producer;
    e->producer += n;
    /* Publishes the descriptors: the GPU reads them after an acquire load of the producer. */
    __atomic_store_n(&e->ctl->producer, e->producer, __ATOMIC_SEQ_CST);
    return ensure_served(e);
}

/* 1 when every request in [first, first + n) has its completion entry; *status gets the first
 * failure. */
static int group_done(struct nvl_host_engine *e, uint32_t first, uint32_t n, uint32_t *status)
{
    const uint32_t mask = e->opts.ring_entries - 1;
    uint32_t st = 0;

    for (uint32_t i = 0; i < n; i++) {
        const struct nvl_engine_cpl *c = &e->cpl[(first + i) & mask];

        if (__atomic_load_n(&c->seq, __ATOMIC_ACQUIRE) != first + i + 1)
            return 0;
        if (!st)
            st = c->status;
    }
    *status = st;
    return 1;
}

int nvl_host_engine_poll(struct nvl_host_engine *e, uint32_t first, uint32_t n, uint32_t *status)
{
    *status = 0;
    if (group_done(e, first, n, status))
        return 0;
    if (engine_alive(e))
        return -EAGAIN;
    if (!e->failed) {
        /* Not running: stopped by the owner (served at the next start), or gone idle just as
         * this was posted (relaunch). */
        if (e->started && ensure_served(e) == 0 && group_done(e, first, n, status))
            return 0;
        return -EAGAIN;
    }
    /* The kernel is gone. It published every completion it will ever make before its exit
     * state, so one more look is definitive. */
    if (group_done(e, first, n, status))
        return 0;
    *status = e->ctl->fatal ? e->ctl->fatal : nvl_engine_st_make(NVL_ENGINE_ST_ABORTED, 0);
    return -EIO;
}

int nvl_host_engine_wait(struct nvl_host_engine *e, uint32_t first, uint32_t n, uint64_t timeout_ns,
                         uint32_t *status)
{
    uint64_t start = now_ns(), nap = 2000;
    int rc;

    /* Sleep, never spin: CPU time per byte read is one of the engine's figures of merit. */
    while ((rc = nvl_host_engine_poll(e, first, n, status)) == -EAGAIN) {
        if (now_ns() - start > timeout_ns)
            return -ETIMEDOUT;
        sleep_ns(nap);
        if (nap < 200000)
            nap *= 2;
    }
    return rc;
}

uint32_t nvl_host_engine_room(const struct nvl_host_engine *e)
{
    return e->opts.ring_entries - (e->producer - e->oldest);
}

void nvl_host_engine_release(struct nvl_host_engine *e, uint32_t first, uint32_t n)
{
    const uint32_t mask = e->opts.ring_entries - 1;

    for (uint32_t i = 0; i < n; i++)
        e->released[(first + i) & mask] = 1;
    while (e->oldest != e->producer && e->released[e->oldest & mask])
        e->oldest++;
}

uint32_t nvl_host_engine_state(struct nvl_host_engine *e, uint32_t *fatal)
{
    engine_alive(e);
    if (fatal)
        *fatal = e->ctl->fatal;
    return __atomic_load_n(&e->ctl->state, __ATOMIC_ACQUIRE);
}

void nvl_host_engine_stats(const struct nvl_host_engine *e, struct nvl_engine_qp_stats *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (uint32_t i = 0; i < e->n_queues; i++) {
        const struct nvl_engine_qp_stats *s = &e->qp_host[i].stats;

        sum->commands += s->commands;
        sum->completions += s->completions;
        sum->sq_doorbells += s->sq_doorbells;
        sum->cq_doorbells += s->cq_doorbells;
        sum->polls += s->polls;
        sum->empty_polls += s->empty_polls;
        sum->errors += s->errors;
        sum->spurious += s->spurious;
    }
}

double nvl_host_engine_monitor_cpu_seconds(const struct nvl_host_engine *e)
{
    struct timespec ts;
    clockid_t clk;

    if (!e->monitor_running || pthread_getcpuclockid(e->monitor, &clk) || clock_gettime(clk, &ts))
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t nvl_host_engine_launches(const struct nvl_host_engine *e)
{
    return e->launches;
}

uint32_t nvl_host_engine_queues(const struct nvl_host_engine *e)
{
    return e->n_queues;
}

uint32_t nvl_host_engine_lba_size(const struct nvl_host_engine *e)
{
    return e->lba_size;
}

uint32_t nvl_host_engine_nsid(const struct nvl_host_engine *e)
{
    return e->params.nsid;
}

uint32_t nvl_host_engine_max_cmd_bytes(const struct nvl_host_engine *e)
{
    return e->max_cmd_bytes;
}

uint32_t nvl_host_engine_ring_entries(const struct nvl_host_engine *e)
{
    return e->opts.ring_entries;
}

uint64_t nvl_host_engine_timeout_ns(const struct nvl_host_engine *e)
{
    return e->opts.timeout_ns;
}

cudaStream_t nvl_host_engine_stream(const struct nvl_host_engine *e)
{
    return e->stream;
}
