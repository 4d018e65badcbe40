/* bench_engine: the GPU I/O engine's figures, against the software controller.
 *
 *   bench_engine null  [--queues 1,2,4,8] [--seconds S] [--sim-threads N]
 *       Engine overhead: the sim in null mode (commands complete, no data moves), 4 KiB commands
 *       (IOPS) and MDTS-sized commands (GB/s) for each queue count. The sim's polling threads
 *       share the machine's cores and are part of what is measured.
 *   bench_engine layer [--mib 669] [--queues N] [--sim-threads N] [--sim-opts SPEC]
 *       One layer read into pinned memory from a memory-backed sim, best and median of several,
 *       every byte checked once; next to host memcpy and pinned host-to-device copy bandwidth
 *       measured in the same run. With --sim-opts "bw=3.35GB/s" it is the drive emulation run:
 *       achieved / configured is printed.
 *   bench_engine cpu   --file PATH [--mib 669]
 *       CPU time per GB loaded: the engine path (the caller's thread posting and sleeping on
 *       completion, plus the engine's CSTS monitor thread; the sim's threads play the drive and
 *       are not counted) next to the loader's file backend reading PATH (whole process).
 *
 * Every result line starts with "RESULT" followed by key=value pairs (scripts/gpu-bench.sh
 * builds its table from them). Exit status 77 without a CUDA device. */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "bench_util.h"
#include "nvl_driver.h"
#include "nvl_host.h"
#include "nvl_loader.h"
#include "nvl_sim.h"

#define MIB       (1ull << 20)
#define EXIT_SKIP 77

struct args {
    char queues[64];
    double seconds;
    uint32_t sim_threads; /* 0: one per queue pair */
    uint64_t mib;
    const char *sim_opts;
    const char *file;
    uint32_t reps;
    uint32_t batch; /* engine commands per SQ doorbell; 0 = the default */
};

struct rig {
    struct nvl_sim *sim;
    struct nvl_ctrl *c;
    struct nvl_host_engine *e;
    struct nvl_dma *buf;
    struct nvl_dma *list;
    uint64_t *list_iova;
    uint32_t buf_id;
};

static void rig_destroy(struct rig *g)
{
    nvl_host_engine_destroy(g->e);
    nvl_dma_destroy(g->list);
    nvl_dma_destroy(g->buf);
    free(g->list_iova);
    nvl_ctrl_destroy(g->c);
    nvl_sim_destroy(g->sim);
    memset(g, 0, sizeof(*g));
}

/* A sim from spec, a controller with `queues` pairs of `depth`, an engine on all of them and one
 * destination buffer of buf_bytes with its flat PRP list. */
static int rig_create(struct rig *g, const char *spec, uint32_t queues, uint32_t depth,
                      size_t buf_bytes, uint32_t batch)
{
    struct nvl_host_engine_opts eo;
    struct nvl_sim_opts so;
    struct nvl_ctrl_opts co;
    struct nvl_transport *t;
    uint64_t n_pages, list_bytes, *l;
    char err[128];
    int rc;

    memset(g, 0, sizeof(*g));
    nvl_sim_opts_init(&so);
    rc = nvl_sim_opts_parse(&so, spec, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "bench_engine: bad sim options \"%s\": %s\n", spec, err);
        return rc;
    }
    rc = nvl_sim_create(&so, &g->sim);
    if (rc)
        return rc;
    t = nvl_sim_transport(g->sim);
    nvl_ctrl_opts_init(&co);
    co.n_io_queues = queues;
    co.io_queue_depth = depth;
    rc = nvl_ctrl_create(t, &co, &g->c);
    if (rc)
        goto err;
    rc = nvl_dma_create(t, buf_bytes, NVL_DMA_TRY_HUGE, &g->buf);
    if (rc)
        goto err;
    n_pages = g->buf->len / 4096;
    list_bytes = (n_pages * 8 + 4095) / 4096 * 4096;
    rc = nvl_dma_create(t, list_bytes, 0, &g->list);
    if (rc)
        goto err;
    l = g->list->vaddr;
    for (uint64_t i = 0; i < n_pages; i++)
        l[i] = nvl_dma_iova(g->buf, i * 4096);
    g->list_iova = calloc(list_bytes / 4096, sizeof(uint64_t));
    if (!g->list_iova) {
        rc = -ENOMEM;
        goto err;
    }
    for (uint64_t j = 0; j < list_bytes / 4096; j++)
        g->list_iova[j] = nvl_dma_iova(g->list, j * 4096);
    nvl_host_engine_opts_init(&eo);
    eo.ring_entries = 64;
    if (batch)
        eo.max_batch = batch;
    rc = nvl_host_engine_create(g->c, &eo, &g->e);
    if (rc)
        goto err;
    rc = nvl_host_engine_add_buf(g->e, l, g->list_iova, g->buf->len, &g->buf_id);
    if (rc)
        goto err;
    rc = nvl_host_engine_start(g->e);
    if (rc)
        goto err;
    return 0;

