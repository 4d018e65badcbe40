/* bench_loader: file-path read bandwidth and CPU cost on a real disk, next to dd iflag=direct on
 * the same file in the same run.
 *
 *   bench_loader [--size GiB] [--layer MiB] [--runs N] [--md] FILE
 *
 * FILE is read whole (written first, with random bytes, when missing or shorter than --size) by:
 *   dd iflag=direct bs=1M and bs=64M           the reference a plain O_DIRECT reader gets
 *   file backend, io_uring, into a slot        zero copy: the model's streaming path
 *   file backend, io_uring, into host memory   the blocking load_layer() path
 *   file backend, pread thread pool, into a slot
 *   gds backend into device memory             when libcufile and a GPU are present
 * in reads of --layer MiB (default 669, a 70B Q6_K-sized layer). Each row is the median of --runs
 * (default 3): GB/s (10^9 bytes per second) and CPU seconds per GB (process user + system time,
 * all threads, for the loader; the dd child's for dd). --md prints the table as Markdown for
 * docs/benchmarks.md. Page cache: every path here uses O_DIRECT, so no cache is involved; the
 * loader's reason line says when a filesystem refused O_DIRECT. */
#include "nvl_loader.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#ifdef NVL_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define MIB      ((uint64_t)1 << 20)
#define GIB      ((uint64_t)1 << 30)
#define MAX_RUNS 16

extern char **environ;

struct row {
    char name[96];
    double gbps;
    double cpu_per_gb;
    char note[256];
    bool skipped;
};

struct cfg {
    const char *path;
    uint64_t size;
    uint64_t layer;
    int runs;
    bool md;
};

/* Writes random bytes until the file holds `size`; keeps what is there. */
static int file_prepare(const char *path, uint64_t size)
{
    struct stat st;
    uint64_t have = 0, s = 0x9E3779B97F4A7C15ull;
    uint64_t *buf;
    int fd = open(path, O_WRONLY | O_CREAT, 0644);

    if (fd < 0) {
        fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
        return -errno;
    }
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        have = (uint64_t)st.st_size;
    if (!S_ISREG(st.st_mode) || have >= size) {
        close(fd);
        return 0;
    }
    buf = malloc(64 * MIB);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    fprintf(stderr, "writing %" PRIu64 " MiB of random bytes to %s ...\n", (size - have) / MIB,
            path);
    for (uint64_t off = have; off < size; off += 64 * MIB) {
        uint64_t n = size - off < 64 * MIB ? size - off : 64 * MIB;

        for (uint64_t i = 0; i < n / 8; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            buf[i] = s;
        }
        if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n) {
            fprintf(stderr, "write %s: %s\n", path, strerror(errno));
            free(buf);
            close(fd);
            return -EIO;
        }
    }
    free(buf);
    fsync(fd);
    close(fd);
    return 0;
}

/* dd iflag=direct of the whole file to /dev/null; CPU time is the child's. */
static void bench_dd(const struct cfg *c, const char *bs, uint64_t bs_bytes, struct row *row)
{
    double gbps[MAX_RUNS], cpu[MAX_RUNS];
    char arg_if[4200], arg_bs[64], arg_count[64];
    uint64_t count = c->size / bs_bytes;

    snprintf(row->name, sizeof(row->name), "dd iflag=direct bs=%s", bs);
    snprintf(arg_if, sizeof(arg_if), "if=%s", c->path);
    snprintf(arg_bs, sizeof(arg_bs), "bs=%s", bs);
    snprintf(arg_count, sizeof(arg_count), "count=%" PRIu64, count);
    for (int i = 0; i < c->runs; i++) {
        char *argv[] = {"dd",      arg_if,         "of=/dev/null", arg_bs,
                        arg_count, "iflag=direct", "status=none",  NULL};
        double t0 = bench_now_s(), c0 = bench_children_cpu_s(), t1;
        int status;
        pid_t pid;

        if (posix_spawnp(&pid, "dd", NULL, NULL, argv, environ) ||
            waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
            row->skipped = true;
            snprintf(row->note, sizeof(row->note), "dd failed");
            return;
        }
        t1 = bench_now_s();
        gbps[i] = (double)(count * bs_bytes) / (t1 - t0) / 1e9;
        cpu[i] = (bench_children_cpu_s() - c0) / ((double)(count * bs_bytes) / 1e9);
    }
    row->gbps = bench_median(gbps, c->runs);
    row->cpu_per_gb = bench_median(cpu, c->runs);
    snprintf(row->note, sizeof(row->note), "%" PRIu64 " MiB, one read in flight",
             count * bs_bytes / MIB);
}

