/* nvme_guest_test: the CPU driver's integration test against a real NVMe controller through
 * VFIO. In CI it runs inside the QEMU guest of scripts/qemu/run-guest.sh against QEMU's emulated
 * controller; it runs the same way against any controller that nvload-setup bound to vfio-pci
 * (it writes to the scratch region at the end of namespace 1, so only on a drive you can lose).
 *
 *   nvme_guest_test make-image FILE MIB [--seed S]
 *       (host) creates the disk image: every 8-byte word holds pattern(seed, its byte offset).
 *   nvme_guest_test check-image FILE [--seed S] [--scratch-mib M]
 *       (host, after the guest ran) the scratch region holds the write pattern and everything
 *       before it still holds the image pattern.
 *   nvme_guest_test run BDF|sim:SPEC [--expect-lba N] [--expect-mdts BYTES] [--expect-queues N]
 *                            [--expect-serial S] [--expect-model M] [--expect-size BYTES]
 *                            [--expect-entries N]
 *                            [--seed S] [--scratch-mib M] [--mode auto|type1|noiommu]
 *                            [--max-pages N]
 *       (guest) bring-up, Identify, every queue, reads at depth, MDTS-sized reads through PRP
 *       lists, write/flush/read-back, reset, clean shutdown. The --expect values come from the
 *       QEMU command line, so the limits the driver reads from CAP and Identify are checked
 *       against what the controller was configured with, not against the driver itself.
 *       With sim:SPEC the same tests run on the host against the software controller (nvl_sim)
 *       configured by SPEC: the same driver tests against both controllers.
 *   nvme_guest_test dmar-probe BDF
 *       (guest, IOMMU mode) reads one block into an IOVA that is not mapped. QEMU completes the
 *       command with success; the harness must see the DMAR fault and fail the run.
 *
 * Data is checked byte for byte against the pattern, recomputed here from the disk offset, so a
 * block landing at the wrong place or a transfer that never happened is caught. Output is TAP;
 * the exit status is 0 only when every test passed. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nvl_driver.h"
#include "nvl_driver/ctrl.h"
#include "nvl_driver/dma.h"
#include "nvl_driver/io.h"
#include "nvl_driver/mmio.h"
#include "nvl_driver/nvme_spec.h"
#include "nvl_driver/prp.h"
#include "nvl_driver/vfio.h"
#include "nvl_sim.h"

#define MIB             (1024u * 1024u)
#define DEFAULT_SEED    0x6e766c6f6164ull /* "nvload" */
#define WRITE_SEED_XOR  0x5752495445ull   /* "WRITE": the write pattern differs from the image */
#define DEFAULT_SCRATCH 16u               /* MiB at the end of the namespace that get written */
#define IO_DEADLINE_NS  (30ull * 1000000000ull)
#define UNMAPPED_IOVA   0x7e00000000ull /* inside the emulated IOMMU's usable range */
#define QUEUE_DEPTH     128u

/* ---- reference pattern ---------------------------------------------------------------------- */

