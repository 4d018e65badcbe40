/* cpu-nvme: one loader thread drives I/O queue pairs of the CPU driver (driver/io.h).
 *
 * The thread cuts each read into units: a block-aligned device range that lands in one buffer
 * the controller can DMA into, either the destination slot itself (zero copy) or a bounce slot
 * whose requested bytes are then copied to a host (memcpy) or device (cudaMemcpy) destination.
 * Units are split into commands of at most the controller's transfer size, whose PRPs point
 * into the slot's PRP list built once at create time (nvl__slot_prp), spread round robin
 * over opts.n_queues queue pairs with up to opts.queue_depth commands in flight on each; one
 * doorbell write covers every command queued on a queue in one pass, and each poll writes the
 * CQ head doorbell once. The queue pairs belong to the controller and keep their ring state
 * (CIDs, tails, heads, phases) from one read to the next.
 *
 * Failures never hang a waiter: a command outstanding longer than opts.timeout_ms fails every
 * read in flight with -ETIMEDOUT, CSTS.CFS (read when progress stalls) or a poll error fails them
 * with -ENXIO, and either leaves the loader needing a reset. Commands abandoned that way keep
 * their bookkeeping until the controller reset cancels them, so a late completion never touches
 * freed memory. */
#include "backend.h"
#include "cuda_glue.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bytes per unit: large enough to keep every queue busy, small enough to pipeline copy-out. */
#define UNIT_BYTES (4ull << 20)
/* Poll passes with no completion before the thread starts yielding, then sleeping. */
#define SPIN_PASSES  256u
#define CSTS_CHECK_S 0.05

struct unit;

struct cpu_nvme;

struct cmd {
    struct cpu_nvme *c;
    struct unit *u;
    double t_submit;
    bool in_use;
    bool abandoned; /* given up on by a timeout; freed when the reset cancels it */
    struct cmd *next;
};

/* A block-aligned device range landing in one DMA buffer. */
struct unit {
    struct nvl_read *r;
    const struct nvl_slot *slot; /* destination slot or bounce slot */
    uint64_t slot_off;           /* where dev_off lands in it */
    uint64_t dev_off;
    uint64_t len;
    uint64_t cut;    /* bytes already commanded */
    uint32_t active; /* commands in flight */
    int bounce;      /* bounce slot index, or -1 */
    int err;
    uint16_t status;
    uint64_t copy_from; /* copy-out window (bounce only): bytes [copy_from, +copy_len) of the */
    uint64_t copy_len;  /* unit go to copy_to */
    uint8_t *copy_to;
    bool copy_device;
    struct unit *next;                  /* on the done list */
    struct unit *live_prev, *live_next; /* on the list of every live unit */
};

/* Per-read progress, in r->be_priv. */
struct cpu_read {
    uint32_t span;
    uint64_t pos;
    uint32_t active; /* units not finished */
    bool cut;
    int err;
    uint16_t status;
    struct nvl_read *next; /* on the pending or active list */
};

struct cpu_nvme {
    struct nvl_loader *loader;
    struct nvl_ctrl *ctrl;
    struct nvl_qpair **qp;
    uint32_t n_qp;
    uint32_t depth; /* commands in flight per queue pair */
    uint32_t next_qp;
    uint32_t max_cmd; /* bytes per command */

    struct cmd *cmds; /* n_qp * depth */
    struct cmd *free_cmds;
    uint32_t cmds_in_use;

    bool bounce_busy[8];
    struct unit *live;    /* every unit not yet freed */
    struct unit *cutting; /* unit being split into commands */
    struct unit *done;    /* units whose commands all completed */

    pthread_t thread;
    pthread_mutex_t lock; /* guards pending, stop, paused */
    pthread_cond_t cond;
    struct nvl_read *pending_head, *pending_tail; /* submitted, not yet seen by the thread */
    struct nvl_read *active_head, *active_tail;   /* being cut or in flight, in order */
    bool stop;
    bool pause_req, paused;
    bool failed; /* timeout or fatal status: reject everything until reset */
    int fail_err;
};