/* Reads the whole file through one loader in layer-sized reads: returns GB/s and CPU s/GB. */
static int loader_pass(struct nvl_loader *l, const struct cfg *c, enum nvl_dst_kind kind, void *dst,
                       double *gbps, double *cpu_per_gb)
{
    uint64_t cap = nvl_loader_capacity(l) < c->size ? nvl_loader_capacity(l) : c->size, done = 0;
    double t0 = bench_now_s(), c0 = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID);
    uint32_t slot = 0;

    while (done < cap) {
        struct nvl_extent e = {done, cap - done < c->layer ? cap - done : c->layer};
        struct nvl_dst d = kind == NVL_DST_SLOT     ? nvl_dst_slot(slot)
                           : kind == NVL_DST_DEVICE ? nvl_dst_device(dst, c->layer)
                                                    : nvl_dst_host(dst, c->layer);
        struct nvl_read *r;
        int rc = nvl_loader_read_async(l, &e, 1, d, &r);

        if (!rc)
            rc = nvl_loader_wait(r, NULL);
        if (rc) {
            fprintf(stderr, "read at %" PRIu64 ": %s\n", done, nvl_strerror(rc));
            return rc;
        }
        done += e.len;
        slot ^= 1;
    }
    *gbps = (double)cap / (bench_now_s() - t0) / 1e9;
    *cpu_per_gb = (bench_clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / ((double)cap / 1e9);
    return 0;
}

static void bench_loader(const struct cfg *c, enum nvl_loader_backend b, const char *engine,
                         enum nvl_dst_kind kind, struct row *row)
{
    double gbps[MAX_RUNS], cpu[MAX_RUNS];
    struct nvl_loader_opts o;
    struct nvl_loader *l;
    void *dst = NULL;
    char why[256];
    int rc;

    snprintf(row->name, sizeof(row->name), "%s%s%s -> %s", nvl_loader_backend_str(b),
             engine ? " " : "", engine ? engine : "",
             kind == NVL_DST_SLOT     ? "pinned slot (zero copy)"
             : kind == NVL_DST_DEVICE ? "device memory"
                                      : "host memory");
    nvl_loader_opts_init(&o);
    o.backend = b;
    o.path = c->path;
    o.n_slots = 2;
    o.slot_bytes = c->layer + 2 * MIB;
    if (engine)
        setenv("NVL_FILE_ENGINE", engine, 1);
    if (nvl_loader_probe(b, &o, why, sizeof(why)) < 0) {
        row->skipped = true;
        snprintf(row->note, sizeof(row->note), "%s", why);
        unsetenv("NVL_FILE_ENGINE");
        return;
    }
    rc = nvl_loader_create(&o, &l);
    unsetenv("NVL_FILE_ENGINE");
    if (rc) {
        row->skipped = true;
        snprintf(row->note, sizeof(row->note), "create failed: %s", nvl_strerror(rc));
        return;
    }
    if (kind == NVL_DST_HOST) {
        dst = aligned_alloc(4096, c->layer);
    } else if (kind == NVL_DST_DEVICE) {
#ifdef NVL_HAVE_CUDA
        if (cudaMalloc(&dst, c->layer) != cudaSuccess)
            dst = NULL;
#endif
    }
    if (kind != NVL_DST_SLOT && !dst) {
        row->skipped = true;
        snprintf(row->note, sizeof(row->note), "no destination memory");
        nvl_loader_destroy(l);
        return;
    }
    for (int i = 0; i < c->runs && !row->skipped; i++) {
        if (loader_pass(l, c, kind, dst, &gbps[i], &cpu[i])) {
            row->skipped = true;
            snprintf(row->note, sizeof(row->note), "read failed");
        }
    }
    if (!row->skipped) {
        row->gbps = bench_median(gbps, c->runs);
        row->cpu_per_gb = bench_median(cpu, c->runs);
        snprintf(row->note, sizeof(row->note), "%s", nvl_loader_reason(l));
        /* Keep the chosen backend's own part of the reason: up to "; not chosen". */
        if (strstr(row->note, "; not chosen"))
            *strstr(row->note, "; not chosen") = '\0';
    }
    if (kind == NVL_DST_HOST)
        free(dst);
#ifdef NVL_HAVE_CUDA
    else if (kind == NVL_DST_DEVICE)
        cudaFree(dst);
#endif
    nvl_loader_destroy(l);
}

