/* gpu-nvme: the GPU I/O engine (device/ + host/) drives the NVMe queues; the CPU only posts
 * requests.
 *
 * Slot destinations (the zero-copy path a model runtime uses): one engine request per span,
 * posted as one group whose last finisher stores the read's completion word on the GPU. The CPU
 * does nothing more until it chooses to look at the outcome.
 *
 * Device destinations: the read is cut into pieces of one bounce slot each, handed round robin
 * to the bounce slots. For each piece the CPU posts, at submit time and without waiting:
 *   - an engine request into bounce b, gated on "copy-out of b's previous piece done" and
 *     notifying "b filled" (a counter word per bounce slot);
 *   - on a copy stream: wait "b filled", copy b to the destination, write "b copied".
 * After the last piece the copy stream writes the read's completion word. Fills and copies
 * overlap across the bounce slots, and no CPU thread is on the path.
 *
 * Host destinations take the same pieces, but the copy-out is a CPU memcpy done from poll/wait
 * (the bytes must pass through the CPU anyway); it then opens the gate of the slot's next fill.
 *
 * Failures: a failed NVMe status fails the read with -EIO; a lost completion (-ETIMEDOUT) or
 * CSTS.CFS/protocol error (-ENXIO) fails the engine, which completes everything with an error
 * status and exits; the loader then needs a reset (ops->reset: controller reset, queues
 * re-read, engine restarted). Completion words always advance, so no GPU stream waits forever:
 * when the engine is gone, the CPU writes them. */
#include "backend.h"
#include "cuda_glue.h"

#ifdef NVL_HAVE_CUDA

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nvl_host.h"

/* Longest run of pieces (bounce fills) or spans the ring may hold at once. */
#define RING_ENTRIES 4096u
#define MAX_BOUNCE   8u

struct piece {
    uint32_t bounce;
    uint32_t fill; /* fill number of that bounce slot this piece is */
    uint64_t skip; /* first byte of the bounce slot to deliver */
    uint64_t len;  /* bytes delivered */
    uint8_t *dst;  /* destination of those bytes */
};

struct gpu_read {
    uint32_t first; /* engine requests [first, first + n) */
    uint32_t n;
    struct piece *pieces;         /* bounce reads; NULL for slot reads */
    uint32_t copied;              /* host destinations: pieces copied out */
    struct gpu_read *prev, *next; /* in flight */
    struct nvl_read *r;
};

struct gpu_nvme {
    struct nvl_loader *l;
    struct nvl_host_engine *eng;
    uint32_t slot_buf[64];
    uint32_t bounce_buf[MAX_BOUNCE];
    uint32_t n_bounce;
    uint32_t next_bounce;
    /* Per bounce slot, in mapped pinned memory: fills finished (written by the engine) and
     * copy-outs finished (by the copy stream or the CPU). The host counts what it handed out. */
    uint32_t *fill_word, *fill_word_dev;
    uint32_t *copy_word, *copy_word_dev;
    uint32_t fill_seq[MAX_BOUNCE];
    cudaStream_t copy_stream;
    struct gpu_read *oldest, *newest; /* reads in flight, in submission order */
};

static int gpu_nvme_probe(const struct nvl_loader_opts *o, char *why, size_t why_len)
{
    char name[128];
    int rc = nvl__probe_ctrl(o, why, why_len);

    if (rc)
        return rc;
    if (nvl__cuda_device_probe(o->cuda_device, name, sizeof(name))) {
        snprintf(why, why_len, "%s", name);
        return -ENODEV;
    }
    snprintf(why, why_len, "CUDA device %d (%s) drives the queues of %s", o->cuda_device, name,
             nvl_ctrl_name(o->ctrl));
    return 0;
}

/* ---- outcome ---------------------------------------------------------------------------- */

/* An engine status word as the loader reports it. */
static int status_err(uint32_t st, uint32_t fatal, uint16_t *nvme)
{
    *nvme = 0;
    if (nvl_engine_st_kind(st) == NVL_ENGINE_ST_ABORTED && fatal)
        st = fatal;
    switch (nvl_engine_st_kind(st)) {
    case NVL_ENGINE_ST_OK:
        return 0;
    case NVL_ENGINE_ST_NVME:
        *nvme = nvl_engine_st_nvme(st);
        return -EIO;
    case NVL_ENGINE_ST_TIMEOUT:
        return -ETIMEDOUT;
    case NVL_ENGINE_ST_CFS:
    case NVL_ENGINE_ST_PROTOCOL:
        return -ENXIO;
    case NVL_ENGINE_ST_BADREQ:
        return -EINVAL;
    default:
        return -EIO;
    }
}