/* splitmix64 of the word index: cheap, and any two words differ, so a misplaced block shows. */
static uint64_t pattern_word(uint64_t seed, uint64_t disk_off)
{
    uint64_t z = seed + (disk_off / 8 + 1) * 0x9e3779b97f4a7c15ull;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fills len bytes (multiple of 8) with the pattern of the disk bytes starting at disk_off. */
static void pattern_fill(uint64_t seed, uint64_t disk_off, void *dst, size_t len)
{
    uint64_t *w = dst;

    for (size_t i = 0; i < len / 8; i++)
        w[i] = pattern_word(seed, disk_off + i * 8);
}

/* Returns the index of the first byte that differs from the pattern, or len if none does. */
static size_t pattern_mismatch(uint64_t seed, uint64_t disk_off, const void *src, size_t len)
{
    const uint64_t *w = src;

    for (size_t i = 0; i < len / 8; i++) {
        uint64_t want = pattern_word(seed, disk_off + i * 8);
        if (w[i] != want) {
            const uint8_t *a = (const uint8_t *)&w[i], *b = (const uint8_t *)&want;
            size_t j = 0;
            while (a[j] == b[j])
                j++;
            return i * 8 + j;
        }
    }
    return len;
}

/* ---- tiny test framework ------------------------------------------------------------------ */

static int g_failed_checks;

static void fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    printf("#   %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    g_failed_checks++;
}

/* A failed check ends the current test (returns -1 from it). */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fail_at(__FILE__, __LINE__, __VA_ARGS__);                                              \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        CHECK(rc_ == 0, "%s = %d (%s)", #expr, rc_, nvl_strerror(rc_));                            \
    } while (0)

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the test context --------------------------------------------------------------------- */

struct expect {
    uint32_t lba;       /* bytes per block; 0: not checked */
    uint64_t mdts;      /* MDTS in bytes; 0: not checked */
    uint32_t queues;    /* I/O queue pairs the controller grants; 0: not checked */
    uint32_t entries;   /* CAP.MQES + 1; 0: not checked */
    uint64_t size;      /* namespace bytes; 0: not checked */
    const char *serial; /* Identify serial number; NULL: not checked */
    const char *model;  /* start of the Identify model number; NULL: not checked */
};

struct ctx {
    const char *bdf;
    enum nvl_vfio_mode mode;
    struct expect ex;
    uint64_t seed;
    uint64_t scratch_mib;
    uint32_t max_pages; /* the controller's cap on data pages per command; 0: none */

    struct nvl_transport *t;
    struct nvl_ctrl *c;
    const struct nvl_ctrl_info *info;
    uint64_t ns_bytes;
    uint64_t scratch_off; /* first byte of the scratch region */
    uint64_t scratch_len;
};

/* Checks buf + off against the pattern of disk bytes [disk_off, disk_off + len). */
static int verify(uint64_t seed, uint64_t disk_off, const struct nvl_dma *buf, size_t off,
                  size_t len, const char *what)
{
    size_t bad = pattern_mismatch(seed, disk_off, (const uint8_t *)buf->vaddr + off, len);

    CHECK(bad == len,
          "%s: first wrong byte at disk offset %" PRIu64 " (%zu bytes into a %zu-byte read)", what,
          disk_off + bad, bad, len);
    return 0;
}

/* Completion bookkeeping for the asynchronous per-queue API. */
struct done {
    uint32_t n;
    uint32_t errors;
    uint16_t first_status;
    int first_err;
};

static void on_done(void *arg, int err, uint16_t nvme_status)
{
    struct done *d = arg;

    d->n++;
    if (err && !d->errors++) {
        d->first_err = err;
        d->first_status = nvme_status;
    }
}

/* Polls qp until want completions arrived or the deadline passes. */
static int poll_until(struct nvl_qpair *qp, struct done *d, uint32_t want)
{
    uint64_t deadline = now_ns() + IO_DEADLINE_NS;

    while (d->n < want) {
        int rc = nvl_qpair_poll(qp, 0);
        CHECK(rc >= 0, "nvl_qpair_poll = %d (%s)", rc, nvl_strerror(rc));
        CHECK(now_ns() < deadline, "%u of %u completions after %llu s", d->n, want,
              IO_DEADLINE_NS / 1000000000ull);
    }
    CHECK(d->errors == 0, "%u commands failed, first: %s, NVMe status 0x%x", d->errors,
          nvl_strerror(d->first_err), d->first_status);
    return 0;
}

/* One read of nlb blocks at slba into buf + off through qp, waited for. */
static int qpair_read_sync(struct nvl_qpair *qp, uint64_t slba, uint32_t nlb,
                           const struct nvl_dma *buf, size_t off)
{
    struct done d = {0};

    CHECK_OK(nvl_qpair_submit_read(qp, slba, nlb, buf, off, on_done, &d));
    return poll_until(qp, &d, 1);
}

static int ctrl_up(struct ctx *x, uint32_t n_queues)
{
    struct nvl_ctrl_opts o;

    nvl_ctrl_opts_init(&o);
    o.n_io_queues = n_queues;
    o.io_queue_depth = QUEUE_DEPTH;
    CHECK_OK(nvl_ctrl_create(x->t, &o, &x->c));
    x->info = nvl_ctrl_get_info(x->c);
    x->ns_bytes = x->info->ns_lbas * x->info->lba_size;
    x->scratch_len = x->scratch_mib * MIB;
    CHECK(x->ns_bytes >= 2 * x->scratch_len, "namespace of %" PRIu64 " bytes is too small",
          x->ns_bytes);
    x->scratch_off = x->ns_bytes - x->scratch_len;
    return 0;
}

/* Bytes one command may move from a buffer at byte offset off: max_transfer, less one page when
 * the controller caps the pages per command (--max-pages) and an unaligned buffer would span one
 * page more than that. QEMU 7.2 maps at most IOV_MAX = 1024 pages per command (hw/nvme/ctrl.c,
 * nvme_map_addr) and fails the rest with Internal Error, which only matters for MDTS = 4 MiB. */
static uint32_t cmd_bytes_at(const struct ctx *x, size_t off)
{
    uint32_t mt = x->info->max_transfer, page = x->info->page_size;

    if (x->max_pages && (off % page + mt + page - 1) / page > x->max_pages)
        return mt - page;
    return mt;
}

/* ---- tests -------------------------------------------------------------------------------- */

/* The transport: "sim:SPEC" is the software controller (nvl_sim_opts_parse syntax, e.g.
 * sim:file=disk.img,lba=4096,mdts=5,queues=8), anything else a PCI address bound to vfio-pci. */
static int open_transport(struct ctx *x)
{
    if (strncmp(x->bdf, "sim:", 4) == 0) {
        struct nvl_sim_opts o;
        struct nvl_sim *sim;
        char err[256];
        nvl_sim_opts_init(&o);
        CHECK(nvl_sim_opts_parse(&o, x->bdf + 4, err, sizeof(err)) == 0, "sim options: %s", err);
        CHECK_OK(nvl_sim_create(&o, &sim));
        x->t = nvl_sim_transport(sim); /* destroying the transport destroys the sim */
        printf("# transport: the software controller, %s\n", x->bdf + 4);
        return 0;
    }
    CHECK_OK(nvl_vfio_open(x->bdf, x->mode, &x->t));
    if (x->mode != NVL_VFIO_AUTO)
        CHECK(nvl_vfio_get_mode(x->t) == x->mode, "transport mode %d, asked for %d",
              nvl_vfio_get_mode(x->t), x->mode);
    printf("# transport %s, %s mode\n", x->t->name,
           nvl_vfio_get_mode(x->t) == NVL_VFIO_NOIOMMU ? "no-IOMMU" : "type1 IOMMU");
    return 0;
}

/* Bring-up: every limit the driver read from CAP and Identify equals what the controller was
 * configured with. */
static int test_bringup(struct ctx *x)
{
    if (open_transport(x) != 0)
        return -1;
    /* Ask for more queues than any configuration grants: the driver must clamp. */
    if (ctrl_up(x, 1024) != 0)
        return -1;

    const struct nvl_ctrl_info *i = x->info;
    CHECK(nvl_ctrl_get_state(x->c) == NVL_CTRL_READY, "state %s",
          nvl_ctrl_state_name(nvl_ctrl_get_state(x->c)));
    printf("# %s sn '%s' fw '%s' NVMe %u.%u: %u queues x %u, page %u, MDTS %" PRIu64
           ", LBA %u x %" PRIu64 "\n",
           i->mn, i->sn, i->fr, nvme_vs_mjr(i->vs), nvme_vs_mnr(i->vs), i->n_io_queues,
           i->io_queue_depth, i->page_size, i->mdts_bytes, i->lba_size, i->ns_lbas);
    CHECK(i->vs >= NVME_VS(1, 2, 0), "VS 0x%x", i->vs);
    CHECK(i->page_size == 4096, "page size %u", i->page_size);
    CHECK(i->max_entries == nvme_cap_max_entries(i->cap), "max_entries %u vs CAP", i->max_entries);
    if (x->ex.entries)
        CHECK(i->max_entries == x->ex.entries, "CAP.MQES+1 = %u, expected %u", i->max_entries,
              x->ex.entries);
    if (x->ex.lba)
        CHECK(i->lba_size == x->ex.lba, "LBA size %u, expected %u", i->lba_size, x->ex.lba);
    if (x->ex.mdts)
        CHECK(i->mdts_bytes == x->ex.mdts, "MDTS %" PRIu64 ", expected %" PRIu64, i->mdts_bytes,
              x->ex.mdts);
    CHECK(i->max_transfer > 0 && (!i->mdts_bytes || i->max_transfer <= i->mdts_bytes),
          "max_transfer %u above MDTS", i->max_transfer);
    if (x->ex.queues) {
        CHECK(i->max_io_queues == x->ex.queues, "granted %u queue pairs, expected %u",
              i->max_io_queues, x->ex.queues);
        CHECK(i->n_io_queues == x->ex.queues, "created %u queue pairs, expected %u", i->n_io_queues,
              x->ex.queues);
    }
    CHECK(nvl_ctrl_qpair_count(x->c) == i->n_io_queues, "qpair count");
    CHECK(i->io_queue_depth == QUEUE_DEPTH, "queue depth %u", i->io_queue_depth);
    if (x->ex.size)
        CHECK(x->ns_bytes == x->ex.size, "namespace %" PRIu64 " bytes, expected %" PRIu64,
              x->ns_bytes, x->ex.size);
    if (x->ex.serial)
        CHECK(strcmp(i->sn, x->ex.serial) == 0, "serial '%s', expected '%s'", i->sn, x->ex.serial);
    return 0;
}

/* Identify through the raw admin path matches the driver's cached copy; the LBA format in use
 * gives the LBA size; a bad CNS fails with Invalid Field; a log page reads. */
static int test_identify(struct ctx *x)
{
    struct nvl_dma *buf = NULL;
    struct nvme_sqe cmd;
    uint16_t st = 0;
    int rc, ret = -1;

    CHECK_OK(nvl_dma_create(x->t, 2 * NVME_IDENTIFY_DATA_SIZE, 0, &buf));
    memset(&cmd, 0, sizeof(cmd));
    cmd.opc = NVME_ADMIN_IDENTIFY;
    cmd.cdw10 = NVME_IDENTIFY_CTRL;
    rc = nvl_ctrl_admin(x->c, &cmd, buf, 0, NVME_IDENTIFY_DATA_SIZE, NULL, &st);
    if (rc) {
        fail_at(__FILE__, __LINE__, "Identify Controller: %s, status 0x%x", nvl_strerror(rc), st);
        goto out;
    }
    if (memcmp(buf->vaddr, nvl_ctrl_id(x->c), NVME_IDENTIFY_DATA_SIZE) != 0) {
        fail_at(__FILE__, __LINE__, "Identify Controller differs from the cached copy");
        goto out;
    }
    const struct nvme_id_ctrl *id = buf->vaddr;
    if (x->ex.model && strncmp(id->mn, x->ex.model, strlen(x->ex.model)) != 0) {
        fail_at(__FILE__, __LINE__, "model '%.40s', expected '%s'", id->mn, x->ex.model);
        goto out;
    }

    memset(&cmd, 0, sizeof(cmd));
    cmd.opc = NVME_ADMIN_IDENTIFY;
    cmd.nsid = 1;
    cmd.cdw10 = NVME_IDENTIFY_NS;
    /* A second page at offset 4096: the data lands where PRP1 says, not at the buffer start. */
    rc = nvl_ctrl_admin(x->c, &cmd, buf, NVME_IDENTIFY_DATA_SIZE, NVME_IDENTIFY_DATA_SIZE, NULL,
                        &st);
    if (rc) {
        fail_at(__FILE__, __LINE__, "Identify Namespace: %s, status 0x%x", nvl_strerror(rc), st);
        goto out;
    }
    const struct nvme_id_ns *ns =
        (const struct nvme_id_ns *)((uint8_t *)buf->vaddr + NVME_IDENTIFY_DATA_SIZE);
    if (memcmp(ns, nvl_ctrl_id_ns(x->c), NVME_IDENTIFY_DATA_SIZE) != 0) {
        fail_at(__FILE__, __LINE__, "Identify Namespace differs from the cached copy");
        goto out;
    }
    uint32_t lbads = ns->lbaf[nvme_id_ns_flbas_index(ns)].lbads;
    if ((1u << lbads) != x->info->lba_size || ns->nsze != x->info->ns_lbas) {
        fail_at(__FILE__, __LINE__, "LBA format 2^%u, nsze %" PRIu64 " vs info %u, %" PRIu64, lbads,
                ns->nsze, x->info->lba_size, x->info->ns_lbas);
        goto out;
    }

    memset(&cmd, 0, sizeof(cmd));
    cmd.opc = NVME_ADMIN_IDENTIFY;
    cmd.cdw10 = 0x7f; /* a CNS value no 1.4 controller implements */
    rc = nvl_ctrl_admin(x->c, &cmd, buf, 0, NVME_IDENTIFY_DATA_SIZE, NULL, &st);
    if (rc != -EIO || nvme_status_sct(st) != NVME_SCT_GENERIC ||
        nvme_status_sc(st) != NVME_SC_INVALID_FIELD) {
        fail_at(__FILE__, __LINE__, "Identify CNS 0x7f: rc %d status 0x%x, want -EIO/Invalid Field",
                rc, st);
        goto out;
    }
    if (nvl_ctrl_get_state(x->c) != NVL_CTRL_READY) {
        fail_at(__FILE__, __LINE__, "a failed admin command changed the state");
        goto out;
    }

    rc = nvl_ctrl_get_log_page(x->c, NVME_LOG_SMART, NVME_NSID_ALL, buf, 0, 512, &st);
    if (rc) {
        fail_at(__FILE__, __LINE__, "SMART log: %s, status 0x%x", nvl_strerror(rc), st);
        goto out;
    }
    ret = 0;
out:
    nvl_dma_destroy(buf);
    return ret;
}

/* Every queue pair reads its own range; each range lands where it belongs. */
static int test_every_queue(struct ctx *x)
{
    uint32_t nq = nvl_ctrl_qpair_count(x->c);
    uint32_t lba = x->info->lba_size;
    size_t per_queue = 16384; /* 4 pages: PRP1 + list when unaligned, PRP1 + PRP2 otherwise */
    struct nvl_dma *buf = NULL;
    int ret = -1;

    CHECK_OK(nvl_dma_create(x->t, nq * per_queue, 0, &buf));
    for (uint32_t q = 0; q < nq; q++) {
        struct nvl_qpair *qp = nvl_ctrl_qpair(x->c, q);
        /* Queue q reads at a distinct, queue-dependent disk offset (a prime stride). */
        uint64_t disk_off = (uint64_t)q * 1000003u * 8 % (x->scratch_off - per_queue);
        disk_off -= disk_off % lba;
        if (!qp) {
            fail_at(__FILE__, __LINE__, "no qpair %u", q);
            goto out;
        }
        if (qpair_read_sync(qp, disk_off / lba, (uint32_t)(per_queue / lba), buf, q * per_queue) !=
            0) {
            fail_at(__FILE__, __LINE__, "queue %u (qid %u)", q, q + 1);
            goto out;
        }
        if (verify(x->seed, disk_off, buf, q * per_queue, per_queue, "per-queue read") != 0)
            goto out;
    }
    CHECK(nvl_ctrl_qpair(x->c, nq) == NULL, "qpair %u exists beyond the count", nq);
    printf("# %u queue pairs each read and verified %zu bytes\n", nq, per_queue);
    ret = 0;
out:
    nvl_dma_destroy(buf);
    return ret;
}

/* One queue pair with more commands than it has slots: the ring wraps several times, -EAGAIN
 * tells the submitter to poll, completions may come in any order. */
static int test_queue_wrap(struct ctx *x)
{
    struct nvl_qpair *qp = nvl_ctrl_qpair(x->c, 0);
    uint32_t lba = x->info->lba_size;
    uint32_t n_cmds = QUEUE_DEPTH * 3 + 17;
    struct nvl_dma *buf = NULL;
    struct done d = {0};
    uint32_t submitted = 0, eagain = 0;
    uint64_t deadline = now_ns() + IO_DEADLINE_NS;
    int ret = -1;

    CHECK_OK(nvl_dma_create(x->t, (size_t)n_cmds * 4096, 0, &buf));
    while (d.n < n_cmds) {
        while (submitted < n_cmds) {
            uint64_t disk_off = (uint64_t)submitted * 4096;
            int rc = nvl_qpair_submit_read(qp, disk_off / lba, 4096 / lba, buf,
                                           (size_t)submitted * 4096, on_done, &d);
            if (rc == -EAGAIN) {
                eagain++;
                break;
            }
            if (rc) {
                fail_at(__FILE__, __LINE__, "submit %u: %s", submitted, nvl_strerror(rc));
                goto out;
            }
            submitted++;
        }
        int rc = nvl_qpair_poll(qp, 0);
        if (rc < 0 || now_ns() > deadline) {
            fail_at(__FILE__, __LINE__, "poll: %s after %u of %u", nvl_strerror(rc), d.n, n_cmds);
            goto out;
        }
    }
    if (d.errors || nvl_qpair_outstanding(qp) != 0) {
        fail_at(__FILE__, __LINE__, "%u errors (first status 0x%x), %u outstanding", d.errors,
                d.first_status, nvl_qpair_outstanding(qp));
        goto out;
    }
    if (eagain == 0) {
        fail_at(__FILE__, __LINE__, "%u commands on a %u-entry queue never filled it", n_cmds,
                QUEUE_DEPTH);
        goto out;
    }
    if (verify(x->seed, 0, buf, 0, (size_t)n_cmds * 4096, "wrapped queue") != 0)
        goto out;
    printf("# %u commands through a %u-entry queue, %u submissions refused while full\n", n_cmds,
           QUEUE_DEPTH, eagain);
    ret = 0;
out:
    nvl_dma_destroy(buf);
    return ret;
}

/* A batch of reads at depth over all queues, in small and in MDTS-sized commands. */
static int test_read_batch(struct ctx *x)
{
    uint32_t lba = x->info->lba_size;
    size_t len = 24 * MIB;
    struct nvl_dma *buf = NULL;
    struct nvl_io_opts o;
    uint16_t st = 0;
    int ret = -1;

    if (len > x->scratch_off)
        len = x->scratch_off;
    CHECK_OK(nvl_dma_create(x->t, len, NVL_DMA_TRY_HUGE, &buf));

    struct {
        uint32_t cmd_bytes, depth;
    } runs[] = {{4096, 32}, {0, 8}};
    for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
        size_t run_len = runs[r].cmd_bytes == 4096 ? 4 * MIB : len;
        uint64_t disk_off = r * 4 * MIB;
        memset(buf->vaddr, 0, run_len);
        nvl_io_opts_init(&o);
        o.depth = runs[r].depth;
        o.max_cmd_bytes = runs[r].cmd_bytes;
        uint64_t t0 = now_ns();
        int rc = nvl_io_read(x->c, &o, disk_off / lba, run_len / lba, buf, 0, &st);
        uint64_t t1 = now_ns();
        if (rc) {
            fail_at(__FILE__, __LINE__, "nvl_io_read: %s, status 0x%x", nvl_strerror(rc), st);
            goto out;
        }
        if (verify(x->seed, disk_off, buf, 0, run_len, "batch read") != 0)
            goto out;
        uint32_t cmd = runs[r].cmd_bytes ? runs[r].cmd_bytes : x->info->max_transfer;
        printf("# %zu MiB in %zu commands of %u bytes, depth %u x %u queues: %.0f MB/s\n",
               run_len / MIB, run_len / cmd, cmd, runs[r].depth, nvl_ctrl_qpair_count(x->c),
               run_len / ((t1 - t0) / 1e3));
    }

    /* The driver refuses a range past the namespace's end instead of sending it. */
    int rc = nvl_io_read(x->c, NULL, x->info->ns_lbas - 1, 2, buf, 0, &st);
    if (rc != -EINVAL) {
        fail_at(__FILE__, __LINE__, "read past the end: %d, want -EINVAL", rc);
        goto out;
    }
    ret = 0;
out:
    nvl_dma_destroy(buf);
    return ret;
}