static void print_rows(const struct cfg *c, const struct row *rows, int n)
{
    if (c->md) {
        printf("| path | GB/s | CPU s/GB | note |\n|---|---:|---:|---|\n");
        for (int i = 0; i < n; i++) {
            if (rows[i].skipped)
                printf("| %s | - | - | %s |\n", rows[i].name, rows[i].note);
            else
                printf("| %s | %.2f | %.3f | %s |\n", rows[i].name, rows[i].gbps,
                       rows[i].cpu_per_gb, rows[i].note);
        }
        return;
    }
    printf("%-48s %8s %10s  %s\n", "path", "GB/s", "CPU s/GB", "note");
    for (int i = 0; i < n; i++) {
        if (rows[i].skipped)
            printf("%-48s %8s %10s  %s\n", rows[i].name, "-", "-", rows[i].note);
        else
            printf("%-48s %8.2f %10.3f  %s\n", rows[i].name, rows[i].gbps, rows[i].cpu_per_gb,
                   rows[i].note);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_loader [--size GiB] [--layer MiB] [--runs N] [--md] FILE\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"size", required_argument, NULL, 's'}, {"layer", required_argument, NULL, 'l'},
        {"runs", required_argument, NULL, 'r'}, {"md", no_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    struct cfg c = {NULL, 4 * GIB, 669 * MIB, 3, false};
    struct row rows[8];
    struct stat st;
    int n = 0, opt;

    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        double v;

        switch (opt) {
        case 's':
        case 'l':
        case 'r':
            v = strtod(optarg, NULL);
            if (v <= 0) {
                usage(stderr);
                return 2;
            }
            if (opt == 's')
                c.size = (uint64_t)(v * (double)GIB) / MIB * MIB;
            else if (opt == 'l')
                c.layer = (uint64_t)v * MIB;
            else
                c.runs = v > MAX_RUNS ? MAX_RUNS : (int)v;
            break;
        case 'm':
            c.md = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    c.path = argv[optind];
    if (file_prepare(c.path, c.size))
        return 1;
    if (stat(c.path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size < c.size)
        c.size = (uint64_t)st.st_size;
    if (c.layer > c.size)
        c.layer = c.size;

    memset(rows, 0, sizeof(rows));
    bench_dd(&c, "1M", MIB, &rows[n++]);
    bench_dd(&c, "64M", 64 * MIB, &rows[n++]);
    bench_loader(&c, NVL_LOADER_FILE, "uring", NVL_DST_SLOT, &rows[n++]);
    bench_loader(&c, NVL_LOADER_FILE, "uring", NVL_DST_HOST, &rows[n++]);
    bench_loader(&c, NVL_LOADER_FILE, "pread", NVL_DST_SLOT, &rows[n++]);
    bench_loader(&c, NVL_LOADER_GDS, NULL, NVL_DST_DEVICE, &rows[n++]);
    printf("file %s: %.2f GiB, reads of %" PRIu64 " MiB, median of %d runs\n", c.path,
           (double)c.size / (double)GIB, c.layer / MIB, c.runs);
    print_rows(&c, rows, n);
    return 0;
}