static int word_reached(const uint32_t *w, uint32_t v)
{
    return (int32_t)(__atomic_load_n(w, __ATOMIC_ACQUIRE) - v) >= 0;
}

/* The engine is gone: release every GPU-side waiter of ours so no stream hangs. */
static void unblock_streams(struct gpu_nvme *g)
{
    for (uint32_t b = 0; b < g->n_bounce; b++) {
        __atomic_store_n(&g->fill_word[b], g->fill_seq[b], __ATOMIC_RELEASE);
        __atomic_store_n(&g->copy_word[b], g->fill_seq[b], __ATOMIC_RELEASE);
    }
}

static void finish(struct gpu_nvme *g, struct gpu_read *gr, int err, uint16_t nvme)
{
    struct nvl_loader *l = g->l;
    struct nvl_read *r = gr->r;

    nvl_host_engine_release(g->eng, gr->first, gr->n);
    if (gr->prev)
        gr->prev->next = gr->next;
    else
        g->oldest = gr->next;
    if (gr->next)
        gr->next->prev = gr->prev;
    else
        g->newest = gr->prev;
    /* Normally the GPU (notify, copy stream) or the host copy-out has advanced the word; on a
     * failure nobody may have. It only counts up, so a second store of the same value is
     * harmless. */
    if (err || r->dst.kind == NVL_DST_HOST)
        __atomic_store_n(&l->words[r->word], r->value, __ATOMIC_RELEASE);
    r->be_priv = NULL;
    free(gr->pieces);
    free(gr);
    nvl__read_complete(r, err, nvme);
}

/* Host destinations: copies out every piece whose fill has landed, in order, and opens the gate
 * of that bounce slot's next fill. */
static void host_copy_out(struct gpu_nvme *g, struct gpu_read *gr)
{
    struct nvl_loader *l = g->l;

    while (gr->copied < gr->n) {
        struct piece *p = &gr->pieces[gr->copied];

        if (!word_reached(&g->fill_word[p->bounce], p->fill))
            break;
        memcpy(p->dst, l->bounce[p->bounce].host + p->skip, p->len);
        __atomic_store_n(&g->copy_word[p->bounce], p->fill, __ATOMIC_RELEASE);
        gr->copied++;
    }
}

static int gpu_nvme_poll(struct nvl_loader *l, struct nvl_read *r)
{
    struct gpu_nvme *g = l->be;
    struct gpu_read *gr = r->be_priv;
    uint32_t st = 0, fatal = 0;
    uint16_t nvme;
    int rc, err;

    if (!gr)
        return 0; /* finished */
    /* Host copy-outs open the gates of later fills, whichever read those belong to, so every
     * read's copy-outs progress here, oldest first. */
    for (struct gpu_read *h = g->oldest; h; h = h->next) {
        if (h->r->dst.kind == NVL_DST_HOST)
            host_copy_out(g, h);
    }
    rc = nvl_host_engine_poll(g->eng, gr->first, gr->n, &st);
    if (rc == -EAGAIN)
        return -EAGAIN;
    nvl_host_engine_state(g->eng, &fatal);
    if (rc) {
        /* The engine exited with this read unfinished. */
        unblock_streams(g);
        err = status_err(st, fatal, &nvme);
        finish(g, gr, err ? err : -EIO, nvme);
        return 0;
    }
    err = status_err(st, fatal, &nvme);
    if (!err) {
        if (r->dst.kind == NVL_DST_HOST && gr->copied < gr->n)
            return -EAGAIN;
        /* Device destinations: the copy stream's last write is the read's word. */
        if (r->dst.kind == NVL_DST_DEVICE && !word_reached(&l->words[r->word], r->value))
            return -EAGAIN;
    }
    finish(g, gr, err, nvme);
    return 0;
}

static int gpu_nvme_wait(struct nvl_loader *l, struct nvl_read *r)
{
    struct timespec nap = {0, 2000};

    /* Sleep between looks: CPU time per byte read is a figure of merit of this backend. */
    while (gpu_nvme_poll(l, r) == -EAGAIN) {
        nanosleep(&nap, NULL);
        if (nap.tv_nsec < 200000)
            nap.tv_nsec *= 2;
    }
    return 0;
}

/* ---- submission ------------------------------------------------------------------------- */

static void req_fill(struct gpu_nvme *g, struct nvl_engine_req *q, uint64_t dev_off,
                     uint64_t dev_bytes, uint32_t buf, uint64_t buf_off)
{
    uint32_t bs = g->l->block_size;

    memset(q, 0, sizeof(*q));
    q->slba = dev_off / bs;
    q->nlb = (uint32_t)(dev_bytes / bs);
    q->buf = (uint16_t)buf;
    q->buf_off = buf_off;
}

