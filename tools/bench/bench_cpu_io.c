/* bench_cpu_io: how fast the CPU-side driver moves data through the software controller.
 *
 * Three numbers from one run, on one submitting CPU thread:
 *   memcpy      plain memcpy bandwidth between two large buffers (the ceiling: the sim itself
 *               copies every byte once, from its backing memory into the DMA buffer);
 *   read MDTS   sequential reads of MDTS-sized commands through nvl_io_read, spread over the
 *               I/O queues at depth;
 *   read 4 KiB  random 4 KiB reads on one queue pair at depth through the async qpair API:
 *               IOPS per submitting core; once more with the sim in null mode (no data
 *               moved), which bounds the per-command cost of driver plus sim.
 * The sim runs in memory mode with its own service thread(s), so on a small machine the
 * numbers include the cost of sharing cores with it. */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "nvl_driver.h"
#include "nvl_sim.h"
#include "nvl_sim/sim.h"

struct args {
    uint32_t size_mib;     /* namespace size */
    uint32_t queues;       /* I/O queue pairs for the MDTS test */
    uint32_t depth;        /* commands in flight per queue */
    uint32_t sim_threads;  /* sim service threads */
    double seconds;        /* per measurement */
    char mdts_list[64];    /* comma-separated MDTS values (4 KiB units, log2) */
    const char *sim_extra; /* extra sim options */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_cpu_io [options]\n"
               "  --size MiB        namespace size in memory (default 512)\n"
               "  --mdts LIST       MDTS values to test, log2 of 4 KiB units (default 5,9)\n"
               "  --queues N        I/O queue pairs for the MDTS reads (default 2)\n"
               "  --depth N         commands in flight per queue (default 32)\n"
               "  --sim-threads N   sim service threads (default 1)\n"
               "  --seconds S       duration of each measurement (default 2)\n"
               "  --sim SPEC        extra sim options (see nvl_sim_opts_parse)\n");
}

static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"size", required_argument, NULL, 's'},
        {"mdts", required_argument, NULL, 'm'},
        {"queues", required_argument, NULL, 'q'},
        {"depth", required_argument, NULL, 'd'},
        {"sim-threads", required_argument, NULL, 't'},
        {"seconds", required_argument, NULL, 'S'},
        {"sim", required_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    a->size_mib = 512;
    a->queues = 2;
    a->depth = 32;
    a->sim_threads = 1;
    a->seconds = 2.0;
    snprintf(a->mdts_list, sizeof(a->mdts_list), "5,9");
    a->sim_extra = NULL;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            a->size_mib = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 'm':
            snprintf(a->mdts_list, sizeof(a->mdts_list), "%s", optarg);
            break;
        case 'q':
            a->queues = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 'd':
            a->depth = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 't':
            a->sim_threads = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 'S':
            a->seconds = strtod(optarg, NULL);
            break;
        case 'x':
            a->sim_extra = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (a->size_mib < 64 || a->queues == 0 || a->depth == 0 || a->sim_threads == 0 ||
        a->seconds <= 0) {
        fprintf(stderr, "bench_cpu_io: bad arguments (size >= 64 MiB, counts > 0)\n");
        return -EINVAL;
    }
    return 0;
}

/* Plain memcpy between two 256 MiB buffers (far beyond any cache): mean bandwidth over
 * `seconds`, measured the same way as the reads. */
static double bench_memcpy(double seconds)
{
    const size_t n = 256u << 20;
    uint8_t *a = malloc(n), *b = malloc(n);
    double t0, t;
    size_t bytes = 0;

    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    memset(a, 1, n);
    memset(b, 2, n);
    memcpy(b, a, n); /* warm-up: both buffers faulted in */
    t0 = bench_now_s();
    do {
        memcpy(b, a, n);
        bytes += n;
        a[bytes % n] ^= b[(bytes / 3) % n]; /* keep the copies observable */
        t = bench_now_s();
    } while (t - t0 < seconds);
    free(a);
    free(b);
    return bytes / (t - t0) / 1e9;
}

struct sim_env {
    struct nvl_sim *sim;
    struct nvl_ctrl *ctrl;
};

