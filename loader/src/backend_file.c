/* file: O_DIRECT reads of a file or block device, deep enough to saturate an NVMe drive.
 *
 * One engine thread per loader turns reads into pieces of at most `chunk` bytes and keeps `depth`
 * of them in flight through io_uring (registered file, registered buffers for the slots and the
 * bounce pool). Where io_uring is unavailable (old kernel, seccomp, io_uring_disabled), a pool of
 * pread threads runs the same pieces; the selection reason says which engine runs.
 *
 * A piece lands straight in its destination when it can: always for slots (page-aligned, whole
 * blocks), and for host destinations where the block-aligned middle of an extent falls on a
 * suitably aligned address. Block heads and tails outside the requested bytes, misaligned host
 * destinations and device destinations go through the bounce pool and are copied out (memcpy, or
 * cudaMemcpy for device memory). */
#include "backend.h"
#include "cuda_glue.h"
#include "file_target.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_CHUNK     (1u << 20) /* bytes per read: large enough for full drive bandwidth */
#define FILE_MAX_DEPTH 256u
#define FILE_BOUNCE    16u /* bounce buffers of FILE_CHUNK bytes */

enum file_engine {
    FILE_ENGINE_URING,
    FILE_ENGINE_PREAD,
};

/* One read(2)-sized unit of work. */
struct piece {
    struct nvl_read *r;
    uint64_t dev_off; /* file offset */
    uint64_t len;     /* bytes to read */
    uint8_t *buf;     /* where the bytes land: the destination itself or a bounce buffer */
    int fixed;        /* registered-buffer index for buf, or -1 */
    int bounce;       /* bounce buffer index, or -1 */
    /* Copy-out from a bounce buffer: bytes [copy_from, copy_from + copy_len) of the piece go to
     * copy_to (host or device memory). */
    uint64_t copy_from;
    uint64_t copy_len;
    uint8_t *copy_to;
    bool copy_device;
    struct piece *next; /* free list / retry list */
};

/* Per-read progress, in r->be_priv. */
struct file_read {
    uint32_t span;   /* next span to cut pieces from */
    uint64_t pos;    /* next device byte of that span, relative to span.dev_offset */
    uint32_t active; /* pieces in flight */
    int err;         /* first error */
    bool cut;        /* every piece has been cut */
    struct file_read_link {
        struct nvl_read *next;
    } link;
};

struct file_be {
    int fd;
    bool direct;        /* fd is O_DIRECT */
    uint32_t mem_align; /* O_DIRECT buffer alignment */
    uint64_t capacity;  /* bytes in the file */
    uint32_t depth;     /* pieces in flight */
    enum file_engine engine;

    struct io_uring ring;
    bool ring_up;
    bool fixed_bufs; /* bounce pool = buffer 0, slot i = buffer 1 + i */
    bool fixed_file;

    uint8_t *bounce_mem; /* FILE_BOUNCE * FILE_CHUNK, page aligned */
    void *bounce_dev;    /* its CUDA mapping, so device copies are DMA from pinned memory */
    uint32_t bounce_free[FILE_BOUNCE];
    uint32_t n_bounce_free;

    struct piece *pieces; /* depth pieces */
    struct piece *free_pieces;
    struct piece *retry; /* short reads to finish before cutting new pieces */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct nvl_read *queue_head, *queue_tail; /* reads with pieces left to cut, in order */
    bool stop;
    uint32_t in_flight;
    pthread_t *threads;
    uint32_t n_threads;
    struct nvl_loader *loader;
};

static enum file_engine engine_wanted(void)
{
    const char *e = getenv("NVL_FILE_ENGINE");

    return e && !strcmp(e, "pread") ? FILE_ENGINE_PREAD : FILE_ENGINE_URING;
}