static int cpu_nvme_probe(const struct nvl_loader_opts *o, char *why, size_t why_len)
{
    int rc = nvl__probe_ctrl(o, why, why_len);

    if (rc)
        return rc;
    if (nvl_ctrl_qpair_count(o->ctrl) == 0) {
        snprintf(why, why_len, "controller %s has no I/O queue pairs", nvl_ctrl_name(o->ctrl));
        return -ENODEV;
    }
    snprintf(why, why_len, "controller %s (%s), CPU-driven queues", nvl_ctrl_name(o->ctrl),
             nvl_ctrl_get_info(o->ctrl)->mn);
    return 0;
}

/* ---- units and commands --------------------------------------------------------------------*/

static int bounce_get(struct cpu_nvme *c)
{
    for (uint32_t i = 0; i < c->loader->n_bounce; i++) {
        if (!c->bounce_busy[i]) {
            c->bounce_busy[i] = true;
            return (int)i;
        }
    }
    return -1;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void unit_free(struct cpu_nvme *c, struct unit *u)
{
    if (u->live_prev)
        u->live_prev->live_next = u->live_next;
    else
        c->live = u->live_next;
    if (u->live_next)
        u->live_next->live_prev = u->live_prev;
    if (u->bounce >= 0)
        c->bounce_busy[u->bounce] = false;
    free(u);
}

/* Cuts the next unit of the oldest read that has bytes left to cut, or returns NULL (nothing
 * left, or a bounce slot is needed and none is free). */
static struct unit *unit_cut(struct cpu_nvme *c)
{
    struct nvl_loader *l = c->loader;

    for (struct nvl_read *r = c->active_head; r; r = ((struct cpu_read *)r->be_priv)->next) {
        struct cpu_read *cr = r->be_priv;
        const struct nvl_span *s;
        struct unit *u;
        uint64_t a, len;

        if (cr->cut)
            continue;
        s = &r->span[cr->span];
        a = s->dev_offset + cr->pos;
        len = min_u64(UNIT_BYTES, s->dev_bytes - cr->pos);
        u = calloc(1, sizeof(*u));
        if (!u)
            return NULL;
        u->r = r;
        u->dev_off = a;
        u->bounce = -1;
        u->live_next = c->live;
        if (c->live)
            c->live->live_prev = u;
        c->live = u;
        if (r->dst.kind == NVL_DST_SLOT) {
            u->slot = &l->slots[r->dst.slot];
            u->slot_off = s->dst_offset + cr->pos;
        } else {
            uint64_t first = s->dev_offset + s->skip, end = first + s->len;
            uint64_t from, to_end;

            len = min_u64(len, l->bounce[0].bytes);
            u->bounce = bounce_get(c);
            if (u->bounce < 0) {
                unit_free(c, u);
                return NULL;
            }
            u->slot = &l->bounce[u->bounce];
            u->slot_off = 0;
            from = a < first ? first - a : 0;
            to_end = min_u64(a + len, end);
            u->copy_from = from;
            u->copy_len = to_end > a + from ? to_end - (a + from) : 0;
            u->copy_to = (uint8_t *)r->dst.ptr + s->dst_offset + (a + from - first);
            u->copy_device = r->dst.kind == NVL_DST_DEVICE;
        }
        u->len = len;
        cr->pos += len;
        if (cr->pos == s->dev_bytes) {
            cr->pos = 0;
            if (++cr->span == r->n_span)
                cr->cut = true;
        }
        cr->active++;
        return u;
    }
    return NULL;
}

static void cmd_put(struct cpu_nvme *c, struct cmd *k)
{
    k->in_use = false;
    k->abandoned = false;
    k->u = NULL;
    k->next = c->free_cmds;
    c->free_cmds = k;
    c->cmds_in_use--;
}

/* Completion callback, on the thread that polls (or resets) the queue pair. */
static void cmd_done(void *arg, int err, uint16_t nvme_status)
{
    struct cmd *k = arg;
    struct unit *u = k->u;
    struct cpu_nvme *c;

    c = k->c;
    if (k->abandoned) {
        /* The read it belonged to already failed; only the bookkeeping is left. */
        cmd_put(c, k);
        return;
    }
    if (err && !u->err) {
        u->err = err == -ECANCELED ? -EIO : err;
        u->status = nvme_status;
    }
    u->active--;
    cmd_put(c, k);
    if (u->active == 0 && u->cut == u->len) {
        u->next = c->done;
        c->done = u;
    }
}

/* Chooses a queue pair with room, round robin. -1 when every one is at depth. */
static int qp_pick(struct cpu_nvme *c)
{
    for (uint32_t i = 0; i < c->n_qp; i++) {
        uint32_t q = (c->next_qp + i) % c->n_qp;

        if (nvl_qpair_outstanding(c->qp[q]) < c->depth) {
            c->next_qp = (q + 1) % c->n_qp;
            return (int)q;
        }
    }
    return -1;
}

/* Submits commands while there are units to cut and room on the queues. Returns the number
 * submitted. */
static uint32_t submit_some(struct cpu_nvme *c)
{
    struct nvl_loader *l = c->loader;
    uint32_t n = 0;

    while (c->free_cmds) {
        struct unit *u = c->cutting;
        uint64_t len, prp1, prp2;
        struct cmd *k;
        int q, rc;

        if (!u) {
            u = c->cutting = unit_cut(c);
            if (!u)
                break;
        }
        q = qp_pick(c);
        if (q < 0)
            break;
        /* The command's PRPs come from the slot's list built at create time. */
        len = nvl__slot_cmd_bytes(u->slot_off + u->cut, min_u64(c->max_cmd, u->len - u->cut));
        nvl__slot_prp(u->slot, u->slot_off + u->cut, len, &prp1, &prp2);
        k = c->free_cmds;
        rc = nvl_qpair_submit_read_prp(c->qp[q], (u->dev_off + u->cut) / l->block_size,
                                       (uint32_t)(len / l->block_size), prp1, prp2, cmd_done, k);
        if (rc == -EAGAIN)
            break; /* the SQ has no free slot until the controller's sqhd moves: poll first */
        if (rc) {
            if (!u->err)
                u->err = rc;
            u->cut = u->len;
        } else {
            c->free_cmds = k->next;
            k->u = u;
            k->in_use = true;
            k->t_submit = nvl__now();
            c->cmds_in_use++;
            u->active++;
            u->cut += len;
            atomic_fetch_add(&u->r->commands, 1);
            n++;
        }
        if (u->cut == u->len) {
            c->cutting = NULL;
            if (u->active == 0) {
                u->next = c->done;
                c->done = u;
            }
        }
    }
    for (uint32_t q = 0; q < c->n_qp; q++)
        nvl_qpair_flush_sq(c->qp[q]);
    return n;
}

static void read_done_check(struct cpu_nvme *c, struct nvl_read *r);

/* Finishes units whose commands have all completed: copy-out, bounce release, read progress. */
static void units_finish(struct cpu_nvme *c)
{
    while (c->done) {
        struct unit *u = c->done;
        struct nvl_read *r = u->r;
        struct cpu_read *cr = r->be_priv;

        c->done = u->next;
        if (!u->err && u->copy_len) {
            const uint8_t *src = u->slot->host + u->copy_from;

            if (u->copy_device)
                u->err = nvl__cuda_memcpy_h2d(u->copy_to, src, u->copy_len);
            else
                memcpy(u->copy_to, src, u->copy_len);
        }
        if (u->err && !cr->err) {
            cr->err = u->err;
            cr->status = u->status;
            cr->cut = true; /* cut no more of a failed read */
        }
        cr->active--;
        unit_free(c, u);
        read_done_check(c, r);
    }
}

static void active_remove(struct cpu_nvme *c, struct nvl_read *r)
{
    struct nvl_read *prev = NULL;

    for (struct nvl_read *x = c->active_head; x; x = ((struct cpu_read *)x->be_priv)->next) {
        if (x == r) {
            struct nvl_read *next = ((struct cpu_read *)r->be_priv)->next;

            if (prev)
                ((struct cpu_read *)prev->be_priv)->next = next;
            else
                c->active_head = next;
            if (c->active_tail == r)
                c->active_tail = prev;
            return;
        }
        prev = x;
    }
}

static void read_done_check(struct cpu_nvme *c, struct nvl_read *r)
{
    struct cpu_read *cr = r->be_priv;
    int err;
    uint16_t status;

    if (!cr->cut || cr->active)
        return;
    active_remove(c, r);
    err = cr->err;
    status = cr->status;
    free(cr);
    r->be_priv = NULL;
    nvl__read_complete(r, err, status);
}

/* Fails every read the thread holds with err, abandoning commands in flight. */
static void fail_all(struct cpu_nvme *c, int err)
{
    c->failed = true;
    c->fail_err = err;
    for (uint32_t i = 0; i < c->n_qp * c->depth; i++) {
        struct cmd *k = &c->cmds[i];

        if (k->in_use) {
            k->abandoned = true;
            k->u = NULL;
        }
    }
    c->cutting = NULL;
    c->done = NULL;
    while (c->live)
        unit_free(c, c->live);
    while (c->active_head) {
        struct nvl_read *r = c->active_head;
        struct cpu_read *cr = r->be_priv;

        c->active_head = cr->next;
        free(cr);
        r->be_priv = NULL;
        nvl__read_complete(r, err, 0);
    }
    c->active_tail = NULL;
}

/* ---- the thread ----------------------------------------------------------------------------*/

/* Polls every queue pair once. Returns completions reaped, or -ENXIO when the controller is
 * fatal or misbehaving. */
static int poll_all(struct cpu_nvme *c)
{
    int n = 0;

    for (uint32_t q = 0; q < c->n_qp; q++) {
        int rc = nvl_qpair_poll(c->qp[q], 0);

        if (rc < 0) {
            nvl_log_error(NVL_LOADER_WHO, "%s: queue %u: %s; the controller needs a reset",
                          nvl_ctrl_name(c->ctrl), q + 1, nvl_strerror(rc));
            return -ENXIO;
        }
        n += rc;
    }
    return n;
}

static bool ctrl_fatal(struct cpu_nvme *c)
{
    struct nvl_transport *t = nvl_ctrl_transport(c->ctrl);
    uint32_t csts = nvl_mmio_read32(t->bar0, NVME_REG_CSTS);

    /* All ones: the device fell off the bus. */
    return csts == 0xffffffffu || (csts & NVME_CSTS_CFS);
}

/* The oldest command in flight, in seconds since submission; 0 when none. */
static double oldest_cmd_age(struct cpu_nvme *c, double now)
{
    double oldest = 0;

    for (uint32_t i = 0; i < c->n_qp * c->depth; i++) {
        const struct cmd *k = &c->cmds[i];

        if (k->in_use && !k->abandoned && now - k->t_submit > oldest)
            oldest = now - k->t_submit;
    }
    return oldest;
}

static void take_pending(struct cpu_nvme *c)
{
    while (c->pending_head) {
        struct nvl_read *r = c->pending_head;
        struct cpu_read *cr = r->be_priv;

        c->pending_head = cr->next;
        cr->next = NULL;
        if (c->failed) {
            free(cr);
            r->be_priv = NULL;
            nvl__read_complete(r, -EIO, 0);
            continue;
        }
        if (c->active_tail)
            ((struct cpu_read *)c->active_tail->be_priv)->next = r;
        else
            c->active_head = r;
        c->active_tail = r;
    }
    c->pending_tail = NULL;
}

static void *cpu_nvme_main(void *arg)
{
    struct cpu_nvme *c = arg;
    const double timeout = c->loader->opts.timeout_ms / 1000.0;
    double last_progress = nvl__now(), last_csts = 0;
    uint32_t idle = 0;

    for (;;) {
        int reaped;

        pthread_mutex_lock(&c->lock);
        for (;;) {
            if (c->pause_req) {
                c->paused = true;
                pthread_cond_broadcast(&c->cond);
                while (c->pause_req)
                    pthread_cond_wait(&c->cond, &c->lock);
                c->paused = false;
                continue;
            }
            if (c->stop || c->pending_head || c->active_head || c->cmds_in_use)
                break;
            pthread_cond_wait(&c->cond, &c->lock);
            last_progress = nvl__now();
        }
        if (c->stop && !c->pending_head && !c->active_head) {
            pthread_mutex_unlock(&c->lock);
            break;
        }
        take_pending(c);
        pthread_mutex_unlock(&c->lock);

        if (c->failed) {
            /* Only abandoned commands are left: wait for the reset, do not touch the queues. */
            struct timespec ts = {0, 1000000};

            nanosleep(&ts, NULL);
            continue;
        }
        submit_some(c);
        reaped = poll_all(c);
        if (reaped < 0) {
            fail_all(c, -ENXIO);
            continue;
        }
        units_finish(c);
        if (reaped > 0) {
            last_progress = nvl__now();
            idle = 0;
            continue;
        }
        if (!c->cmds_in_use)
            continue;
        /* No completion this pass: back off gradually, and check for a dead controller. */
        if (++idle > SPIN_PASSES) {
            double now = nvl__now();

            if (idle > 4 * SPIN_PASSES) {
                struct timespec ts = {0, 20000};

                nanosleep(&ts, NULL);
            } else {
                sched_yield();
            }
            if (now - last_csts > CSTS_CHECK_S) {
                last_csts = now;
                if (ctrl_fatal(c)) {
                    nvl_log_error(NVL_LOADER_WHO,
                                  "%s: controller fatal status (CSTS.CFS); reads fail, the "
                                  "controller needs a reset",
                                  nvl_ctrl_name(c->ctrl));
                    fail_all(c, -ENXIO);
                    continue;
                }
            }
            if (now - last_progress > timeout && oldest_cmd_age(c, now) > timeout) {
                nvl_log_error(NVL_LOADER_WHO,
                              "%s: a command got no completion in %u ms (lost completion); "
                              "reads fail, the controller needs a reset",
                              nvl_ctrl_name(c->ctrl), c->loader->opts.timeout_ms);
                fail_all(c, -ETIMEDOUT);
            }
        }
    }
    return NULL;
}

/* ---- backend ops ---------------------------------------------------------------------------*/

static void cpu_nvme_free(struct cpu_nvme *c)
{
    free(c->cmds);
    free(c->qp);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int cpu_nvme_create(struct nvl_loader *l)
{
    const struct nvl_ctrl_info *in = nvl_ctrl_get_info(l->opts.ctrl);
    struct cpu_nvme *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        return -ENOMEM;
    c->loader = l;
    c->ctrl = l->opts.ctrl;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    if (l->opts.first_queue >= nvl_ctrl_qpair_count(c->ctrl)) {
        nvl_log_error(NVL_LOADER_WHO, "%s: first_queue %u, but the controller has %u I/O queues",
                      nvl_ctrl_name(c->ctrl), l->opts.first_queue, nvl_ctrl_qpair_count(c->ctrl));
        rc = -EINVAL;
        goto err_free;
    }
    c->n_qp = nvl_ctrl_qpair_count(c->ctrl) - l->opts.first_queue;
    if (l->opts.n_queues < c->n_qp)
        c->n_qp = l->opts.n_queues;
    /* A queue of d entries holds at most d - 1 commands. */
    c->depth =
        l->opts.queue_depth < in->io_queue_depth - 1 ? l->opts.queue_depth : in->io_queue_depth - 1;
    c->max_cmd = in->max_transfer / l->block_size * l->block_size;
    if (l->n_bounce > sizeof(c->bounce_busy) || c->max_cmd == 0) {
        rc = -EINVAL;
        goto err_free;
    }
    c->qp = calloc(c->n_qp, sizeof(*c->qp));
    c->cmds = calloc((size_t)c->n_qp * c->depth, sizeof(*c->cmds));
    if (!c->qp || !c->cmds) {
        rc = -ENOMEM;
        goto err_free;
    }
    for (uint32_t q = 0; q < c->n_qp; q++) {
        c->qp[q] = nvl_ctrl_qpair(c->ctrl, l->opts.first_queue + q);
        if (!c->qp[q] || nvl_qpair_is_claimed(c->qp[q])) {
            nvl_log_error(NVL_LOADER_WHO,
                          "%s: I/O queue %u is missing or claimed by another "
                          "engine",
                          nvl_ctrl_name(c->ctrl), q + 1);
            rc = -EBUSY;
            goto err_free;
        }
    }
    for (uint32_t i = 0; i < c->n_qp * c->depth; i++) {
        c->cmds[i].c = c;
        c->cmds[i].next = c->free_cmds;
        c->free_cmds = &c->cmds[i];
    }
    rc = pthread_create(&c->thread, NULL, cpu_nvme_main, c);
    if (rc) {
        rc = -rc;
        goto err_free;
    }
    l->be = c;
    nvl__reason_append(
        l, "%u queue pairs x %u commands of up to %u KiB, %u-byte blocks, %llu bytes", c->n_qp,
        c->depth, c->max_cmd >> 10, l->block_size, (unsigned long long)l->capacity);
    return 0;

err_free:
    cpu_nvme_free(c);
    return rc;
}

static void cpu_nvme_destroy(struct nvl_loader *l)
{
    struct cpu_nvme *c = l->be;

    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    if (c->cmds_in_use)
        nvl_log_warn(NVL_LOADER_WHO,
                     "%s: %u abandoned commands still outstanding at close; reset or destroy "
                     "the controller before reusing its queues",
                     nvl_ctrl_name(c->ctrl), c->cmds_in_use);
    cpu_nvme_free(c);
    l->be = NULL;
}

static int cpu_nvme_submit(struct nvl_loader *l, struct nvl_read *r)
{
    struct cpu_nvme *c = l->be;
    struct cpu_read *cr = calloc(1, sizeof(*cr));

    if (!cr)
        return -ENOMEM;
    r->be_priv = cr;
    pthread_mutex_lock(&c->lock);
    if (c->pending_tail)
        ((struct cpu_read *)c->pending_tail->be_priv)->next = r;
    else
        c->pending_head = r;
    c->pending_tail = r;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* Pauses the thread, resets the controller (which cancels abandoned commands through their
 * callbacks), and lets the thread go on with clean queues. */
static int cpu_nvme_reset(struct nvl_loader *l)
{
    struct cpu_nvme *c = l->be;
    int rc;

    pthread_mutex_lock(&c->lock);
    c->pause_req = true;
    pthread_cond_broadcast(&c->cond);
    while (!c->paused)
        pthread_cond_wait(&c->cond, &c->lock);
    pthread_mutex_unlock(&c->lock);

    if (!c->failed)
        fail_all(c, -EIO);
    rc = nvl_ctrl_reset(c->ctrl);
    if (rc == 0) {
        /* Commands the reset did not report are gone with the old queues. */
        for (uint32_t i = 0; i < c->n_qp * c->depth; i++) {
            if (c->cmds[i].in_use)
                cmd_put(c, &c->cmds[i]);
        }
        c->failed = false;
        c->fail_err = 0;
    } else {
        nvl_log_error(NVL_LOADER_WHO, "%s: reset failed: %s", nvl_ctrl_name(c->ctrl),
                      nvl_strerror(rc));
    }

    pthread_mutex_lock(&c->lock);
    c->pause_req = false;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

const struct nvl_backend_ops nvl__backend_cpu_nvme = {
    .kind = NVL_LOADER_CPU_NVME,
    .name = "cpu-nvme",
    .probe = cpu_nvme_probe,
    .create = cpu_nvme_create,
    .destroy = cpu_nvme_destroy,
    .submit = cpu_nvme_submit,
    .reset = cpu_nvme_reset,
#ifdef NVL_HAVE_CUDA
    .caps = NVL_BACKEND_NEEDS_CTRL | NVL_BACKEND_DEVICE_DST,
#else
    .caps = NVL_BACKEND_NEEDS_CTRL,
#endif
};