/* NVMe commands a request becomes (for the read's statistics). */
static uint64_t req_commands(struct gpu_nvme *g, const struct nvl_engine_req *q, uint64_t bytes)
{
    struct nvl_engine_buf b = {NULL, NULL, bytes, bytes / NVL_ENGINE_PAGE};
    struct nvl_engine_plan pl;
    uint32_t lba_shift = 0, cmd_shift = 0;

    while ((1u << lba_shift) < nvl_host_engine_lba_size(g->eng))
        lba_shift++;
    while ((1u << cmd_shift) < nvl_host_engine_max_cmd_bytes(g->eng))
        cmd_shift++;
    return nvl_engine_plan_req(q, &b, lba_shift, cmd_shift, &pl) ? 0 : pl.n_cmds;
}

static int submit_slot(struct gpu_nvme *g, struct nvl_read *r, struct gpu_read *gr)
{
    struct nvl_loader *l = g->l;
    const struct nvl_slot *s = &l->slots[r->dst.slot];
    struct nvl_engine_req *q;
    uint64_t cmds = 0;
    int rc;

    if (r->n_span > nvl_host_engine_room(g->eng)) {
        nvl_log_error(NVL_LOADER_WHO,
                      "gpu-nvme: %u extents in one read exceed the free request "
                      "ring (%u entries)",
                      r->n_span, nvl_host_engine_room(g->eng));
        return r->n_span > RING_ENTRIES ? -E2BIG : -EAGAIN;
    }
    q = calloc(r->n_span, sizeof(*q));
    if (!q)
        return -ENOMEM;
    for (uint32_t i = 0; i < r->n_span; i++) {
        const struct nvl_span *sp = &r->span[i];

        req_fill(g, &q[i], sp->dev_offset, sp->dev_bytes, g->slot_buf[r->dst.slot], sp->dst_offset);
        q[i].notify_addr = (uint64_t)(uintptr_t)&l->words_dev[r->word];
        q[i].notify_value = r->value;
        cmds += req_commands(g, &q[i], s->bytes);
    }
    rc = nvl_host_engine_post(g->eng, q, r->n_span, &gr->first);
    free(q);
    if (rc)
        return rc;
    gr->n = r->n_span;
    atomic_fetch_add(&r->commands, cmds);
    return 0;
}

/* Cuts the spans into bounce-slot pieces. */
static int plan_pieces(struct nvl_read *r, struct gpu_read *gr, uint64_t piece_bytes)
{
    uint8_t *dst = r->dst.ptr;
    uint32_t n = 0;

    for (uint32_t i = 0; i < r->n_span; i++)
        n += (uint32_t)((r->span[i].dev_bytes + piece_bytes - 1) / piece_bytes);
    gr->pieces = calloc(n, sizeof(*gr->pieces));
    if (!gr->pieces)
        return -ENOMEM;
    n = 0;
    for (uint32_t i = 0; i < r->n_span; i++) {
        const struct nvl_span *sp = &r->span[i];

        for (uint64_t off = 0; off < sp->dev_bytes; off += piece_bytes) {
            struct piece *p = &gr->pieces[n++];
            uint64_t end = off + piece_bytes < sp->dev_bytes ? off + piece_bytes : sp->dev_bytes;
            /* Requested bytes of the span are [skip, skip + len) of its device range. */
            uint64_t lo = off > sp->skip ? off : sp->skip;
            uint64_t hi = end < sp->skip + sp->len ? end : sp->skip + sp->len;

            p->skip = lo - off;
            p->len = hi > lo ? hi - lo : 0;
            p->dst = dst + sp->dst_offset + (lo - sp->skip);
        }
    }
    gr->n = n;
    return 0;
}