/* Single commands of exactly max_transfer bytes into buffers at awkward offsets: PRP1 with an
 * offset, a PRP list (chained when one list page is not enough), hugepage and 4 KiB backing. */
static int test_mdts_prp(struct ctx *x)
{
    uint32_t lba = x->info->lba_size;
    uint32_t mt = x->info->max_transfer;
    uint32_t page = x->info->page_size;
    struct nvl_qpair *qp = nvl_ctrl_qpair(x->c, nvl_ctrl_qpair_count(x->c) - 1);
    size_t offsets[] = {0, 512, page - 512, page + 2048};
    size_t max_lists = 0;

    for (int huge = 0; huge <= 1; huge++) {
        struct nvl_dma *buf = NULL;
        CHECK_OK(nvl_dma_create(x->t, mt + 2 * (size_t)page, huge ? NVL_DMA_TRY_HUGE : 0, &buf));
        for (size_t k = 0; k < sizeof(offsets) / sizeof(offsets[0]); k++) {
            size_t off = offsets[k];
            uint64_t disk_off = (uint64_t)(k + 1) * mt + (uint64_t)huge * 8 * MIB;
            uint32_t len = cmd_bytes_at(x, off);
            size_t lists = nvl_prp_list_pages(off, len, page);
            if (lists > max_lists)
                max_lists = lists;
            memset(buf->vaddr, 0xa5, buf->len);
            int rc = qpair_read_sync(qp, disk_off / lba, len / lba, buf, off);
            if (rc == 0)
                rc = verify(x->seed, disk_off, buf, off, len, "MDTS read");
            /* Bytes around the transfer stay untouched: the controller wrote exactly len. */
            const uint8_t *b = buf->vaddr;
            if (rc == 0 && ((off && b[off - 1] != 0xa5) || b[off + len] != 0xa5)) {
                fail_at(__FILE__, __LINE__, "bytes outside the transfer were written");
                rc = -1;
            }
            if (rc) {
                fail_at(__FILE__, __LINE__, "%s buffer, offset %zu, %zu list pages",
                        huge ? "huge" : "4 KiB", off, lists);
                nvl_dma_destroy(buf);
                return -1;
            }
        }
        printf("# %s-backed buffer (%s): %u-byte reads at 4 offsets%s\n",
               buf->huge ? "2 MiB" : "4 KiB",
               buf->contiguous ? "one IOVA range" : "per-page addresses", mt,
               cmd_bytes_at(x, 512) < mt ? " (a page less when unaligned: --max-pages)" : "");
        nvl_dma_destroy(buf);
    }
    printf("# up to %zu PRP list page(s) per command%s\n", max_lists,
           max_lists > 1 ? " (chained)" : "");
    if (mt > 2 * MIB)
        CHECK(max_lists >= 2, "a %u-byte transfer should need a chained PRP list", mt);
    else
        CHECK(max_lists >= 1, "a %u-byte transfer should need a PRP list", mt);

    /* One block more than the limit is refused by the driver. */
    struct nvl_dma *big = NULL;
    CHECK_OK(nvl_dma_create(x->t, mt + lba, 0, &big));
    struct done d = {0};
    int rc = nvl_qpair_submit_read(qp, 0, mt / lba + 1, big, 0, on_done, &d);
    nvl_dma_destroy(big);
    CHECK(rc == -EINVAL, "a read of max_transfer + 1 block: %d, want -EINVAL", rc);
    return 0;
}