static int sim_env_create(const struct args *a, const char *mode, uint32_t mdts, uint32_t queues,
                          uint32_t depth, struct sim_env *e)
{
    struct nvl_sim_opts so;
    struct nvl_ctrl_opts co;
    char spec[256], err[128];
    int rc;

    nvl_sim_opts_init(&so);
    snprintf(spec, sizeof(spec), "mode=%s,size=%uM,lba=512,mdts=%u,threads=%u,queues=%u", mode,
             a->size_mib, mdts, a->sim_threads, queues);
    rc = nvl_sim_opts_parse(&so, spec, err, sizeof(err));
    if (rc == 0 && a->sim_extra)
        rc = nvl_sim_opts_parse(&so, a->sim_extra, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "bench_cpu_io: bad sim options: %s\n", err);
        return rc;
    }
    rc = nvl_sim_create(&so, &e->sim);
    if (rc) {
        fprintf(stderr, "bench_cpu_io: cannot create the sim: %s\n", nvl_strerror(rc));
        return rc;
    }
    nvl_ctrl_opts_init(&co);
    co.n_io_queues = queues;
    co.io_queue_depth = depth + 1;
    co.max_transfer = 0;
    rc = nvl_ctrl_create(nvl_sim_transport(e->sim), &co, &e->ctrl);
    if (rc) {
        fprintf(stderr, "bench_cpu_io: controller bring-up failed: %s\n", nvl_strerror(rc));
        nvl_sim_destroy(e->sim);
        return rc;
    }
    return 0;
}

static int sim_env_destroy(struct sim_env *e)
{
    struct nvl_sim_stats st;

    nvl_ctrl_destroy(e->ctrl);
    nvl_sim_get_stats(e->sim, &st);
    nvl_sim_destroy(e->sim);
    if (st.violations_total || st.errors) {
        fprintf(stderr, "bench_cpu_io: the sim counted %llu rule violations, %llu errors\n",
                (unsigned long long)st.violations_total, (unsigned long long)st.errors);
        return -EIO;
    }
    return 0;
}

/* Sequential reads of the whole namespace, over and over, in calls of 64 MiB split into
 * MDTS-sized commands. Returns GB/s or a negative errno. */
static double bench_read_mdts(const struct args *a, uint32_t mdts, uint32_t *cmd_bytes)
{
    const size_t call = 64u << 20;
    struct nvl_io_opts io;
    struct sim_env e;
    struct nvl_dma *buf = NULL;
    uint64_t bytes = 0, slba = 0, ns_lbas, call_lbas;
    double t0, t;
    int rc;

    rc = sim_env_create(a, "mem", mdts, a->queues, a->depth, &e);
    if (rc)
        return rc;
    *cmd_bytes = nvl_ctrl_get_info(e.ctrl)->max_transfer;
    ns_lbas = nvl_ctrl_get_info(e.ctrl)->ns_lbas;
    call_lbas = call / 512;
    rc = nvl_dma_create(nvl_sim_transport(e.sim), call, NVL_DMA_TRY_HUGE, &buf);
    if (rc)
        goto out;
    nvl_io_opts_init(&io);
    io.depth = a->depth;
    /* One warm-up call faults in the sim's backing memory. */
    rc = nvl_io_read(e.ctrl, &io, 0, call_lbas, buf, 0, NULL);
    t0 = bench_now_s();
    do {
        if (slba + call_lbas > ns_lbas)
            slba = 0;
        rc = nvl_io_read(e.ctrl, &io, slba, call_lbas, buf, 0, NULL);
        if (rc)
            break;
        slba += call_lbas;
        bytes += call;
        t = bench_now_s();
    } while (t - t0 < a->seconds);
out:
    nvl_dma_destroy(buf);
    if (sim_env_destroy(&e) && !rc)
        rc = -EIO;
    if (rc) {
        fprintf(stderr, "bench_cpu_io: MDTS reads failed: %s\n", nvl_strerror(rc));
        return rc;
    }
    return bytes / (t - t0) / 1e9;
}

struct iops_state {
    uint64_t done;
    int errors;
};

static void iops_cb(void *arg, int err, uint16_t status)
{
    struct iops_state *s = arg;

    (void)status;
    s->done++;
    if (err)
        s->errors++;
}

/* Random 4 KiB reads on one queue pair, `depth` in flight, one thread. mode "mem" moves the
 * data; "null" completes without moving it, which leaves the driver's and the sim's per-command
 * cost. Returns IOPS or a negative errno. */