static int submit_bounce(struct gpu_nvme *g, struct nvl_read *r, struct gpu_read *gr)
{
    struct nvl_loader *l = g->l;
    const uint64_t piece_bytes = l->bounce[0].bytes;
    struct nvl_engine_req q;
    uint64_t cmds = 0;
    uint32_t k = 0, first = 0;
    int rc;

    rc = plan_pieces(r, gr, piece_bytes);
    if (rc)
        return rc;
    if (gr->n > nvl_host_engine_room(g->eng)) {
        nvl_log_error(NVL_LOADER_WHO,
                      "gpu-nvme: a read of %u bounce pieces exceeds the free "
                      "request ring (%u entries)",
                      gr->n, nvl_host_engine_room(g->eng));
        return gr->n > RING_ENTRIES ? -E2BIG : -EAGAIN;
    }
    for (uint32_t i = 0; i < r->n_span; i++) {
        const struct nvl_span *sp = &r->span[i];

        for (uint64_t off = 0; off < sp->dev_bytes; off += piece_bytes, k++) {
            struct piece *p = &gr->pieces[k];
            uint64_t len = sp->dev_bytes - off < piece_bytes ? sp->dev_bytes - off : piece_bytes;
            uint32_t b = g->next_bounce++ % g->n_bounce;
            uint32_t id;

            p->bounce = b;
            p->fill = ++g->fill_seq[b];
            req_fill(g, &q, sp->dev_offset + off, len, g->bounce_buf[b], 0);
            /* Start only once the previous piece in this bounce slot has been copied out. */
            q.gate_addr = (uint64_t)(uintptr_t)&g->copy_word_dev[b];
            q.gate_value = p->fill - 1;
            q.notify_addr = (uint64_t)(uintptr_t)&g->fill_word_dev[b];
            q.notify_value = p->fill;
            cmds += req_commands(g, &q, l->bounce[b].bytes);
            rc = nvl_host_engine_post(g->eng, &q, 1, &id);
            if (rc)
                return rc; /* cannot happen: room was checked */
            if (k == 0)
                first = id;
            if (r->dst.kind != NVL_DST_DEVICE)
                continue;
            /* The copy-out, queued now, runs when the GPU says the fill has landed. */
            rc = nvl_host_stream_wait_word(g->copy_stream, &g->fill_word_dev[b], p->fill,
                                           nvl_host_engine_timeout_ns(g->eng) * 4);
            if (!rc && p->len &&
                cudaMemcpyAsync(p->dst, (uint8_t *)l->bounce[b].device + p->skip, p->len,
                                cudaMemcpyDefault, g->copy_stream) != cudaSuccess)
                rc = -EIO;
            if (!rc)
                rc = nvl_host_stream_write_word(g->copy_stream, &g->copy_word_dev[b], p->fill);
            if (rc) {
                nvl_log_error(NVL_LOADER_WHO, "gpu-nvme: cannot queue a copy-out: %s",
                              cudaGetErrorString(cudaGetLastError()));
                return rc;
            }
        }
    }
    gr->first = first;
    if (r->dst.kind == NVL_DST_DEVICE) {
        rc = nvl_host_stream_write_word(g->copy_stream, &l->words_dev[r->word], r->value);
        if (rc)
            return rc;
    }
    atomic_fetch_add(&r->commands, cmds);
    return 0;
}