static int file_probe(const struct nvl_loader_opts *o, char *why, size_t why_len)
{
    struct stat st;
    uint64_t bytes;
    bool direct;
    int fd, rc;

    if (!o->path) {
        snprintf(why, why_len, "no file target (no path given)");
        return -ENODEV;
    }
    rc = nvl__file_open(o->path, &fd, &direct);
    if (rc) {
        snprintf(why, why_len, "cannot open %s: %s", o->path, strerror(-rc));
        return -ENODEV;
    }
    if (fstat(fd, &st) || nvl__file_size(fd, &st, &bytes)) {
        snprintf(why, why_len, "%s is neither a regular file nor a block device", o->path);
        close(fd);
        return -ENODEV;
    }
    close(fd);
    snprintf(why, why_len, "%s, %s", o->path,
             direct ? "O_DIRECT" : "buffered (the filesystem refuses O_DIRECT)");
    return 0;
}

/* ---- pieces ------------------------------------------------------------------------------ */

static struct piece *piece_get(struct file_be *f)
{
    struct piece *p = f->free_pieces;

    if (p)
        f->free_pieces = p->next;
    return p;
}

static void piece_put(struct file_be *f, struct piece *p)
{
    if (p->bounce >= 0)
        f->bounce_free[f->n_bounce_free++] = (uint32_t)p->bounce;
    p->next = f->free_pieces;
    f->free_pieces = p;
}

