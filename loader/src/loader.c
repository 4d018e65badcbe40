/* The loader core: options, backend selection, staging slots, read handles and statistics.
 * The backends (backend_*.c) move the bytes; see backend.h for the split. */
#include "backend.h"
#include "cuda_glue.h"
#include "slots.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIB (1024ull * 1024ull)

/* Reads in flight at once (handles not yet waited for); bounded by the completion-word bitmap. */
#define NVL_LOADER_MAX_READS 64u
/* Extents in one read; a layer has a few dozen tensors, this leaves ample room. */
#define NVL_LOADER_MAX_EXTENTS (1u << 20)

static const char *const backend_names[NVL_LOADER_BACKEND_COUNT] = {
    [NVL_LOADER_AUTO] = "auto",         [NVL_LOADER_GPU_NVME] = "gpu-nvme",
    [NVL_LOADER_CPU_NVME] = "cpu-nvme", [NVL_LOADER_GDS] = "gds",
    [NVL_LOADER_FILE] = "file",
};

/* Auto-selection order: fastest first. */
static const enum nvl_loader_backend auto_order[] = {
    NVL_LOADER_GPU_NVME,
    NVL_LOADER_GDS,
    NVL_LOADER_CPU_NVME,
    NVL_LOADER_FILE,
};

const char *nvl_loader_backend_str(enum nvl_loader_backend b)
{
    if ((unsigned)b >= NVL_LOADER_BACKEND_COUNT)
        return NULL;
    return backend_names[b];
}

int nvl_loader_backend_parse(const char *name, enum nvl_loader_backend *out)
{
    if (!name)
        return -EINVAL;
    for (unsigned i = 0; i < NVL_LOADER_BACKEND_COUNT; i++) {
        if (!strcmp(name, backend_names[i])) {
            *out = (enum nvl_loader_backend)i;
            return 0;
        }
    }
    return -EINVAL;
}

static const struct nvl_backend_ops *backend_ops(enum nvl_loader_backend b)
{
    switch (b) {
#ifdef NVL_HAVE_CUDA
    case NVL_LOADER_GPU_NVME:
        return &nvl__backend_gpu_nvme;
#endif
    case NVL_LOADER_CPU_NVME:
        return &nvl__backend_cpu_nvme;
    case NVL_LOADER_GDS:
        return &nvl__backend_gds;
    case NVL_LOADER_FILE:
        return &nvl__backend_file;
    default:
        return NULL;
    }
}

double nvl__now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double nvl__cpu_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void nvl__reason_append(struct nvl_loader *l, const char *fmt, ...)
{
    size_t used = strlen(l->reason);
    va_list ap;

    if (used + 3 > sizeof(l->reason))
        return;
    memcpy(l->reason + used, "; ", 3);
    used += 2;
    va_start(ap, fmt);
    vsnprintf(l->reason + used, sizeof(l->reason) - used, fmt, ap);
    va_end(ap);
}

int nvl__probe_ctrl(const struct nvl_loader_opts *o, char *why, size_t why_len)
{
    if (!o->ctrl) {
        snprintf(why, why_len, "no NVMe target (no controller given)");
        return -ENODEV;
    }
    if (nvl_ctrl_get_state(o->ctrl) != NVL_CTRL_READY) {
        snprintf(why, why_len, "controller %s not ready (%s)", nvl_ctrl_name(o->ctrl),
                 nvl_ctrl_state_name(nvl_ctrl_get_state(o->ctrl)));
        return -ENODEV;
    }
    return 0;
}

void nvl_loader_opts_init(struct nvl_loader_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->backend = NVL_LOADER_AUTO;
    o->n_slots = 2;
    o->slot_bytes = 64 * MIB;
    o->n_queues = 4;
    o->queue_depth = 64;
    o->cuda_device = 0;
    o->timeout_ms = 5000;
}