/* Writes the scratch region in three shapes, flushes, reads it back through other queues and
 * checks every byte; the block before the scratch region is untouched. The host checks the
 * image file afterwards too (check-image). */
static int test_write_readback(struct ctx *x)
{
    uint32_t lba = x->info->lba_size;
    uint64_t wseed = x->seed ^ WRITE_SEED_XOR;
    uint32_t nq = nvl_ctrl_qpair_count(x->c);
    struct nvl_dma *src = NULL, *dst = NULL;
    struct nvl_io_opts o;
    uint16_t st = 0;
    int ret = -1;

    CHECK_OK(nvl_dma_create(x->t, x->scratch_len + 4096, NVL_DMA_TRY_HUGE, &src));
    if (nvl_dma_create(x->t, x->scratch_len, 0, &dst) != 0) {
        fail_at(__FILE__, __LINE__, "dma_create dst");
        goto out;
    }
    /* src holds the write pattern of the scratch region at buffer offset 512, so writes come
     * from an unaligned PRP1 too. */
    pattern_fill(wseed, x->scratch_off, (uint8_t *)src->vaddr + 512, x->scratch_len);

    /* 1: one block on queue 0. */
    struct done d = {0};
    struct nvl_qpair *q0 = nvl_ctrl_qpair(x->c, 0);
    int rc = nvl_qpair_submit_write(q0, x->scratch_off / lba, 1, src, 512, on_done, &d);
    if (rc || poll_until(q0, &d, 1) != 0) {
        fail_at(__FILE__, __LINE__, "single-block write: %s", nvl_strerror(rc));
        goto out;
    }
    /* 2: one max_transfer command on the last queue. */
    struct nvl_qpair *ql = nvl_ctrl_qpair(x->c, nq - 1);
    uint32_t mt = cmd_bytes_at(x, 512 + lba);
    memset(&d, 0, sizeof(d));
    rc =
        nvl_qpair_submit_write(ql, x->scratch_off / lba + 1, mt / lba, src, 512 + lba, on_done, &d);
    if (rc || poll_until(ql, &d, 1) != 0) {
        fail_at(__FILE__, __LINE__, "MDTS write: %s", nvl_strerror(rc));
        goto out;
    }
    /* 3: the rest over all queues at depth. */
    uint64_t done_bytes = lba + (uint64_t)mt;
    nvl_io_opts_init(&o);
    o.depth = 16;
    o.max_cmd_bytes = cmd_bytes_at(x, 512 + done_bytes);
    rc = nvl_io_write(x->c, &o, (x->scratch_off + done_bytes) / lba,
                      (x->scratch_len - done_bytes) / lba, src, 512 + done_bytes, &st);
    if (rc) {
        fail_at(__FILE__, __LINE__, "nvl_io_write: %s, status 0x%x", nvl_strerror(rc), st);
        goto out;
    }
    rc = nvl_io_flush(x->c, NULL, &st);
    if (rc) {
        fail_at(__FILE__, __LINE__, "nvl_io_flush: %s, status 0x%x", nvl_strerror(rc), st);
        goto out;
    }

    /* Read back into a zeroed buffer, from the other end of the queue range. */
    memset(dst->vaddr, 0, dst->len);
    nvl_io_opts_init(&o);
    o.first_queue = nq > 1 ? nq / 2 : 0;
    o.depth = 8;
    rc = nvl_io_read(x->c, &o, x->scratch_off / lba, x->scratch_len / lba, dst, 0, &st);
    if (rc) {
        fail_at(__FILE__, __LINE__, "read back: %s, status 0x%x", nvl_strerror(rc), st);
        goto out;
    }
    if (verify(wseed, x->scratch_off, dst, 0, x->scratch_len, "read-back") != 0)
        goto out;
    /* The block just before the scratch region still holds the image pattern. */
    if (qpair_read_sync(q0, x->scratch_off / lba - 1, 1, dst, 0) != 0 ||
        verify(x->seed, x->scratch_off - lba, dst, 0, lba, "block before the scratch region") != 0)
        goto out;
    printf("# wrote, flushed and read back %" PRIu64 " MiB\n", x->scratch_len / MIB);
    ret = 0;
out:
    nvl_dma_destroy(dst);
    nvl_dma_destroy(src);
    return ret;
}