err:
    fprintf(stderr, "bench_engine: setup failed: %s\n", nvl_strerror(rc));
    rig_destroy(g);
    return rc;
}

/* Keeps `window` requests of cmds_per_req commands of 2^cmd_shift bytes in flight for `seconds`
 * (destination used as a ring). Returns commands per second. */
static int run_stream(struct rig *g, uint32_t cmd_shift, uint32_t cmds_per_req, double seconds,
                      double *cmds_per_s)
{
    const uint32_t window = 4, lba = nvl_host_engine_lba_size(g->e);
    uint32_t first[4], st, posted = 0, done = 0;
    uint64_t cmds = 0;
    double t0, t1;
    int rc = 0;

    t0 = bench_now_s();
    for (;;) {
        int stop = bench_now_s() - t0 >= seconds;

        while (!stop && posted - done < window) {
            struct nvl_engine_req q;

            memset(&q, 0, sizeof(q));
            q.slba = ((uint64_t)posted * cmds_per_req << cmd_shift) / lba % (1ull << 30);
            q.nlb = (uint32_t)(((uint64_t)cmds_per_req << cmd_shift) / lba);
            q.buf = (uint16_t)g->buf_id;
            q.cmd_shift = (uint8_t)cmd_shift;
            q.flags = NVL_ENGINE_REQ_RING_DST;
            rc = nvl_host_engine_post(g->e, &q, 1, &first[posted % window]);
            if (rc)
                return rc;
            posted++;
        }
        if (done == posted)
            break;
        rc = nvl_host_engine_wait(g->e, first[done % window], 1, 30000000000ull, &st);
        if (rc || st) {
            fprintf(stderr, "bench_engine: request failed: %s, status %s (0x%08x)\n",
                    nvl_strerror(rc), nvl_engine_st_str(st), st);
            return rc ? rc : -EIO;
        }
        nvl_host_engine_release(g->e, first[done % window], 1);
        done++;
        cmds += cmds_per_req;
    }
    t1 = bench_now_s();
    *cmds_per_s = (double)cmds / (t1 - t0);
    return 0;
}