int nvl_loader_probe(enum nvl_loader_backend b, const struct nvl_loader_opts *o, char *why,
                     size_t why_len)
{
    const struct nvl_backend_ops *ops;

    if (why_len)
        why[0] = '\0';
    if (b == NVL_LOADER_GPU_NVME && !backend_ops(b)) {
        snprintf(why, why_len, "not built (nvload was compiled without CUDA)");
        return -ENODEV;
    }
    ops = backend_ops(b);
    if (!ops) {
        snprintf(why, why_len, "unknown backend %d", (int)b);
        return -EINVAL;
    }
    return ops->probe(o, why, why_len);
}

/* Appends "; name: text" to buf (of size len). */
static void reason_add(char *buf, size_t len, const char *name, const char *text)
{
    const char *parts[4] = {strlen(buf) ? "; " : "", name, ": ", text};
    size_t used = strlen(buf);

    for (unsigned i = 0; i < 4; i++) {
        size_t n = strlen(parts[i]);

        if (used + n >= len)
            n = len - 1 - used;
        memcpy(buf + used, parts[i], n);
        used += n;
    }
    buf[used] = '\0';
}

/* Picks the backend: the forced one, or the first usable one in auto_order. A probe that answers
 * 1 is usable but degraded (gds in compatibility mode is a POSIX bounce path); such a backend is
 * taken only when no other one is usable. */
static int backend_select(struct nvl_loader *l)
{
    char why[NVL_LOADER_BACKEND_COUNT][256];
    int rc[NVL_LOADER_BACKEND_COUNT];
    int pick = -1;

    if (l->opts.backend != NVL_LOADER_AUTO) {
        int r = nvl_loader_probe(l->opts.backend, &l->opts, why[0], sizeof(why[0]));

        if (r < 0) {
            nvl_log_error(NVL_LOADER_WHO, "backend %s cannot run: %s",
                          nvl_loader_backend_str(l->opts.backend), why[0]);
            return r == -EINVAL ? r : -ENODEV;
        }
        l->ops = backend_ops(l->opts.backend);
        snprintf(l->reason, sizeof(l->reason), "%s (forced): %s", l->ops->name, why[0]);
        return 0;
    }

    for (unsigned i = 0; i < sizeof(auto_order) / sizeof(auto_order[0]); i++) {
        enum nvl_loader_backend b = auto_order[i];

        rc[b] = nvl_loader_probe(b, &l->opts, why[b], sizeof(why[b]));
        if (rc[b] == 0 && pick < 0)
            pick = (int)b;
    }
    for (unsigned i = 0; pick < 0 && i < sizeof(auto_order) / sizeof(auto_order[0]); i++) {
        if (rc[auto_order[i]] == 1)
            pick = (int)auto_order[i];
    }
    if (pick < 0) {
        for (unsigned i = 0; i < sizeof(auto_order) / sizeof(auto_order[0]); i++) {
            enum nvl_loader_backend b = auto_order[i];

            reason_add(l->reason, sizeof(l->reason), backend_names[b], why[b]);
        }
        nvl_log_error(NVL_LOADER_WHO, "no usable backend: %s", l->reason);
        return -ENODEV;
    }
    l->ops = backend_ops((enum nvl_loader_backend)pick);
    snprintf(l->reason, sizeof(l->reason), "%s (auto): %s", l->ops->name, why[pick]);
    for (unsigned i = 0; i < sizeof(auto_order) / sizeof(auto_order[0]); i++) {
        enum nvl_loader_backend b = auto_order[i];
        char text[300];

        if ((int)b == pick)
            continue;
        snprintf(text, sizeof(text), "%s%s",
                 rc[b] == 0 || rc[b] == 1 ? "usable but ranked lower: " : "not usable: ", why[b]);
        reason_add(l->reason_rest, sizeof(l->reason_rest), backend_names[b], text);
    }
    return 0;
}

