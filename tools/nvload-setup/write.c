/* nvload-setup write: lays a GGUF model onto a raw NVMe namespace through nvload's own driver.
 *
 *   1. open the model; pack it (pack.h) into an anonymous memory file when it is not packed;
 *   2. open the drive (VFIO, or the sim with --sim), refuse a model larger than the namespace
 *      and a drive with a filesystem/partition signature (unless --force), ask for confirmation
 *      (unless --yes);
 *   3. write the header and extent table with the "complete" flag clear, then the GGUF over
 *      several I/O queues, computing each extent's CRC32C from the source on the way;
 *   4. flush, read everything back and check every extent's CRC;
 *   5. write the header again with the CRCs and the "complete" flag, flush, read it back.
 *
 * An interruption anywhere before step 5 leaves a header that says "incomplete", which nvinfer
 * refuses. See docs/disk-layout.md. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "nvl_driver.h"
#include "nvl_model.h"
#include "setup.h"

#ifndef NVL_VERSION
#define NVL_VERSION "0"
#endif

/* Bytes moved per synchronous driver call: large enough that each call keeps every queue busy
 * with max-transfer commands, small enough to keep DMA memory modest. */
#define WRITE_CHUNK   (8u << 20)
#define HEADER_REGION NVL_DISK_GGUF_OFFSET
#define PROGRESS_S    0.1

struct write_args {
    const char *bdf;
    const char *sim;
    const char *model;
    const char *name;
    uint32_t queues;
    bool yes;
    bool force;
};

/* The packed model being written: either the mapped input file or a packed copy in memory. */
struct source {
    struct nvl_gguf *g;
    const uint8_t *bytes; /* the whole GGUF */
    uint64_t len;
    void *packed_map; /* mapping of the packed copy, or NULL */
    int packed_fd;    /* its memfd, or -1 */
};