static int bench_null(const struct args *a)
{
    char list[64], *save = NULL;

    snprintf(list, sizeof(list), "%s", a->queues);
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint32_t q = (uint32_t)strtoul(tok, NULL, 10);
        uint32_t threads = a->sim_threads ? a->sim_threads : q;
        struct nvl_engine_qp_stats s;
        struct nvl_sim_stats ss;
        double iops, mdts_cps;
        struct rig g;
        char spec[256];
        uint32_t mdts_shift;
        int rc;

        snprintf(spec, sizeof(spec),
                 "mode=null,lba=512,mdts=5,mqes=1023,queues=%u,threads=%u,idle_us=0%s%s", q,
                 threads, a->sim_opts ? "," : "", a->sim_opts ? a->sim_opts : "");
        rc = rig_create(&g, spec, q, 1024, 8 * MIB, a->batch);
        if (rc)
            return 1;
        mdts_shift = 0;
        while ((1u << mdts_shift) < nvl_host_engine_max_cmd_bytes(g.e))
            mdts_shift++;
        /* A short warm-up, then the two measurements. */
        rc = run_stream(&g, 12, 4096, 0.2, &iops);
        if (!rc)
            rc = run_stream(&g, 12, 65536, a->seconds, &iops);
        if (!rc)
            rc = run_stream(&g, mdts_shift, 8192, a->seconds, &mdts_cps);
        if (!rc)
            rc = nvl_host_engine_stop(g.e);
        if (rc) {
            fprintf(stderr, "bench_engine: null run with %u queues failed: %s\n", q,
                    nvl_strerror(rc));
            rig_destroy(&g);
            return 1;
        }
        nvl_host_engine_stats(g.e, &s);
        nvl_sim_get_stats(g.sim, &ss);
        /* Empty polls: how often a warp looked at its CQ and found nothing. Near 1, the warp
         * waits for the controller; near 0, the controller waits for the warp. */
        printf("RESULT test=null queues=%u sim_threads=%u batch=%u iops_4k=%.0f gbps_mdts=%.2f "
               "mdts_bytes=%u cmds_per_sq_doorbell=%.1f cmds_per_cq_doorbell=%.1f "
               "empty_poll_fraction=%.3f sim_violations=%llu\n",
               q, threads, a->batch ? a->batch : 128, iops,
               mdts_cps * (double)(1u << mdts_shift) / 1e9, 1u << mdts_shift,
               s.sq_doorbells ? (double)s.commands / (double)s.sq_doorbells : 0,
               s.cq_doorbells ? (double)s.completions / (double)s.cq_doorbells : 0,
               s.polls ? (double)s.empty_polls / (double)s.polls : 0,
               (unsigned long long)ss.violations_total);
        fflush(stdout);
        rig_destroy(&g);
    }
    return 0;
}

/* Best (largest) and median of n rates. */
static void best_median(double *v, uint32_t n, double *best, double *median)
{
    *median = bench_median(v, (int)n);
    *best = v[n - 1];
}

static double memcpy_gbps(size_t bytes, uint32_t reps)
{
    uint8_t *a = malloc(bytes), *b = malloc(bytes);
    double v[16], best, median;

    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    for (uint32_t i = 0; i < reps; i++) {
        double t0 = bench_now_s();

        memcpy(b, a, bytes);
        v[i] = (double)bytes / (bench_now_s() - t0) / 1e9;
    }
    free(a);
    free(b);
    best_median(v, reps, &best, &median);
    return best;
}

static double h2d_gbps(size_t bytes, uint32_t reps)
{
    void *h = NULL, *d = NULL;
    double v[16], best = 0, median;

    if (cudaHostAlloc(&h, bytes, cudaHostAllocDefault) != cudaSuccess ||
        cudaMalloc(&d, bytes) != cudaSuccess)
        goto out;
    memset(h, 3, bytes);
    cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
    for (uint32_t i = 0; i < reps; i++) {
        double t0 = bench_now_s();

        cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
        v[i] = (double)bytes / (bench_now_s() - t0) / 1e9;
    }
    best_median(v, reps, &best, &median);
out:
    cudaGetLastError();
    cudaFree(d);
    cudaFreeHost(h);
    return best;
}

/* One request of `bytes` from LBA `slba` into the buffer; returns seconds, or < 0 on failure. */
static double layer_once(struct rig *g, uint64_t slba, uint64_t bytes)
{
    struct nvl_engine_req q;
    uint32_t first, st = 0;
    double t0;
    int rc;

    memset(&q, 0, sizeof(q));
    q.slba = slba;
    q.nlb = (uint32_t)(bytes / nvl_host_engine_lba_size(g->e));
    q.buf = (uint16_t)g->buf_id;
    t0 = bench_now_s();
    rc = nvl_host_engine_post(g->e, &q, 1, &first);
    if (!rc)
        rc = nvl_host_engine_wait(g->e, first, 1, 60000000000ull, &st);
    if (rc || st) {
        fprintf(stderr, "bench_engine: layer read failed: %s, status %s\n", nvl_strerror(rc),
                nvl_engine_st_str(st));
        return -1;
    }
    t0 = bench_now_s() - t0;
    nvl_host_engine_release(g->e, first, 1);
    return t0;
}