static void piece_to_bounce(struct file_be *f, struct piece *p)
{
    p->bounce = (int)f->bounce_free[--f->n_bounce_free];
    p->buf = f->bounce_mem + (uint64_t)p->bounce * FILE_CHUNK;
    p->fixed = f->fixed_bufs ? 0 : -1;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Marks r as fully cut and takes it off the queue of reads to cut. Only the queue's head is
 * ever being cut, and a read with pieces in flight is the head or already off the queue. */
static void read_cut_all(struct file_be *f, struct nvl_read *r)
{
    struct file_read *fr = r->be_priv;

    fr->cut = true;
    if (f->queue_head != r)
        return;
    f->queue_head = fr->link.next;
    if (!f->queue_head)
        f->queue_tail = NULL;
}

/* Cuts the next piece of r into p. Returns false when r has nothing left to cut or when the
 * piece would need a bounce buffer and none is free (the caller retries after a completion). */
static bool piece_cut(struct file_be *f, struct nvl_read *r, struct piece *p)
{
    struct file_read *fr = r->be_priv;
    const struct nvl_loader *l = f->loader;
    const struct nvl_span *s;
    uint64_t a, len;

    if (fr->cut)
        return false;
    s = &r->span[fr->span];
    a = s->dev_offset + fr->pos;
    len = min_u64(FILE_CHUNK, s->dev_bytes - fr->pos);
    p->r = r;
    p->bounce = -1;
    p->fixed = -1;
    p->copy_len = 0;

    if (r->dst.kind == NVL_DST_SLOT) {
        const struct nvl_slot *slot = &l->slots[r->dst.slot];

        p->buf = slot->host + s->dst_offset + fr->pos;
        p->fixed = f->fixed_bufs ? (int)(1 + r->dst.slot) : -1;
    } else {
        /* Device byte x of the payload goes to dst + dst_offset + (x - first), first being the
         * first requested byte. Bytes [lo, hi) are the payload's whole blocks. */
        const uint64_t bs = l->block_size;
        uint64_t first = s->dev_offset + s->skip, end = first + s->len;
        uint64_t lo = (first + bs - 1) / bs * bs, hi = end / bs * bs;
        uint8_t *at = (uint8_t *)r->dst.ptr + s->dst_offset + (a - first);
        bool direct_ok = r->dst.kind == NVL_DST_HOST && lo < hi && a >= lo && a < hi &&
                         ((uintptr_t)at % f->mem_align) == 0;

        if (direct_ok) {
            len = min_u64(len, hi - a);
            p->buf = at;
        } else {
            /* Bounce: a head or tail block, or a destination the file cannot DMA into. Stop a
             * bounce piece at lo so the aligned middle can still go direct. */
            if (r->dst.kind == NVL_DST_HOST && a < lo && lo < hi)
                len = min_u64(len, lo - a);
            if (!f->n_bounce_free)
                return false;
            piece_to_bounce(f, p);
            {
                uint64_t from = a < first ? first - a : 0;
                uint64_t to_end = min_u64(a + len, end);

                p->copy_from = from;
                p->copy_len = to_end > a + from ? to_end - (a + from) : 0;
                p->copy_to = (uint8_t *)r->dst.ptr + s->dst_offset + (a + from - first);
                p->copy_device = r->dst.kind == NVL_DST_DEVICE;
            }
        }
    }
    p->dev_off = a;
    p->len = len;
    fr->pos += len;
    if (fr->pos == s->dev_bytes) {
        fr->pos = 0;
        if (++fr->span == r->n_span)
            read_cut_all(f, r);
    }
    fr->active++;
    atomic_fetch_add(&r->commands, 1);
    return true;
}

/* Next piece to issue: a retry first, else a cut from the oldest read with pieces left. Called
 * with f->lock held. */
static struct piece *piece_next(struct file_be *f)
{
    struct piece *p;

    if (f->retry) {
        p = f->retry;
        f->retry = p->next;
        return p;
    }
    while (f->queue_head) {
        struct nvl_read *r = f->queue_head;
        struct file_read *fr = r->be_priv;

        if (!fr->cut) {
            p = piece_get(f);
            if (!p)
                return NULL;
            if (piece_cut(f, r, p))
                return p;
            piece_put(f, p);
            return NULL; /* no bounce buffer free: wait for a completion */
        }
        read_cut_all(f, r);
    }
    return NULL;
}

/* Copies a finished bounce piece out. Called without the lock: the memory is the piece's own. */
static int piece_copy_out(const struct piece *p)
{
    if (!p->copy_len)
        return 0;
    if (p->copy_device)
        return nvl__cuda_memcpy_h2d(p->copy_to, p->buf + p->copy_from, p->copy_len);
    memcpy(p->copy_to, p->buf + p->copy_from, p->copy_len);
    return 0;
}

/* Accounts a piece's result (bytes read, or -errno). Called with f->lock held. Returns the read
 * when it has completed, so the caller can report it after dropping the lock. */
static struct nvl_read *piece_done(struct file_be *f, struct piece *p, int64_t res, int copy_rc)
{
    struct nvl_read *r = p->r;
    struct file_read *fr = r->be_priv;

    if (res >= 0 && (uint64_t)res < p->len && p->dev_off + (uint64_t)res < f->capacity &&
        !fr->err) {
        /* A short read before the end of the file (rare: a signal, or a filesystem splitting the
         * request). A bounce piece is read again whole; a direct piece continues where it
         * stopped, which keeps O_DIRECT alignment when the kernel stopped on a block. */
        if (res == 0 || (p->bounce < 0 && (uint64_t)res % f->loader->block_size)) {
            fr->err = -EIO;
        } else {
            if (p->bounce < 0) {
                p->dev_off += (uint64_t)res;
                p->buf += res;
                p->len -= (uint64_t)res;
            }
            p->next = f->retry;
            f->retry = p;
            return NULL;
        }
    } else if (res < 0 && !fr->err) {
        fr->err = (int)res;
    }
    if (copy_rc && !fr->err)
        fr->err = copy_rc;
    /* Stop cutting new pieces of a failed read; the ones in flight still drain. */
    if (fr->err)
        read_cut_all(f, r);
    piece_put(f, p);
    if (--fr->active == 0 && fr->cut)
        return r;
    return NULL;
}

static void read_finish(struct nvl_read *r)
{
    struct file_read *fr = r->be_priv;
    int err = fr->err;

    free(fr);
    r->be_priv = NULL;
    nvl__read_complete(r, err, 0);
}

/* True when a piece's bytes are all there: read whole, or cut short by the end of the file. */
static bool piece_final(const struct file_be *f, const struct piece *p, int64_t res)
{
    return res >= 0 && ((uint64_t)res == p->len || p->dev_off + (uint64_t)res >= f->capacity);
}

/* ---- io_uring engine ---------------------------------------------------------------------- */

static void uring_prep(struct file_be *f, struct io_uring_sqe *sqe, struct piece *p)
{
    int fd = f->fixed_file ? 0 : f->fd;

    if (p->fixed >= 0)
        io_uring_prep_read_fixed(sqe, fd, p->buf, (unsigned)p->len, p->dev_off, p->fixed);
    else
        io_uring_prep_read(sqe, fd, p->buf, (unsigned)p->len, p->dev_off);
    if (f->fixed_file)
        sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, p);
}