/* A controller reset keeps the queues usable. */
static int test_reset(struct ctx *x)
{
    struct nvl_dma *buf = NULL;
    uint16_t st = 0;
    int ret = -1;

    CHECK_OK(nvl_ctrl_reset(x->c));
    CHECK(nvl_ctrl_get_state(x->c) == NVL_CTRL_READY, "state after reset: %s",
          nvl_ctrl_state_name(nvl_ctrl_get_state(x->c)));
    CHECK_OK(nvl_dma_create(x->t, MIB, 0, &buf));
    int rc = nvl_io_read(x->c, NULL, MIB / x->info->lba_size, MIB / x->info->lba_size, buf, 0, &st);
    if (rc) {
        fail_at(__FILE__, __LINE__, "read after reset: %s, status 0x%x", nvl_strerror(rc), st);
        goto out;
    }
    if (verify(x->seed, MIB, buf, 0, MIB, "read after reset") != 0)
        goto out;
    ret = 0;
out:
    nvl_dma_destroy(buf);
    return ret;
}

/* Clean shutdown, then a second bring-up on the same transport that reads correctly. After
 * destroy the controller must be stopped (RDY = 0, no fatal status); the driver may disable it
 * after the shutdown completes, which clears SHST, so the shutdown itself (CC.SHN written and
 * acknowledged) is checked by driver-test.sh in QEMU's trace of the controller. */