static int bench_layer(const struct args *a)
{
    const uint64_t bytes = a->mib * MIB;
    uint32_t q = (uint32_t)strtoul(a->queues, NULL, 10);
    uint32_t threads = a->sim_threads ? a->sim_threads : q;
    double v[16], best, median, configured = 0;
    const struct nvl_sim_opts *so;
    size_t mem_len;
    uint8_t *mem;
    struct rig g;
    char spec[256];
    int ok;

    snprintf(spec, sizeof(spec), "mode=mem,size=%lluM,lba=512,mdts=5,queues=%u,threads=%u%s%s",
             (unsigned long long)(a->mib + 64), q, threads, a->sim_opts ? "," : "",
             a->sim_opts ? a->sim_opts : "");
    if (rig_create(&g, spec, q, 256, bytes, a->batch))
        return 1;
    so = nvl_sim_opts(g.sim);
    configured = so->bw_bytes_per_s ? (double)so->bw_bytes_per_s / 1e9 : 0;
    mem = nvl_sim_mem(g.sim, &mem_len);
    for (size_t i = 0; i < bytes + 4096 && i + 8 <= mem_len; i += 8) {
        uint64_t x = i * 0x9e3779b97f4a7c15ull ^ (i >> 7);

        memcpy(mem + i, &x, 8);
    }
    memset(g.buf->vaddr, 0, bytes);
    if (layer_once(&g, 8, bytes) < 0) /* warm-up, and the checked copy */
        return 1;
    ok = memcmp(g.buf->vaddr, mem + 8 * 512, bytes) == 0;
    for (uint32_t i = 0; i < a->reps; i++) {
        double s = layer_once(&g, 8, bytes);

        if (s < 0)
            return 1;
        v[i] = (double)bytes / s / 1e9;
    }
    nvl_host_engine_stop(g.e);
    best_median(v, a->reps, &best, &median);
    rig_destroy(&g);
    printf("RESULT test=layer mib=%llu queues=%u sim_threads=%u gbps_best=%.2f gbps_median=%.2f "
           "configured_gbps=%.2f ratio=%.3f data=%s memcpy_gbps=%.2f h2d_pinned_gbps=%.2f\n",
           (unsigned long long)a->mib, q, threads, best, median, configured,
           configured > 0 ? median / configured : 0, ok ? "ok" : "MISMATCH", memcpy_gbps(bytes, 3),
           h2d_gbps(bytes, 3));
    return ok ? 0 : 1;
}