struct progress {
    const char *phase;
    uint64_t total;
    double t0;
    double last;
    bool tty;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

static void progress_start(struct progress *p, const char *phase, uint64_t total)
{
    p->phase = phase;
    p->total = total;
    p->t0 = now_s();
    p->last = 0.0;
    p->tty = isatty(STDERR_FILENO);
}

/* On a terminal: one line redrawn in place, bytes done, GB/s and time left. */
static void progress_show(struct progress *p, uint64_t done)
{
    if (!p->tty)
        return;
    const double t = now_s();
    const bool final = done >= p->total;
    if (!final && t - p->last < PROGRESS_S)
        return;
    p->last = t;
    const double el = t - p->t0 > 1e-9 ? t - p->t0 : 1e-9;
    const double rate = (double)done / el;
    const double left = rate > 0 ? (double)(p->total - done) / rate : 0.0;
    fprintf(stderr, "\r%-9s %9.1f / %.1f MB  %6.2f GB/s  %s %3d:%02d ", p->phase, done / 1e6,
            p->total / 1e6, rate / 1e9, final ? "took" : "left", (int)(final ? el : left) / 60,
            (int)(final ? el : left) % 60);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

static double progress_gbps(const struct progress *p)
{
    const double el = now_s() - p->t0;
    return el > 0 ? (double)p->total / el / 1e9 : 0.0;
}

/* ---- the model ----------------------------------------------------------------------------- */

static void source_close(struct source *s)
{
    nvl_gguf_close(s->g);
    if (s->packed_map)
        munmap(s->packed_map, s->len);
    if (s->packed_fd >= 0)
        close(s->packed_fd);
}

/* Opens the model, packing it into an anonymous memory file when needed. */
static int source_open(const char *path, struct source *s)
{
    char err[512] = "", why[256] = "";
    struct nvl_gguf *in;
    struct nvl_gguf_writer *w;
    int rc;

    memset(s, 0, sizeof(*s));
    s->packed_fd = -1;
    if ((rc = nvl_gguf_open(path, &in, err, sizeof(err)))) {
        fprintf(stderr, "nvload-setup: error: %s\n", err);
        return rc;
    }
    if (nvl_gguf_is_packed(in, why, sizeof(why))) {
        s->g = in;
        s->bytes = nvl_gguf_base(in);
        s->len = nvl_gguf_file_size(in);
        return 0;
    }
    fprintf(stderr, "nvload-setup: packing %s (%s)\n", path, why);
    if ((rc = nvl_gguf_pack_writer(in, &w, err, sizeof(err))))
        goto err_fail;
    s->packed_fd = memfd_create("nvload-packed.gguf", MFD_CLOEXEC);
    if (s->packed_fd < 0) {
        rc = -errno;
        snprintf(err, sizeof(err), "memfd_create: %s", strerror(errno));
        goto err_destroy_writer;
    }
    s->len = nvl_gguf_writer_file_size(w);
    if ((rc = nvl_gguf_writer_write_fd(w, s->packed_fd, err, sizeof(err))))
        goto err_destroy_writer;
    s->packed_map = mmap(NULL, s->len, PROT_READ, MAP_SHARED, s->packed_fd, 0);
    if (s->packed_map == MAP_FAILED) {
        s->packed_map = NULL;
        rc = -errno;
        snprintf(err, sizeof(err), "mmap of the packed copy: %s", strerror(errno));
        goto err_destroy_writer;
    }
    nvl_gguf_writer_destroy(w);
    nvl_gguf_close(in);
    in = NULL;
    if ((rc = nvl_gguf_open_memory(s->packed_map, s->len, &s->g, err, sizeof(err))))
        goto err_fail;
    s->bytes = s->packed_map;
    return 0;

err_destroy_writer:
    nvl_gguf_writer_destroy(w);
err_fail:
    fprintf(stderr, "nvload-setup: error: cannot pack %s: %s\n", path, err);
    nvl_gguf_close(in);
    source_close(s);
    return rc;
}

/* ---- CRCs ---------------------------------------------------------------------------------- */

/* Feeds GGUF bytes [off, off + len) at p into the CRCs of the extents they belong to (crc[i]
 * for ext[i]); calls come in increasing, contiguous order. */
static void crc_feed(const struct nvl_disk_extent *ext, uint32_t n, uint32_t *crc, const uint8_t *p,
                     uint64_t off, uint64_t len)
{
    uint32_t i = 0;
    while (len) {
        while (i < n && off >= ext[i].offset + ext[i].bytes)
            i++;
        if (i == n)
            return;
        const uint64_t take =
            ext[i].offset + ext[i].bytes - off < len ? ext[i].offset + ext[i].bytes - off : len;
        crc[i] = nvl_crc32c(crc[i], p, take);
        p += take;
        off += take;
        len -= take;
    }
}

/* ---- the drive ----------------------------------------------------------------------------- */

static int drive_io(struct nvl_setup_drive *d, bool write, uint64_t byte, uint64_t bytes,
                    const struct nvl_dma *buf, const char *what)
{
    uint16_t status = 0;
    const uint64_t slba = byte / d->lba_size, nlb = bytes / d->lba_size;
    int rc = write ? nvl_io_write(d->ctrl, NULL, slba, nlb, buf, 0, &status)
                   : nvl_io_read(d->ctrl, NULL, slba, nlb, buf, 0, &status);
    if (rc)
        fprintf(stderr,
                "\nnvload-setup: error: %s %s (LBAs %" PRIu64 "..%" PRIu64 ") failed: %s%s%.0x\n",
                write ? "writing" : "reading", what, slba, slba + nlb - 1, nvl_strerror(rc),
                status ? ", NVMe status 0x" : "", status);
    return rc;
}

static int drive_flush(struct nvl_setup_drive *d)
{
    uint16_t status = 0;
    int rc = nvl_io_flush(d->ctrl, NULL, &status);
    if (rc)
        fprintf(stderr, "nvload-setup: error: flush failed: %s\n", nvl_strerror(rc));
    return rc;
}

/* Writes header h and table ext into the first HEADER_REGION bytes of the drive. */
static int write_header(struct nvl_setup_drive *d, struct nvl_dma *buf, struct nvl_disk_header *h,
                        const struct nvl_disk_extent *ext)
{
    nvl_disk_header_seal(h, ext);
    memset(buf->vaddr, 0, HEADER_REGION);
    memcpy(buf->vaddr, h, sizeof(*h));
    memcpy((uint8_t *)buf->vaddr + h->table_offset, ext, (size_t)h->n_extents * sizeof(*ext));
    return drive_io(d, true, 0, HEADER_REGION, buf, "the image header");
}

/* Refuses a drive that holds data, unless forced. Returns 0 to go on. */
static int check_drive_contents(struct nvl_setup_drive *d, struct nvl_dma *buf, bool force)
{
    const uint64_t probe =
        NVL_SETUP_SIGNATURE_BYTES < d->capacity ? NVL_SETUP_SIGNATURE_BYTES : d->capacity;
    int rc = drive_io(d, false, 0, probe / d->lba_size * d->lba_size, buf, "the drive's start");
    if (rc)
        return rc;
    char what[160];
    const struct nvl_disk_header *old = buf->vaddr;
    if (nvl_disk_header_check(buf->vaddr, probe, d->capacity, d->lba_size, what, sizeof(what)) ==
        0) {
        printf("%s holds an nvload image of '%s' (%s); it will be replaced\n", d->name,
               old->model_name, nvl_disk_header_complete(old) ? "complete" : "incomplete");
        return 0;
    }
    if (!nvl_setup_signature(buf->vaddr, probe, d->lba_size, what, sizeof(what)))
        return 0;
    if (force) {
        printf("%s holds %s; overwriting it (--force)\n", d->name, what);
        return 0;
    }
    fprintf(stderr,
            "nvload-setup: error: %s holds %s; refusing to overwrite it (give --force to "
            "destroy it)\n",
            d->name, what);
    return -EEXIST;
}

static int confirm(const struct nvl_setup_drive *d, const struct source *s, const char *name)
{
    const struct nvl_ctrl_info *in = nvl_ctrl_get_info(d->ctrl);
    fprintf(stderr,
            "About to write '%s' (%.1f MB) to %s (%s, serial %s, namespace %u: %.1f GB, %u-byte "
            "blocks).\nEverything on the namespace will be lost. Type 'yes' to go on: ",
            name, s->len / 1e6, d->name, in->mn, in->sn, in->nsid, d->capacity / 1e9, d->lba_size);
    fflush(stderr);
    char line[16] = "";
    if (!fgets(line, sizeof(line), stdin) || strcmp(line, "yes\n") != 0) {
        fprintf(stderr, "%snvload-setup: not confirmed; nothing was written (--yes skips this)\n",
                strchr(line, '\n') ? "" : "\n");
        return -ECANCELED;
    }
    return 0;
}

/* ---- the two-buffer pipeline ------------------------------------------------------------- */

/* Two DMA buffers pass between the drive (the main thread's synchronous driver calls) and a
 * helper thread doing the CPU's part (copy and CRC when writing, CRC when reading back), so the
 * CPU works on one piece while the drive moves the other. Piece k uses buffer k % 2; the
 * producer may start piece k once the consumer has finished piece k - 2. */
struct pipe {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t produced; /* pieces [0, produced) are ready for the consumer */
    uint64_t consumed; /* pieces [0, consumed) are done with */
    bool abort;        /* either side failed: the other stops waiting */
    /* The job. */
    struct nvl_setup_drive *d;
    struct nvl_dma *buf[2];
    const struct source *src; /* writing: where the bytes come from */
    uint64_t len;             /* GGUF bytes */
    uint64_t n_pieces;
    const struct nvl_disk_extent *ext;
    uint32_t n_ext;
    uint32_t *crc; /* per extent, fed in order */
};

static uint64_t piece_len(const struct pipe *p, uint64_t k)
{
    const uint64_t off = k * WRITE_CHUNK;
    return p->len - off < WRITE_CHUNK ? p->len - off : WRITE_CHUNK;
}

/* Waits until piece k may be produced (its buffer is free); false when aborted. */
static bool pipe_wait_free(struct pipe *p, uint64_t k)
{
    pthread_mutex_lock(&p->lock);
    while (!p->abort && k >= p->consumed + 2)
        pthread_cond_wait(&p->cond, &p->lock);
    const bool ok = !p->abort;
    pthread_mutex_unlock(&p->lock);
    return ok;
}

/* Waits until piece k has been produced; false when aborted. */
static bool pipe_wait_ready(struct pipe *p, uint64_t k)
{
    pthread_mutex_lock(&p->lock);
    while (!p->abort && k >= p->produced)
        pthread_cond_wait(&p->cond, &p->lock);
    const bool ok = !p->abort;
    pthread_mutex_unlock(&p->lock);
    return ok;
}

static void pipe_set(struct pipe *p, uint64_t *counter, uint64_t value, bool abort)
{
    pthread_mutex_lock(&p->lock);
    if (counter)
        *counter = value;
    p->abort |= abort;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Writing, helper thread: copies each piece into its buffer, zero-pads it to whole blocks and
 * feeds the CRCs. */
static void *fill_thread(void *arg)
{
    struct pipe *p = arg;
    for (uint64_t k = 0; k < p->n_pieces; k++) {
        if (!pipe_wait_free(p, k))
            break;
        const uint64_t off = k * WRITE_CHUNK, len = piece_len(p, k);
        uint8_t *dst = p->buf[k % 2]->vaddr;
        memcpy(dst, p->src->bytes + off, len);
        memset(dst + len, 0, round_up(len, p->d->lba_size) - len);
        crc_feed(p->ext, p->n_ext, p->crc, p->src->bytes + off, off, len);
        pipe_set(p, &p->produced, k + 1, false);
    }
    return NULL;
}

/* Reading back, helper thread: feeds each piece that arrived into the CRCs. */
static void *check_thread(void *arg)
{
    struct pipe *p = arg;
    for (uint64_t k = 0; k < p->n_pieces; k++) {
        if (!pipe_wait_ready(p, k))
            break;
        crc_feed(p->ext, p->n_ext, p->crc, p->buf[k % 2]->vaddr, k * WRITE_CHUNK, piece_len(p, k));
        pipe_set(p, &p->consumed, k + 1, false);
    }
    return NULL;
}

/* Moves the GGUF to (write) or from (read back) the drive through the pipeline; the helper
 * computes crc[] on the way. */
static int pipe_run(struct pipe *p, bool write, struct progress *pg)
{
    pthread_t helper;
    int rc = 0;

    p->n_pieces = (p->len + WRITE_CHUNK - 1) / WRITE_CHUNK;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    if ((rc = -pthread_create(&helper, NULL, write ? fill_thread : check_thread, p))) {
        fprintf(stderr, "nvload-setup: error: cannot start a thread: %s\n", strerror(-rc));
        goto err_destroy;
    }
    progress_start(pg, write ? "writing" : "verifying", p->len);
    for (uint64_t k = 0; k < p->n_pieces && !rc; k++) {
        const uint64_t off = k * WRITE_CHUNK, len = piece_len(p, k);
        if (!(write ? pipe_wait_ready(p, k) : pipe_wait_free(p, k)))
            break;
        rc = drive_io(p->d, write, NVL_DISK_GGUF_OFFSET + off, round_up(len, p->d->lba_size),
                      p->buf[k % 2], write ? "the model" : "the model back");
        pipe_set(p, write ? &p->consumed : &p->produced, k + 1, rc != 0);
        if (!rc)
            progress_show(pg, off + len);
    }
    pthread_join(helper, NULL);
err_destroy:
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    return rc;
}

/* Writes the GGUF at NVL_DISK_GGUF_OFFSET; the extents' CRCs of the source go to crc[]. */
static int write_gguf(struct nvl_setup_drive *d, struct nvl_dma **buf, const struct source *s,
                      const struct nvl_disk_extent *ext, uint32_t n, uint32_t *crc,
                      struct progress *pg)
{
    struct pipe p = {.d = d,
                     .buf = {buf[0], buf[1]},
                     .src = s,
                     .len = s->len,
                     .ext = ext,
                     .n_ext = n,
                     .crc = crc};
    return pipe_run(&p, true, pg);
}

/* Reads the GGUF back and compares every extent's CRC with want[]. */
static int verify_gguf(struct nvl_setup_drive *d, struct nvl_dma **buf, uint64_t gguf_len,
                       const struct nvl_disk_extent *ext, uint32_t n, const uint32_t *want,
                       struct progress *pg)
{
    uint32_t *got = calloc(n, sizeof(*got));
    if (!got)
        return -ENOMEM;
    struct pipe p = {
        .d = d, .buf = {buf[0], buf[1]}, .len = gguf_len, .ext = ext, .n_ext = n, .crc = got};
    int rc = pipe_run(&p, false, pg);
    for (uint32_t i = 0; i < n && !rc; i++) {
        if (got[i] != want[i]) {
            char name[32];
            fprintf(stderr,
                    "nvload-setup: error: %s reads back wrong: CRC32C 0x%08x, written 0x%08x "
                    "(drive bytes %" PRIu64 "..%" PRIu64 "); the image stays marked incomplete\n",
                    nvl_disk_extent_name(&ext[i], name, sizeof(name)), got[i], want[i],
                    NVL_DISK_GGUF_OFFSET + ext[i].offset,
                    NVL_DISK_GGUF_OFFSET + ext[i].offset + ext[i].bytes);
            rc = -EIO;
        }
    }
    free(got);
    return rc;
}

/* Reads the final header and table back and checks them as a reader will. */
static int verify_header(struct nvl_setup_drive *d, struct nvl_dma *buf)
{
    char err[256];
    int rc = drive_io(d, false, 0, HEADER_REGION, buf, "the image header back");
    if (rc)
        return rc;
    const struct nvl_disk_header *h = buf->vaddr;
    if ((rc =
             nvl_disk_header_check(h, HEADER_REGION, d->capacity, d->lba_size, err, sizeof(err))) ||
        (rc = nvl_disk_table_check(
             h, (const struct nvl_disk_extent *)((const uint8_t *)buf->vaddr + h->table_offset),
             err, sizeof(err))) ||
        (rc = nvl_disk_header_complete(h) ? 0 : -EIO)) {
        fprintf(stderr, "nvload-setup: error: the header reads back wrong: %s\n",
                rc == -EIO ? "not marked complete" : err);
        return rc ? rc : -EIO;
    }
    return 0;
}

static int write_image(const struct write_args *a)
{
    struct source src;
    struct nvl_setup_drive d;
    struct nvl_dma *buf[2] = {NULL, NULL};
    struct nvl_disk_extent *ext = NULL;
    uint32_t *crc = NULL;
    struct nvl_disk_header h;
    struct progress pw, pv;
    char err[512] = "";
    int rc;

    if ((rc = source_open(a->model, &src)))
        return rc;
    ext = calloc(NVL_DISK_MAX_EXTENTS, sizeof(*ext));
    if (!ext) {
        rc = -ENOMEM;
        goto err_close_source;
    }
    const int n = nvl_disk_layout(src.g, ext, NVL_DISK_MAX_EXTENTS, err, sizeof(err));
    if (n < 0) {
        fprintf(stderr, "nvload-setup: error: %s: %s\n", a->model, err);
        rc = n;
        goto err_free_ext;
    }
    if (!(crc = calloc((size_t)n, sizeof(*crc)))) {
        rc = -ENOMEM;
        goto err_free_ext;
    }
    const char *base = strrchr(a->model, '/') ? strrchr(a->model, '/') + 1 : a->model;
    const char *gname = NULL;
    nvl_gguf_get_str(src.g, "general.name", &gname, NULL);
    const char *name = a->name ? a->name : gname ? gname : base;

    if ((rc = nvl_setup_drive_open(a->bdf, a->sim, a->queues, &d, err, sizeof(err)))) {
        fprintf(stderr, "nvload-setup: error: %s\n", err);
        goto err_free_crc;
    }
    if (HEADER_REGION + src.len > d.capacity) {
        fprintf(stderr,
                "nvload-setup: error: the model needs %" PRIu64 " bytes (%" PRIu64
                " of GGUF after a %u-byte header); namespace %u of %s has %" PRIu64 "\n",
                HEADER_REGION + src.len, src.len, HEADER_REGION, nvl_ctrl_get_info(d.ctrl)->nsid,
                d.name, d.capacity);
        rc = -ENOSPC;
        goto err_close_drive;
    }
    if (d.lba_size > NVL_PACK_ALIGNMENT || HEADER_REGION % d.lba_size) {
        fprintf(stderr, "nvload-setup: error: %s has %u-byte blocks; images need %u or less\n",
                d.name, d.lba_size, NVL_PACK_ALIGNMENT);
        rc = -ENOTSUP;
        goto err_close_drive;
    }
    for (int i = 0; i < 2; i++) {
        if ((rc = nvl_dma_create(d.transport, WRITE_CHUNK, NVL_DMA_TRY_HUGE, &buf[i]))) {
            fprintf(stderr, "nvload-setup: error: cannot allocate %u bytes of DMA memory: %s\n",
                    WRITE_CHUNK, nvl_strerror(rc));
            goto err_free_dma;
        }
    }
    if ((rc = check_drive_contents(&d, buf[0], a->force)))
        goto err_free_dma;
    if (!a->yes && (rc = confirm(&d, &src, name)))
        goto err_free_dma;

    const double t0 = now_s();
    char writer[NVL_DISK_WRITER_LEN];
    snprintf(writer, sizeof(writer), "nvload-setup %s", NVL_VERSION);
    nvl_disk_header_init(&h, src.g, src.len, d.lba_size, ext, (uint32_t)n, name, writer);
    h.created_unix = (uint64_t)time(NULL);
    if ((rc = write_header(&d, buf[0], &h, ext)) ||
        (rc = write_gguf(&d, buf, &src, ext, (uint32_t)n, crc, &pw)) || (rc = drive_flush(&d)))
        goto err_free_dma;
    const double write_gbps = progress_gbps(&pw);
    if ((rc = verify_gguf(&d, buf, src.len, ext, (uint32_t)n, crc, &pv)))
        goto err_free_dma;
    const double verify_gbps = progress_gbps(&pv);
    for (int i = 0; i < n; i++)
        ext[i].crc32c = crc[i];
    h.flags |= NVL_DISK_FLAG_COMPLETE;
    if ((rc = write_header(&d, buf[0], &h, ext)) || (rc = drive_flush(&d)) ||
        (rc = verify_header(&d, buf[0])))
        goto err_free_dma;

    printf("%s: wrote '%s' (%.1f MB, %u layers, %d extents, CRC32C verified): write %.2f GB/s, "
           "verify %.2f GB/s, %.1f s\n",
           d.name, name, src.len / 1e6, h.n_layers, n, write_gbps, verify_gbps, now_s() - t0);

err_free_dma:
    nvl_dma_destroy(buf[1]);
    nvl_dma_destroy(buf[0]);
err_close_drive:
    nvl_setup_drive_close(&d);
err_free_crc:
    free(crc);
err_free_ext:
    free(ext);
err_close_source:
    source_close(&src);
    return rc;
}

static void write_usage(FILE *f)
{
    fprintf(f,
            "usage: nvload-setup write [--yes] [--force] [--queues N] [--name NAME] BDF "
            "MODEL.gguf\n"
            "       nvload-setup write [options] --sim IMAGE[,SIM-OPTIONS] MODEL.gguf\n"
            "\n"
            "Lays MODEL onto the raw drive through nvload's driver: a header at LBA 0, then the\n"
            "GGUF (packed first when it is not: 4 KiB alignment, one extent per layer) at 1 MiB.\n"
            "Everything is read back and every layer's CRC32C checked; `nvinfer --nvme BDF` then\n"
            "runs the model with no file. The controller must be prepared (nvload-setup BDF).\n"
            "\n"
            "  --yes          do not ask for confirmation\n"
            "  --force        overwrite a drive that holds a filesystem or partition table\n"
            "  --queues N     I/O queue pairs to write through (default 4)\n"
            "  --name NAME    model name in the header (default: general.name)\n"
            "  --sim SPEC     write through the software controller into a file instead\n"
            "                 (SPEC: a path, or options such as file=disk.img,lba=4096)\n"
            "  -h, --help     this text\n");
}

int nvl_setup_write_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"yes", no_argument, NULL, 'y'},
        {"force", no_argument, NULL, 'f'},
        {"queues", required_argument, NULL, 'q'},
        {"name", required_argument, NULL, 'n'},
        {"sim", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct write_args a = {.queues = 4};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "yh", opts, NULL)) != -1) {
        switch (c) {
        case 'y':
            a.yes = true;
            break;
        case 'f':
            a.force = true;
            break;
        case 'q': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 64) {
                fprintf(stderr, "nvload-setup: error: --queues wants 1-64, not '%s'\n", optarg);
                return 2;
            }
            a.queues = (uint32_t)v;
            break;
        }
        case 'n':
            a.name = optarg;
            break;
        case 's':
            a.sim = optarg;
            break;
        case 'h':
            write_usage(stdout);
            return 0;
        default:
            write_usage(stderr);
            return 2;
        }
    }
    if (argc - optind != (a.sim ? 1 : 2)) {
        fprintf(stderr, "nvload-setup: error: write wants %s\n",
                a.sim ? "--sim IMAGE MODEL.gguf" : "a PCI address (BDF) and a model file");
        write_usage(stderr);
        return 2;
    }
    char bdf[NVL_SETUP_BDF_LEN];
    if (!a.sim) {
        if (nvl_setup_parse_bdf(argv[optind], bdf) != 0) {
            fprintf(stderr,
                    "nvload-setup: error: invalid PCI address '%s': expected DDDD:BB:DD.F, e.g. "
                    "0000:01:00.0\n",
                    argv[optind]);
            return 2;
        }
        a.bdf = bdf;
        optind++;
    }
    a.model = argv[optind];
    return write_image(&a) ? 1 : 0;
}