static int gpu_nvme_submit(struct nvl_loader *l, struct nvl_read *r)
{
    struct gpu_nvme *g = l->be;
    struct gpu_read *gr = calloc(1, sizeof(*gr));
    int rc;

    if (!gr)
        return -ENOMEM;
    gr->r = r;
    r->be_priv = gr;
    if (r->dst.kind == NVL_DST_SLOT)
        rc = submit_slot(g, r, gr);
    else
        rc = submit_bounce(g, r, gr);
    if (rc) {
        /* Pieces already posted still run and complete; their fills are accounted for, so
         * later pieces in the same bounce slots stay correctly gated. Only a failed post
         * (engine failure, no room) lands here, and both leave nothing half posted except
         * on an engine failure, which needs a reset anyway. */
        free(gr->pieces);
        free(gr);
        r->be_priv = NULL;
        return rc;
    }
    gr->prev = g->newest;
    if (g->newest)
        g->newest->next = gr;
    else
        g->oldest = gr;
    g->newest = gr;
    return 0;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static void gpu_nvme_destroy(struct nvl_loader *l)
{
    struct gpu_nvme *g = l->be;

    if (!g)
        return;
    while (g->oldest)
        finish(g, g->oldest, -ECANCELED, 0);
    nvl_host_engine_destroy(g->eng);
    unblock_streams(g);
    if (g->copy_stream) {
        cudaStreamSynchronize(g->copy_stream);
        cudaStreamDestroy(g->copy_stream);
    }
    if (g->fill_word)
        cudaFreeHost(g->fill_word);
    free(g);
    l->be = NULL;
}

static int register_bufs(struct gpu_nvme *g)
{
    struct nvl_loader *l = g->l;
    int rc;

    for (uint32_t i = 0; i < l->opts.n_slots; i++) {
        const struct nvl_slot *s = &l->slots[i];

        rc = nvl_host_engine_add_buf(g->eng, s->prp_list, s->prp_list_page_iova, s->bytes,
                                     &g->slot_buf[i]);
        if (rc)
            return rc;
    }
    for (uint32_t i = 0; i < g->n_bounce; i++) {
        const struct nvl_slot *s = &l->bounce[i];

        if (!s->device) {
            nvl_log_error(NVL_LOADER_WHO, "gpu-nvme: bounce slot %u is not mapped for the GPU", i);
            return -EIO;
        }
        rc = nvl_host_engine_add_buf(g->eng, s->prp_list, s->prp_list_page_iova, s->bytes,
                                     &g->bounce_buf[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static int gpu_nvme_create(struct nvl_loader *l)
{
    struct nvl_host_engine_opts o;
    struct gpu_nvme *g;
    void *words, *words_dev;
    int rc;

    if (l->opts.n_slots > 64 || !l->words_dev)
        return -EINVAL;
    g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->l = l;
    l->be = g;
    g->n_bounce = l->n_bounce < MAX_BOUNCE ? l->n_bounce : MAX_BOUNCE;
    if (g->n_bounce == 0) {
        rc = -EINVAL;
        goto err_destroy;
    }
    nvl_host_engine_opts_init(&o);
    o.first_queue = l->opts.first_queue;
    o.n_queues = l->opts.n_queues;
    o.max_inflight = l->opts.queue_depth;
    o.ring_entries = RING_ENTRIES;
    o.timeout_ns = (uint64_t)l->opts.timeout_ms * 1000000ull;
    o.cuda_device = l->opts.cuda_device;
    rc = nvl_host_engine_create(l->opts.ctrl, &o, &g->eng);
    if (rc)
        goto err_destroy;
    rc = register_bufs(g);
    if (rc)
        goto err_destroy;
    if (cudaHostAlloc(&words, 2 * MAX_BOUNCE * sizeof(uint32_t), cudaHostAllocMapped) !=
        cudaSuccess) {
        rc = -ENOMEM;
        goto err_destroy;
    }
    memset(words, 0, 2 * MAX_BOUNCE * sizeof(uint32_t));
    cudaHostGetDevicePointer(&words_dev, words, 0);
    g->fill_word = words;
    g->copy_word = g->fill_word + MAX_BOUNCE;
    g->fill_word_dev = words_dev;
    g->copy_word_dev = g->fill_word_dev + MAX_BOUNCE;
    if (cudaStreamCreateWithFlags(&g->copy_stream, cudaStreamNonBlocking) != cudaSuccess) {
        g->copy_stream = NULL;
        rc = -EIO;
        goto err_destroy;
    }
    rc = nvl_host_engine_start(g->eng);
    if (rc)
        goto err_destroy;
    nvl_log_info(NVL_LOADER_WHO,
                 "gpu-nvme: %u queue pairs, %u bounce slots of %llu bytes, GPU "
                 "waits through %s",
                 nvl_host_engine_queues(g->eng), g->n_bounce,
                 (unsigned long long)l->bounce[0].bytes, nvl_host_stream_mechanism());
    return 0;

err_destroy:
    gpu_nvme_destroy(l);
    return rc;
}

static int gpu_nvme_reset(struct nvl_loader *l)
{
    struct gpu_nvme *g = l->be;
    int rc;

    rc = nvl_host_engine_stop(g->eng);
    if (rc == -ETIMEDOUT)
        return rc;
    /* Let the copy stream drain (its waits now pass), then make the words consistent again:
     * a copy-out still queued could otherwise move a word back. */
    unblock_streams(g);
    cudaStreamSynchronize(g->copy_stream);
    unblock_streams(g);
    while (g->oldest)
        finish(g, g->oldest, -EIO, 0);
    rc = nvl_ctrl_reset(l->opts.ctrl);
    if (rc) {
        nvl_log_error(NVL_LOADER_WHO, "gpu-nvme: controller reset failed: %s", nvl_strerror(rc));
        return rc;
    }
    rc = nvl_host_engine_recover(g->eng);
    if (rc)
        return rc;
    return nvl_host_engine_start(g->eng);
}

const struct nvl_backend_ops nvl__backend_gpu_nvme = {
    .kind = NVL_LOADER_GPU_NVME,
    .name = "gpu-nvme",
    .probe = gpu_nvme_probe,
    .create = gpu_nvme_create,
    .destroy = gpu_nvme_destroy,
    .submit = gpu_nvme_submit,
    .poll = gpu_nvme_poll,
    .wait = gpu_nvme_wait,
    .reset = gpu_nvme_reset,
    .caps = NVL_BACKEND_NEEDS_CTRL | NVL_BACKEND_SETS_WORD | NVL_BACKEND_DEVICE_DST,
};

#endif