/* Reaps every completion that is ready; blocks for the first one. */
static void uring_reap(struct file_be *f)
{
    struct io_uring_cqe *cqe;
    int rc;

    do
        rc = io_uring_wait_cqe(&f->ring, &cqe);
    while (rc == -EINTR);
    if (rc) {
        nvl_log_error(NVL_LOADER_WHO, "io_uring wait: %s", strerror(-rc));
        return;
    }
    while (io_uring_peek_cqe(&f->ring, &cqe) == 0) {
        struct piece *p = io_uring_cqe_get_data(cqe);
        int64_t res = cqe->res;
        struct nvl_read *done;
        int copy_rc = 0;

        io_uring_cqe_seen(&f->ring, cqe);
        if (piece_final(f, p, res))
            copy_rc = piece_copy_out(p);
        pthread_mutex_lock(&f->lock);
        f->in_flight--;
        done = piece_done(f, p, res, copy_rc);
        pthread_mutex_unlock(&f->lock);
        if (done)
            read_finish(done);
    }
}

static void *uring_main(void *arg)
{
    struct file_be *f = arg;

    for (;;) {
        struct piece *p;
        unsigned queued = 0;

        pthread_mutex_lock(&f->lock);
        while (!f->stop && !f->in_flight && !f->retry && !f->queue_head)
            pthread_cond_wait(&f->cond, &f->lock);
        if (f->stop && !f->in_flight) {
            pthread_mutex_unlock(&f->lock);
            break;
        }
        while (f->in_flight < f->depth && (p = piece_next(f))) {
            uring_prep(f, io_uring_get_sqe(&f->ring), p);
            f->in_flight++;
            queued++;
        }
        pthread_mutex_unlock(&f->lock);
        while (queued) {
            int rc = io_uring_submit(&f->ring);

            if (rc >= 0) {
                queued = rc >= (int)queued ? 0 : queued - (unsigned)rc;
                continue;
            }
            if (rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
                nvl_log_error(NVL_LOADER_WHO, "io_uring submit: %s", strerror(-rc));
                break;
            }
            /* The kernel is out of resources for now: free some by reaping. */
            uring_reap(f);
        }
        if (f->in_flight)
            uring_reap(f);
    }
    return NULL;
}

/* Registers the file and the buffers with the ring; the engine works without them, a little
 * slower, so failures only downgrade. */
static void uring_register(struct file_be *f)
{
    struct nvl_loader *l = f->loader;
    uint32_t n = 1 + l->opts.n_slots;
    struct iovec *iov = calloc(n, sizeof(*iov));

    f->fixed_file = io_uring_register_files(&f->ring, &f->fd, 1) == 0;
    if (!iov)
        return;
    iov[0].iov_base = f->bounce_mem;
    iov[0].iov_len = (size_t)FILE_BOUNCE * FILE_CHUNK;
    for (uint32_t i = 0; i < l->opts.n_slots; i++) {
        iov[1 + i].iov_base = l->slots[i].host;
        iov[1 + i].iov_len = l->slots[i].bytes;
    }
    f->fixed_bufs = io_uring_register_buffers(&f->ring, iov, n) == 0;
    free(iov);
}

/* ---- pread engine ------------------------------------------------------------------------- */