static int bench_cpu(const struct args *a)
{
    const uint64_t bytes = a->mib * MIB;
    struct nvl_loader_opts lo;
    struct nvl_loader *l;
    double cpu0, mon0, t_eng = 0, cpu_eng = 0, cpu_file = 0, t_file = 0;
    struct rig g;
    char spec[256];
    int rc;

    snprintf(spec, sizeof(spec), "mode=mem,size=%lluM,lba=512,mdts=5,queues=4,threads=4",
             (unsigned long long)(a->mib + 64));
    if (rig_create(&g, spec, 4, 256, bytes, a->batch))
        return 1;
    if (layer_once(&g, 0, bytes) < 0)
        return 1;
    cpu0 = bench_clock_s(CLOCK_THREAD_CPUTIME_ID);
    mon0 = nvl_host_engine_monitor_cpu_seconds(g.e);
    for (uint32_t i = 0; i < a->reps; i++) {
        double s = layer_once(&g, 0, bytes);

        if (s < 0)
            return 1;
        t_eng += s;
    }
    cpu_eng = bench_clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0 +
              nvl_host_engine_monitor_cpu_seconds(g.e) - mon0;
    nvl_host_engine_stop(g.e);
    rig_destroy(&g);

    nvl_loader_opts_init(&lo);
    lo.backend = NVL_LOADER_FILE;
    lo.path = a->file;
    lo.n_slots = 1;
    lo.slot_bytes = bytes + 2 * MIB;
    rc = nvl_loader_create(&lo, &l);
    if (rc) {
        fprintf(stderr, "bench_engine: file backend on %s: %s\n", a->file, nvl_strerror(rc));
        return 1;
    }
    for (uint32_t i = 0; i <= a->reps; i++) {
        struct nvl_extent e = {0, bytes};
        struct nvl_read_stats st;
        struct nvl_read *r;

        cpu0 = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID);
        rc = nvl_loader_read_async(l, &e, 1, nvl_dst_slot(0), &r);
        if (!rc)
            rc = nvl_loader_wait(r, &st);
        if (rc) {
            fprintf(stderr, "bench_engine: file read failed: %s\n", nvl_strerror(rc));
            nvl_loader_destroy(l);
            return 1;
        }
        if (i == 0)
            continue; /* warm-up */
        cpu_file += bench_clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
        t_file += st.seconds;
    }
    nvl_loader_destroy(l);
    printf("RESULT test=cpu mib=%llu gpu_nvme_cpu_s_per_gb=%.4f gpu_nvme_gbps=%.2f "
           "file_cpu_s_per_gb=%.4f file_gbps=%.2f\n",
           (unsigned long long)a->mib, cpu_eng / ((double)bytes * a->reps / 1e9),
           (double)bytes * a->reps / t_eng / 1e9, cpu_file / ((double)bytes * a->reps / 1e9),
           (double)bytes * a->reps / t_file / 1e9);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: bench_engine null  [--queues 1,2,4,8] [--seconds S] [--sim-threads N] [--batch N]\n"
        "       bench_engine layer [--mib 669] [--queues N] [--sim-threads N] "
        "[--sim-opts SPEC] [--reps N]\n"
        "       bench_engine cpu   --file PATH [--mib 669] [--reps N]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"queues", required_argument, NULL, 'q'},
        {"seconds", required_argument, NULL, 's'},
        {"sim-threads", required_argument, NULL, 't'},
        {"mib", required_argument, NULL, 'm'},
        {"sim-opts", required_argument, NULL, 'o'},
        {"file", required_argument, NULL, 'f'},
        {"reps", required_argument, NULL, 'r'},
        {"batch", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct args a;
    const char *cmd;
    int c, n = 0;

    memset(&a, 0, sizeof(a));
    snprintf(a.queues, sizeof(a.queues), "1,2,4,8");
    a.seconds = 2;
    a.mib = 669;
    a.reps = 5;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            snprintf(a.queues, sizeof(a.queues), "%s", optarg);
            break;
        case 's':
            a.seconds = atof(optarg);
            break;
        case 't':
            a.sim_threads = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'm':
            a.mib = strtoull(optarg, NULL, 10);
            break;
        case 'o':
            a.sim_opts = optarg;
            break;
        case 'f':
            a.file = optarg;
            break;
        case 'r':
            a.reps = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'B':
            a.batch = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc || a.reps == 0 || a.reps > 16 || a.mib == 0 || a.seconds <= 0) {
        usage(stderr);
        return 2;
    }
    cmd = argv[optind];
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        fprintf(stderr, "bench_engine: no CUDA device\n");
        return EXIT_SKIP;
    }
    if (!strcmp(cmd, "null"))
        return bench_null(&a);
    if (!strcmp(cmd, "layer"))
        return bench_layer(&a);
    if (!strcmp(cmd, "cpu") && a.file)
        return bench_cpu(&a);
    usage(stderr);
    return 2;
}