static int test_shutdown(struct ctx *x)
{
    struct nvl_dma *buf = NULL;
    uint16_t st = 0;

    nvl_ctrl_destroy(x->c);
    x->c = NULL;
    uint32_t csts = nvl_mmio_read32(x->t->bar0, NVME_REG_CSTS);
    CHECK(!nvme_csts_cfs(csts) &&
              (nvme_csts_shst(csts) == NVME_CSTS_SHST_COMPLETE || !nvme_csts_rdy(csts)),
          "CSTS 0x%x after destroy: the controller neither shut down nor stopped", csts);

    if (ctrl_up(x, 2) != 0)
        return -1;
    CHECK_OK(nvl_dma_create(x->t, MIB, 0, &buf));
    int rc = nvl_io_read(x->c, NULL, 0, MIB / x->info->lba_size, buf, 0, &st);
    int vr = rc ? -1 : verify(x->seed, 0, buf, 0, MIB, "read after a second bring-up");
    nvl_dma_destroy(buf);
    CHECK(rc == 0, "read after a second bring-up: %s, status 0x%x", nvl_strerror(rc), st);
    CHECK(vr == 0, "data after a second bring-up");
    nvl_ctrl_destroy(x->c);
    x->c = NULL;
    csts = nvl_mmio_read32(x->t->bar0, NVME_REG_CSTS);
    CHECK(!nvme_csts_cfs(csts) &&
              (nvme_csts_shst(csts) == NVME_CSTS_SHST_COMPLETE || !nvme_csts_rdy(csts)),
          "CSTS 0x%x after the second destroy", csts);
    nvl_transport_destroy(x->t);
    x->t = NULL;
    return 0;
}