static int opts_fill(struct nvl_loader *l, const struct nvl_loader_opts *o)
{
    l->opts = *o;
    if (!l->opts.n_slots)
        l->opts.n_slots = 2;
    if (!l->opts.slot_bytes)
        l->opts.slot_bytes = 64 * MIB;
    if (!l->opts.n_queues)
        l->opts.n_queues = 4;
    if (!l->opts.queue_depth)
        l->opts.queue_depth = 64;
    if (!l->opts.timeout_ms)
        l->opts.timeout_ms = 5000;
    if (l->opts.n_slots > 64 || l->opts.n_queues > 256 || l->opts.queue_depth < 2 ||
        l->opts.queue_depth > 65536 || l->opts.slot_bytes > (64ull << 30)) {
        nvl_log_error(NVL_LOADER_WHO,
                      "options out of range: %u slots (max 64), %u queues (max 256), depth %u "
                      "(2..65536), slot %llu bytes (max 64 GiB)",
                      l->opts.n_slots, l->opts.n_queues, l->opts.queue_depth,
                      (unsigned long long)l->opts.slot_bytes);
        return -EINVAL;
    }
    /* Slots are mapped in 2 MiB units so they can sit on huge pages. */
    l->opts.slot_bytes = (l->opts.slot_bytes + 2 * MIB - 1) & ~(2 * MIB - 1);
    if (o->path) {
        l->path_copy = strdup(o->path);
        if (!l->path_copy)
            return -ENOMEM;
        l->opts.path = l->path_copy;
    }
    return 0;
}

static int words_alloc(struct nvl_loader *l)
{
    void *host = NULL, *dev = NULL;

    l->n_words = NVL_LOADER_MAX_READS;
    l->words_free = ~0ull;
    if (nvl__cuda_host_alloc(l->n_words * sizeof(uint32_t), &host, &dev) == 0) {
        l->words = host;
        l->words_dev = dev;
        l->words_pinned = true;
        return 0;
    }
    l->words = calloc(l->n_words, sizeof(uint32_t));
    return l->words ? 0 : -ENOMEM;
}

static void words_free(struct nvl_loader *l)
{
    if (l->words_pinned)
        nvl__cuda_host_free(l->words);
    else
        free(l->words);
    l->words = NULL;
}

int nvl_loader_create(const struct nvl_loader_opts *o, struct nvl_loader **out)
{
    struct nvl_loader *l;
    int rc;

    *out = NULL;
    if (!o)
        return -EINVAL;
    l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    rc = opts_fill(l, o);
    if (rc)
        goto err_free;
    rc = backend_select(l);
    if (rc)
        goto err_free;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    atomic_init(&l->needs_reset, false);
    rc = words_alloc(l);
    if (rc)
        goto err_destroy_lock;
    if (l->ops->caps & NVL_BACKEND_NEEDS_CTRL) {
        rc = nvl__target_nvme_info(l);
        if (rc)
            goto err_free_words;
    }
    rc = nvl__slots_create(l);
    if (rc)
        goto err_free_words;
    rc = l->ops->create(l);
    if (rc) {
        nvl_log_error(NVL_LOADER_WHO, "backend %s failed to start: %s", l->ops->name,
                      nvl_strerror(rc));
        goto err_destroy_slots;
    }
    if (!l->block_size || !l->capacity) {
        nvl_log_error(NVL_LOADER_WHO, "backend %s reported no block size or capacity",
                      l->ops->name);
        rc = -EIO;
        goto err_destroy_backend;
    }
    if (l->reason_rest[0])
        reason_add(l->reason, sizeof(l->reason), "not chosen", l->reason_rest);
    nvl_log_info(NVL_LOADER_WHO, "backend %s", l->reason);
    *out = l;
    return 0;

err_destroy_backend:
    l->ops->destroy(l);
err_destroy_slots:
    nvl__slots_destroy(l);
err_free_words:
    words_free(l);
err_destroy_lock:
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
err_free:
    free(l->path_copy);
    free(l);
    return rc;
}

void nvl_loader_destroy(struct nvl_loader *l)
{
    if (!l)
        return;
    /* Reads the caller never waited for are finished and freed here. */
    while (l->reads)
        nvl_loader_wait(l->reads, NULL);
    l->ops->destroy(l);
    nvl__slots_destroy(l);
    words_free(l);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    free(l->path_copy);
    free(l);
}

enum nvl_loader_backend nvl_loader_backend(const struct nvl_loader *l)
{
    return l->ops->kind;
}