static double bench_read_4k(const struct args *a, const char *mode)
{
    struct iops_state s = {0, 0};
    struct sim_env e;
    struct nvl_dma *buf = NULL;
    struct nvl_qpair *qp;
    uint64_t submitted = 0, polls = 0, x = 88172645463325252ull, n_pages;
    double t0, t = 0;
    int rc;

    rc = sim_env_create(a, mode, 5, 1, a->depth, &e);
    if (rc)
        return rc;
    qp = nvl_ctrl_qpair(e.ctrl, 0);
    n_pages = nvl_ctrl_get_info(e.ctrl)->ns_lbas / 8;
    rc = nvl_dma_create(nvl_sim_transport(e.sim), (size_t)a->depth * 4096, 0, &buf);
    if (rc)
        goto out;
    t0 = bench_now_s();
    for (;;) {
        /* Keep `depth` reads in flight: top up, ring once, reap. */
        while (submitted - s.done < a->depth) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            rc = nvl_qpair_submit_read(qp, (x % n_pages) * 8, 8, buf,
                                       (size_t)(submitted % a->depth) * 4096, iops_cb, &s);
            if (rc == -EAGAIN)
                break;
            if (rc)
                goto out;
            submitted++;
        }
        rc = nvl_qpair_poll(qp, 0);
        if (rc < 0)
            goto out;
        if (++polls % 256 == 0 && (t = bench_now_s()) - t0 >= a->seconds)
            break;
    }
    while (nvl_qpair_outstanding(qp) && nvl_qpair_poll(qp, 0) >= 0)
        ;
    rc = s.errors ? -EIO : 0;
out:
    nvl_dma_destroy(buf);
    if (sim_env_destroy(&e) && !rc)
        rc = -EIO;
    if (rc) {
        fprintf(stderr, "bench_cpu_io: 4 KiB reads failed: %s\n", nvl_strerror(rc));
        return rc;
    }
    return (double)s.done / (t - t0);
}

int main(int argc, char **argv)
{
    struct args a;
    double memcpy_gbs, v;
    char *tok, *save = NULL;
    int failed = 0;

    if (parse_args(argc, argv, &a))
        return 2;
    printf("bench_cpu_io: sim mode=mem size=%uM%s%s, %u service thread%s; %u queue pair%s at "
           "depth %u; %.1f s per test\n",
           a.size_mib, a.sim_extra ? " + " : "", a.sim_extra ? a.sim_extra : "", a.sim_threads,
           a.sim_threads == 1 ? "" : "s", a.queues, a.queues == 1 ? "" : "s", a.depth, a.seconds);
    memcpy_gbs = bench_memcpy(a.seconds);
    printf("%-28s %12s %12s\n", "test", "result", "vs memcpy");
    printf("%-28s %9.2f GB/s %11.2fx\n", "memcpy 256 MiB (before)", memcpy_gbs, 1.0);
    for (tok = strtok_r(a.mdts_list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint32_t mdts = (uint32_t)strtoul(tok, NULL, 0), cmd = 0;
        char label[64];

        v = bench_read_mdts(&a, mdts, &cmd);
        if (v < 0) {
            failed = 1;
            continue;
        }
        snprintf(label, sizeof(label), "read MDTS (%u KiB/cmd)", cmd >> 10);
        printf("%-28s %9.2f GB/s %11.2fx\n", label, v, v / memcpy_gbs);
    }
    v = bench_read_4k(&a, "mem");
    if (v < 0) {
        failed = 1;
    } else {
        printf("%-28s %9.0f IOPS\n", "read 4 KiB random, 1 core", v);
        printf("%-28s %9.2f GB/s %11.2fx\n", "  (as bandwidth)", v * 4096 / 1e9,
               v * 4096 / 1e9 / memcpy_gbs);
    }
    v = bench_read_4k(&a, "null");
    if (v < 0)
        failed = 1;
    else
        printf("%-28s %9.0f IOPS\n", "  same, sim null mode", v);
    /* On a shared machine the ceiling moves; a second memcpy shows by how much. */
    v = bench_memcpy(a.seconds);
    printf("%-28s %9.2f GB/s %11.2fx\n", "memcpy 256 MiB (after)", v, v / memcpy_gbs);
    return failed ? 1 : 0;
}