/* ---- commands ----------------------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr,
            "usage: nvme_guest_test make-image FILE MIB [--seed S]\n"
            "       nvme_guest_test check-image FILE [--seed S] [--scratch-mib M]\n"
            "       nvme_guest_test run BDF|sim:SPEC [--expect-lba N] [--expect-mdts BYTES]\n"
            "                [--expect-queues N] [--expect-entries N] [--expect-serial S]\n"
            "                [--expect-model M]\n"
            "                [--expect-size BYTES] [--seed S] [--scratch-mib M]\n"
            "                [--mode auto|type1|noiommu] [--max-pages N]\n"
            "       nvme_guest_test dmar-probe BDF\n");
    return 2;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;

    errno = 0;
    *v = strtoull(s, &end, 0);
    return errno || end == s || *end ? -1 : 0;
}

static int parse_opts(struct ctx *x, int argc, char **argv, int first)
{
    for (int i = first; i < argc; i++) {
        const char *k = argv[i];
        uint64_t v = 0;
        if (i + 1 >= argc)
            return usage();
        const char *val = argv[++i];
        if (strcmp(k, "--expect-serial") == 0) {
            x->ex.serial = val;
            continue;
        }
        if (strcmp(k, "--expect-model") == 0) {
            x->ex.model = val;
            continue;
        }
        if (strcmp(k, "--mode") == 0) {
            if (strcmp(val, "auto") == 0)
                x->mode = NVL_VFIO_AUTO;
            else if (strcmp(val, "type1") == 0)
                x->mode = NVL_VFIO_TYPE1;
            else if (strcmp(val, "noiommu") == 0)
                x->mode = NVL_VFIO_NOIOMMU;
            else
                return usage();
            continue;
        }
        if (parse_u64(val, &v) != 0) {
            fprintf(stderr, "nvme_guest_test: %s: not a number: '%s'\n", k, val);
            return 2;
        }
        if (strcmp(k, "--expect-lba") == 0)
            x->ex.lba = (uint32_t)v;
        else if (strcmp(k, "--expect-mdts") == 0)
            x->ex.mdts = v;
        else if (strcmp(k, "--expect-queues") == 0)
            x->ex.queues = (uint32_t)v;
        else if (strcmp(k, "--expect-entries") == 0)
            x->ex.entries = (uint32_t)v;
        else if (strcmp(k, "--expect-size") == 0)
            x->ex.size = v;
        else if (strcmp(k, "--seed") == 0)
            x->seed = v;
        else if (strcmp(k, "--scratch-mib") == 0)
            x->scratch_mib = v;
        else if (strcmp(k, "--max-pages") == 0)
            x->max_pages = (uint32_t)v;
        else
            return usage();
    }
    return 0;
}

static int cmd_make_image(const char *path, uint64_t mib, uint64_t seed)
{
    static uint64_t chunk[MIB / 8];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd < 0) {
        fprintf(stderr, "nvme_guest_test: %s: %s\n", path, strerror(errno));
        return 1;
    }
    for (uint64_t m = 0; m < mib; m++) {
        pattern_fill(seed, m * MIB, chunk, MIB);
        if (write(fd, chunk, MIB) != (ssize_t)MIB) {
            fprintf(stderr, "nvme_guest_test: writing %s: %s\n", path, strerror(errno));
            close(fd);
            return 1;
        }
    }
    close(fd);
    return 0;
}

static int cmd_check_image(const char *path, uint64_t seed, uint64_t scratch_mib)
{
    static uint64_t chunk[MIB / 8];
    int fd = open(path, O_RDONLY);
    off_t size;
    int ret = 0;

    if (fd < 0 || (size = lseek(fd, 0, SEEK_END)) < 0) {
        fprintf(stderr, "nvme_guest_test: %s: %s\n", path, strerror(errno));
        return 1;
    }
    uint64_t scratch_off = (uint64_t)size - scratch_mib * MIB;
    for (uint64_t off = 0; off < (uint64_t)size; off += MIB) {
        uint64_t s = off >= scratch_off ? seed ^ WRITE_SEED_XOR : seed;
        if (pread(fd, chunk, MIB, (off_t)off) != (ssize_t)MIB) {
            fprintf(stderr, "nvme_guest_test: short read of %s at %" PRIu64 "\n", path, off);
            ret = 1;
            break;
        }
        size_t bad = pattern_mismatch(s, off, chunk, MIB);
        if (bad != MIB) {
            fprintf(stderr, "nvme_guest_test: %s: byte %" PRIu64 " holds the wrong %s pattern\n",
                    path, off + bad, s == seed ? "image" : "write");
            ret = 1;
            break;
        }
    }
    close(fd);
    if (ret == 0)
        printf("check-image: %s: %" PRIu64 " MiB of image pattern, %" PRIu64
               " MiB of write pattern: ok\n",
               path, scratch_off / MIB, scratch_mib);
    return ret;
}

static int cmd_run(struct ctx *x)
{
    static const struct {
        const char *name;
        int (*fn)(struct ctx *);
    } tests[] = {
        {"bring-up from CAP and Identify", test_bringup},
        {"Identify, admin errors, log page", test_identify},
        {"every I/O queue pair", test_every_queue},
        {"queue wrap-around and full queue", test_queue_wrap},
        {"batch of reads at depth over all queues", test_read_batch},
        {"MDTS-sized reads through PRP lists", test_mdts_prp},
        {"write, flush, read back", test_write_readback},
        {"controller reset", test_reset},
        {"clean shutdown and second bring-up", test_shutdown},
    };
    size_t n = sizeof(tests) / sizeof(tests[0]);
    int failed = 0;

    printf("1..%zu\n", n);
    for (size_t i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        /* Without a controller (bring-up failed) the later tests cannot run. */
        int rc = (i > 0 && !x->c) ? -1 : tests[i].fn(x);
        printf("%s %zu - %s (%.2f s)\n", rc ? "not ok" : "ok", i + 1, tests[i].name,
               (now_ns() - t0) / 1e9);
        fflush(stdout);
        failed += rc != 0;
    }
    nvl_ctrl_destroy(x->c);
    nvl_transport_destroy(x->t);
    printf("# %s: %zu of %zu tests passed\n", failed ? "FAILED" : "PASSED", n - failed, n);
    return failed ? 1 : 0;
}