static void *pread_main(void *arg)
{
    struct file_be *f = arg;

    pthread_mutex_lock(&f->lock);
    for (;;) {
        struct nvl_read *done;
        struct piece *p = NULL;
        int64_t res;
        int copy_rc = 0;

        while (!f->stop && !(p = piece_next(f)))
            pthread_cond_wait(&f->cond, &f->lock);
        if (!p)
            break;
        f->in_flight++;
        pthread_mutex_unlock(&f->lock);
        do
            res = pread(f->fd, p->buf, p->len, (off_t)p->dev_off);
        while (res < 0 && errno == EINTR);
        if (res < 0)
            res = -errno;
        if (piece_final(f, p, res))
            copy_rc = piece_copy_out(p);
        pthread_mutex_lock(&f->lock);
        f->in_flight--;
        done = piece_done(f, p, res, copy_rc);
        /* A piece or a bounce buffer came free: another worker may go on. */
        pthread_cond_broadcast(&f->cond);
        if (done) {
            pthread_mutex_unlock(&f->lock);
            read_finish(done);
            pthread_mutex_lock(&f->lock);
        }
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/* ---- backend ops -------------------------------------------------------------------------- */

static void file_stop_threads(struct file_be *f)
{
    pthread_mutex_lock(&f->lock);
    f->stop = true;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    for (uint32_t i = 0; i < f->n_threads; i++)
        pthread_join(f->threads[i], NULL);
    f->n_threads = 0;
}

static int file_start_engine(struct file_be *f)
{
    struct nvl_loader *l = f->loader;
    char text[256];
    uint32_t want;
    int rc;

    f->engine = engine_wanted();
    if (f->engine == FILE_ENGINE_URING) {
        rc = io_uring_queue_init(f->depth, &f->ring, 0);
        if (rc == 0) {
            f->ring_up = true;
            uring_register(f);
            snprintf(text, sizeof(text),
                     "engine io_uring: %u reads of up to %u KiB in flight, %s file, %s buffers",
                     f->depth, FILE_CHUNK >> 10, f->fixed_file ? "registered" : "plain",
                     f->fixed_bufs ? "registered" : "plain");
        } else {
            nvl_log_warn(NVL_LOADER_WHO, "io_uring unavailable (%s): using a pread thread pool",
                         strerror(-rc));
            f->engine = FILE_ENGINE_PREAD;
            snprintf(text, sizeof(text), "io_uring unavailable (%s)", strerror(-rc));
            nvl__reason_append(l, "%s", text);
        }
    }
    want = f->engine == FILE_ENGINE_URING ? 1 : (f->depth < 16 ? f->depth : 16);
    if (f->engine == FILE_ENGINE_PREAD)
        snprintf(text, sizeof(text), "engine pread thread pool: %u threads, reads of up to %u KiB",
                 want, FILE_CHUNK >> 10);
    nvl__reason_append(l, "%s", text);
    f->threads = calloc(want, sizeof(*f->threads));
    if (!f->threads)
        return -ENOMEM;
    for (uint32_t i = 0; i < want; i++) {
        rc = pthread_create(&f->threads[i], NULL,
                            f->engine == FILE_ENGINE_URING ? uring_main : pread_main, f);
        if (rc) {
            file_stop_threads(f);
            return -rc;
        }
        f->n_threads++;
    }
    return 0;
}

static int file_create(struct nvl_loader *l)
{
    struct file_be *f;
    uint32_t offset_align;
    struct stat st;
    int rc;

    f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->loader = l;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    rc = nvl__file_open(l->opts.path, &f->fd, &f->direct);
    if (rc) {
        nvl_log_error(NVL_LOADER_WHO, "cannot open %s: %s", l->opts.path, strerror(-rc));
        goto err_free;
    }
    if (fstat(f->fd, &st)) {
        rc = -errno;
        goto err_close;
    }
    rc = nvl__file_size(f->fd, &st, &f->capacity);
    if (rc)
        goto err_close;
    if (f->capacity == 0) {
        nvl_log_error(NVL_LOADER_WHO, "%s is empty", l->opts.path);
        rc = -EINVAL;
        goto err_close;
    }
    nvl__file_alignment(f->fd, &st, &offset_align, &f->mem_align);
    if (!f->direct)
        f->mem_align = 1;
    if (f->mem_align > NVL_SLOT_ALIGN || offset_align > NVL_SLOT_ALIGN) {
        nvl_log_error(NVL_LOADER_WHO, "%s needs %u-byte O_DIRECT alignment, more than a page",
                      l->opts.path, offset_align);
        rc = -EINVAL;
        goto err_close;
    }
    l->capacity = f->capacity;
    l->block_size = offset_align;
    f->depth = l->opts.queue_depth < FILE_MAX_DEPTH ? l->opts.queue_depth : FILE_MAX_DEPTH;

    f->bounce_mem = mmap(NULL, (size_t)FILE_BOUNCE * FILE_CHUNK, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (f->bounce_mem == MAP_FAILED) {
        rc = -errno;
        f->bounce_mem = NULL;
        goto err_close;
    }
    if (nvl__cuda_host_register(f->bounce_mem, (size_t)FILE_BOUNCE * FILE_CHUNK, &f->bounce_dev))
        f->bounce_dev = NULL;
    for (uint32_t i = 0; i < FILE_BOUNCE; i++)
        f->bounce_free[f->n_bounce_free++] = FILE_BOUNCE - 1 - i;
    f->pieces = calloc(f->depth, sizeof(*f->pieces));
    if (!f->pieces) {
        rc = -ENOMEM;
        goto err_unmap_bounce;
    }
    for (uint32_t i = 0; i < f->depth; i++) {
        f->pieces[i].next = f->free_pieces;
        f->free_pieces = &f->pieces[i];
    }
    rc = file_start_engine(f);
    if (rc)
        goto err_exit_ring;
    l->be = f;
    return 0;

err_exit_ring:
    if (f->ring_up)
        io_uring_queue_exit(&f->ring);
    free(f->threads);
    free(f->pieces);
err_unmap_bounce:
    if (f->bounce_dev)
        nvl__cuda_host_unregister(f->bounce_mem);
    munmap(f->bounce_mem, (size_t)FILE_BOUNCE * FILE_CHUNK);
err_close:
    close(f->fd);
err_free:
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
    return rc;
}

static void file_destroy(struct nvl_loader *l)
{
    struct file_be *f = l->be;

    if (!f)
        return;
    file_stop_threads(f);
    if (f->ring_up)
        io_uring_queue_exit(&f->ring);
    free(f->threads);
    free(f->pieces);
    if (f->bounce_dev)
        nvl__cuda_host_unregister(f->bounce_mem);
    munmap(f->bounce_mem, (size_t)FILE_BOUNCE * FILE_CHUNK);
    close(f->fd);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
    l->be = NULL;
}

static int file_submit(struct nvl_loader *l, struct nvl_read *r)
{
    struct file_be *f = l->be;
    struct file_read *fr = calloc(1, sizeof(*fr));

    if (!fr)
        return -ENOMEM;
    r->be_priv = fr;
    pthread_mutex_lock(&f->lock);
    if (f->queue_tail)
        ((struct file_read *)f->queue_tail->be_priv)->link.next = r;
    else
        f->queue_head = r;
    f->queue_tail = r;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    return 0;
}

const struct nvl_backend_ops nvl__backend_file = {
    .kind = NVL_LOADER_FILE,
    .name = "file",
    .probe = file_probe,
    .create = file_create,
    .destroy = file_destroy,
    .submit = file_submit,
#ifdef NVL_HAVE_CUDA
    .caps = NVL_BACKEND_NEEDS_PATH | NVL_BACKEND_DEVICE_DST,
#else
    .caps = NVL_BACKEND_NEEDS_PATH,
#endif
};