const char *nvl_loader_backend_name(const struct nvl_loader *l)
{
    return l->ops->name;
}

const char *nvl_loader_reason(const struct nvl_loader *l)
{
    return l->reason;
}

uint64_t nvl_loader_capacity(const struct nvl_loader *l)
{
    return l->capacity;
}

uint32_t nvl_loader_block_size(const struct nvl_loader *l)
{
    return l->block_size;
}

uint32_t nvl_loader_slot_count(const struct nvl_loader *l)
{
    return l->opts.n_slots;
}

uint64_t nvl_loader_slot_bytes(const struct nvl_loader *l)
{
    return l->opts.slot_bytes;
}

void *nvl_loader_slot_host(const struct nvl_loader *l, uint32_t slot)
{
    return slot < l->opts.n_slots ? l->slots[slot].host : NULL;
}

void *nvl_loader_slot_device(const struct nvl_loader *l, uint32_t slot)
{
    return slot < l->opts.n_slots ? l->slots[slot].device : NULL;
}

bool nvl_loader_needs_reset(const struct nvl_loader *l)
{
    return atomic_load(&((struct nvl_loader *)l)->needs_reset);
}

int nvl_loader_reset(struct nvl_loader *l)
{
    int rc;

    if (!l->ops->reset)
        return -ENOTSUP;
    /* Reads still in flight cannot complete on a controller being reset; the backend fails them
     * from its reset path. */
    rc = l->ops->reset(l);
    if (rc == 0)
        atomic_store(&l->needs_reset, false);
    return rc;
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

/* Checks the arguments and fills r's spans and layout. */
static int read_plan(struct nvl_loader *l, struct nvl_read *r, const struct nvl_extent *ext,
                     uint32_t n_ext)
{
    const uint64_t bs = l->block_size;
    uint64_t pos = 0;

    for (uint32_t i = 0; i < n_ext; i++) {
        struct nvl_span *s = &r->span[i];
        uint64_t end;

        if (ext[i].len == 0) {
            nvl_log_error(NVL_LOADER_WHO, "extent %u has zero length", i);
            return -EINVAL;
        }
        if (__builtin_add_overflow(ext[i].offset, ext[i].len, &end) || end > l->capacity) {
            nvl_log_error(NVL_LOADER_WHO,
                          "extent %u [%llu, +%llu) runs past the end of the target (%llu bytes)", i,
                          (unsigned long long)ext[i].offset, (unsigned long long)ext[i].len,
                          (unsigned long long)l->capacity);
            return -ERANGE;
        }
        s->dev_offset = ext[i].offset / bs * bs;
        s->dev_bytes = round_up(end, bs) - s->dev_offset;
        s->skip = ext[i].offset - s->dev_offset;
        s->len = ext[i].len;
        if (r->dst.kind == NVL_DST_SLOT) {
            s->dst_offset = pos;
            pos += round_up(s->dev_bytes, NVL_SLOT_ALIGN);
        } else {
            s->dst_offset = pos;
            pos += s->len;
        }
        r->bytes += s->len;
        r->device_bytes += s->dev_bytes;
    }
    if (r->dst.kind == NVL_DST_SLOT) {
        if (pos > l->slots[r->dst.slot].bytes) {
            nvl_log_error(NVL_LOADER_WHO,
                          "read needs %llu bytes of slot space, slots hold %llu (raise "
                          "slot_bytes)",
                          (unsigned long long)pos, (unsigned long long)l->slots[r->dst.slot].bytes);
            return -ENOSPC;
        }
    } else if (pos > r->dst.bytes) {
        nvl_log_error(NVL_LOADER_WHO, "read of %llu bytes does not fit a %llu-byte destination",
                      (unsigned long long)pos, (unsigned long long)r->dst.bytes);
        return -ENOSPC;
    }
    return 0;
}

static int dst_check(struct nvl_loader *l, const struct nvl_dst *dst)
{
    switch (dst->kind) {
    case NVL_DST_HOST:
        return dst->ptr ? 0 : -EINVAL;
    case NVL_DST_DEVICE:
        if (!dst->ptr)
            return -EINVAL;
        if (!(l->ops->caps & NVL_BACKEND_DEVICE_DST)) {
            nvl_log_error(NVL_LOADER_WHO, "backend %s cannot read into device memory here",
                          l->ops->name);
            return -ENOTSUP;
        }
        return 0;
    case NVL_DST_SLOT:
        if (dst->slot >= l->opts.n_slots) {
            nvl_log_error(NVL_LOADER_WHO, "slot %u out of range (%u slots)", dst->slot,
                          l->opts.n_slots);
            return -EINVAL;
        }
        return 0;
    default:
        return -EINVAL;
    }
}

static void read_link(struct nvl_loader *l, struct nvl_read *r)
{
    r->next = l->reads;
    r->prev = NULL;
    if (l->reads)
        l->reads->prev = r;
    l->reads = r;
}

static void read_unlink(struct nvl_loader *l, struct nvl_read *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->reads = r->next;
    if (r->next)
        r->next->prev = r->prev;
}

int nvl_loader_read_async(struct nvl_loader *l, const struct nvl_extent *ext, uint32_t n_ext,
                          struct nvl_dst dst, struct nvl_read **out)
{
    struct nvl_read *r;
    int rc;

    *out = NULL;
    if (!ext || n_ext == 0 || n_ext > NVL_LOADER_MAX_EXTENTS) {
        nvl_log_error(NVL_LOADER_WHO, "a read needs 1..%u extents, got %u", NVL_LOADER_MAX_EXTENTS,
                      n_ext);
        return -EINVAL;
    }
    if (atomic_load(&l->needs_reset)) {
        nvl_log_error(NVL_LOADER_WHO, "controller needs a reset before more reads");
        return -EIO;
    }
    rc = dst_check(l, &dst);
    if (rc)
        return rc;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->span = calloc(n_ext, sizeof(*r->span));
    if (!r->span) {
        rc = -ENOMEM;
        goto err_free_read;
    }
    r->loader = l;
    r->dst = dst;
    r->n_span = n_ext;
    rc = read_plan(l, r, ext, n_ext);
    if (rc)
        goto err_free_spans;

    pthread_mutex_lock(&l->lock);
    if (dst.kind == NVL_DST_SLOT && l->slots[dst.slot].busy) {
        pthread_mutex_unlock(&l->lock);
        nvl_log_error(NVL_LOADER_WHO, "slot %u is still the target of an unfinished read",
                      dst.slot);
        rc = -EBUSY;
        goto err_free_spans;
    }
    if (!l->words_free) {
        pthread_mutex_unlock(&l->lock);
        nvl_log_error(NVL_LOADER_WHO, "%u reads in flight; wait for some first",
                      NVL_LOADER_MAX_READS);
        rc = -EAGAIN;
        goto err_free_spans;
    }
    r->word = (uint32_t)__builtin_ctzll(l->words_free);
    l->words_free &= ~(1ull << r->word);
    r->value = ++l->seq;
    if (dst.kind == NVL_DST_SLOT)
        l->slots[dst.slot].busy = true;
    read_link(l, r);
    pthread_mutex_unlock(&l->lock);

    atomic_init(&r->done, 0);
    atomic_init(&r->commands, 0);
    r->t_start = nvl__now();
    r->cpu_start = nvl__cpu_now();
    rc = l->ops->submit(l, r);
    if (rc) {
        nvl_log_error(NVL_LOADER_WHO, "%s: submit failed: %s", l->ops->name, nvl_strerror(rc));
        goto err_release;
    }
    *out = r;
    return 0;

err_release:
    pthread_mutex_lock(&l->lock);
    read_unlink(l, r);
    l->words_free |= 1ull << r->word;
    if (dst.kind == NVL_DST_SLOT)
        l->slots[dst.slot].busy = false;
    pthread_mutex_unlock(&l->lock);
err_free_spans:
    free(r->span);
err_free_read:
    free(r);
    return rc;
}

void nvl__read_complete(struct nvl_read *r, int err, uint16_t nvme_status)
{
    struct nvl_loader *l = r->loader;

    pthread_mutex_lock(&l->lock);
    r->err = err;
    r->nvme_status = nvme_status;
    r->t_end = nvl__now();
    r->cpu_end = nvl__cpu_now();
    if (err == -ETIMEDOUT || err == -ENXIO)
        atomic_store(&l->needs_reset, true);
    /* The word advances on failure too: a GPU stream waiting on this read must never hang. The
     * CPU learns the outcome from nvl_loader_wait(). The release store orders the data the
     * backend wrote before it. */
    if (!(l->ops->caps & NVL_BACKEND_SETS_WORD))
        __atomic_store_n(&l->words[r->word], r->value, __ATOMIC_RELEASE);
    atomic_store_explicit(&r->done, 1, memory_order_release);
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

int nvl_read_poll(struct nvl_read *r)
{
    struct nvl_loader *l = r->loader;

    if (l->ops->poll)
        return l->ops->poll(l, r);
    return atomic_load_explicit(&r->done, memory_order_acquire) ? 0 : -EAGAIN;
}

int nvl_loader_wait(struct nvl_read *r, struct nvl_read_stats *st)
{
    struct nvl_loader *l = r->loader;
    int rc;

    if (l->ops->wait) {
        l->ops->wait(l, r);
    } else {
        pthread_mutex_lock(&l->lock);
        while (!atomic_load_explicit(&r->done, memory_order_acquire))
            pthread_cond_wait(&l->cond, &l->lock);
        pthread_mutex_unlock(&l->lock);
    }
    rc = r->err;
    if (st) {
        memset(st, 0, sizeof(*st));
        st->bytes = r->bytes;
        st->device_bytes = r->device_bytes;
        st->commands = atomic_load(&r->commands);
        st->seconds = r->t_end - r->t_start;
        st->gbps = st->seconds > 0 ? (double)r->bytes / st->seconds / 1e9 : 0;
        st->cpu_seconds = r->cpu_end - r->cpu_start;
        st->nvme_status = r->nvme_status;
    }
    pthread_mutex_lock(&l->lock);
    read_unlink(l, r);
    l->words_free |= 1ull << r->word;
    if (r->dst.kind == NVL_DST_SLOT)
        l->slots[r->dst.slot].busy = false;
    pthread_mutex_unlock(&l->lock);
    free(r->span);
    free(r);
    return rc;
}

uint64_t nvl_read_offset(const struct nvl_read *r, uint32_t i)
{
    if (i >= r->n_span)
        return UINT64_MAX;
    if (r->dst.kind == NVL_DST_SLOT)
        return r->span[i].dst_offset + r->span[i].skip;
    return r->span[i].dst_offset;
}

int nvl_read_gpu_word(const struct nvl_read *r, const uint32_t **word, uint32_t *value)
{
    const struct nvl_loader *l = r->loader;

    if (!l->words_dev)
        return -ENOTSUP;
    *word = &l->words_dev[r->word];
    *value = r->value;
    return 0;
}

int nvl_read_stream_wait(struct nvl_read *r, void *stream)
{
    const uint32_t *word;
    uint32_t value;
    int rc = nvl_read_gpu_word(r, &word, &value);

    if (rc)
        return rc;
    return nvl__cuda_stream_wait_word(stream, word, value);
}

int nvl_loader_load_layer(struct nvl_loader *l, uint64_t lba, uint64_t bytes, void *dst,
                          struct nvl_read_stats *st)
{
    struct nvl_extent e;
    struct nvl_read *r;
    struct nvl_dst d;
    int rc;

    if (__builtin_mul_overflow(lba, (uint64_t)l->block_size, &e.offset))
        return -ERANGE;
    e.len = bytes;
    d = nvl__cuda_is_device_ptr(dst) ? nvl_dst_device(dst, bytes) : nvl_dst_host(dst, bytes);
    rc = nvl_loader_read_async(l, &e, 1, d, &r);
    if (rc)
        return rc;
    return nvl_loader_wait(r, st);
}