/* Reads one block into an IOVA that was never mapped. Exit 0 means the controller reported
 * success; whether the DMA was blocked only the IOMMU's fault log can tell. */
static int cmd_dmar_probe(struct ctx *x)
{
    struct nvl_dma *real = NULL;
    struct done d = {0};

    if (nvl_vfio_open(x->bdf, NVL_VFIO_TYPE1, &x->t) || ctrl_up(x, 1) ||
        nvl_dma_create(x->t, 4096, 0, &real)) {
        fprintf(stderr, "dmar-probe: bring-up failed\n");
        return 1;
    }
    struct nvl_dma fake = *real;
    fake.iova = UNMAPPED_IOVA;
    fake.contiguous = 1;
    struct nvl_qpair *qp = nvl_ctrl_qpair(x->c, 0);
    int rc = nvl_qpair_submit_read(qp, 0, 4096 / x->info->lba_size, &fake, 0, on_done, &d);
    uint64_t deadline = now_ns() + IO_DEADLINE_NS;
    while (rc == 0 && d.n == 0 && now_ns() < deadline)
        rc = nvl_qpair_poll(qp, 0) < 0 ? -EIO : 0;
    printf("dmar-probe: read to unmapped IOVA 0x%llx: submit/poll %d, completed %u, error %d, "
           "status 0x%x\n",
           UNMAPPED_IOVA, rc, d.n, d.first_err, d.first_status);
    nvl_dma_destroy(real);
    nvl_ctrl_destroy(x->c);
    nvl_transport_destroy(x->t);
    return rc == 0 && d.n == 1 ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct ctx x = {.seed = DEFAULT_SEED, .scratch_mib = DEFAULT_SCRATCH, .mode = NVL_VFIO_AUTO};
    uint64_t mib;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3)
        return usage();
    if (strcmp(argv[1], "make-image") == 0) {
        if (argc < 4 || parse_u64(argv[3], &mib) || parse_opts(&x, argc, argv, 4))
            return usage();
        return cmd_make_image(argv[2], mib, x.seed);
    }
    if (strcmp(argv[1], "check-image") == 0) {
        if (parse_opts(&x, argc, argv, 3))
            return usage();
        return cmd_check_image(argv[2], x.seed, x.scratch_mib);
    }
    x.bdf = argv[2];
    if (parse_opts(&x, argc, argv, 3))
        return usage();
    if (strcmp(argv[1], "run") == 0)
        return cmd_run(&x);
    if (strcmp(argv[1], "dmar-probe") == 0)
        return cmd_dmar_probe(&x);
    return usage();
}
