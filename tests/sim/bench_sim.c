/* bench_sim: how fast the sim's queue engine turns commands around, with CPU host threads playing
 * the driver (one per queue pair, keeping `depth` commands in flight, one doorbell per batch).
 *
 *   bench_sim [--spec SIM_OPTIONS] [--queues N] [--depth D] [--bytes B] [--seconds S]
 *
 * Defaults: null backing, 4 KiB reads, 1 queue, depth 64, 1 s. In null mode this measures the
 * engine's overhead per command; with mode=mem it includes the data copy. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim_host.h"

struct worker {
    struct host *h;
    uint16_t qid;
    uint32_t depth;
    uint32_t bytes;
    double seconds;
    struct hbuf buf;
    struct hbuf lists;
    uint64_t done;
    int failed;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct hq *q = &w->h->ioq[w->qid];
    uint32_t lba = nvl_sim_lba_size(w->h->sim), nlb = w->bytes / lba, inflight = 0, i;
    double end = now_s() + w->seconds;
    struct nvme_sqe sqe;
    struct nvme_cqe c;
    uint64_t slot = 0;

    for (;;) {
        uint32_t n = 0;

        /* Top the queue up, one doorbell for the batch. */
        while (inflight < w->depth && now_s() < end) {
            struct hbuf list = {w->lists.p + (slot % w->depth) * 4096, 4096,
                                w->lists.iova + (slot % w->depth) * 4096};

            host_rw_sqe(&sqe, 0x02, (slot * nlb) % 1024, nlb, lba, &w->buf, 0, &list);
            host_push(q, &sqe, 0);
            slot++;
            inflight++;
            n++;
        }
        if (n)
            host_ring(w->h, q);
        if (!inflight)
            break;
        /* Reap everything that is there, one head doorbell for the batch. */
        n = 0;
        while (inflight && (n == 0 || host_cqe_ready(q))) {
            if (host_reap_noring(q, &c, 5000) || CQE_STATUS(&c)) {
                w->failed = 1;
                return NULL;
            }
            inflight--;
            n++;
        }
        host_db_write(host_cq_db(w->h, q->qid), q->cq_head);
        w->done += n;
    }
    (void)i;
    return NULL;
}

int main(int argc, char **argv)
{
    const char *spec = "mode=null,lba=4096,mdts=9,idle_us=0";
    uint32_t queues = 1, depth = 64, bytes = 4096, i;
    double seconds = 1.0, t0, dt;
    struct worker w[HOST_MAX_QUEUES];
    pthread_t tid[HOST_MAX_QUEUES];
    struct nvl_sim_stats st;
    uint64_t done = 0;
    struct host h;
    char full[512];

    for (i = 1; i + 1 < (uint32_t)argc; i += 2) {
        if (!strcmp(argv[i], "--spec"))
            spec = argv[i + 1];
        else if (!strcmp(argv[i], "--queues"))
            queues = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--depth"))
            depth = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--bytes"))
            bytes = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else
            break;
    }
    if (i != (uint32_t)argc || !queues || queues > HOST_MAX_QUEUES || !depth || depth > 1023 ||
        !bytes || bytes % 4096) {
        fprintf(stderr,
                "usage: bench_sim [--spec SIM_OPTIONS] [--queues 1..%d] [--depth D] "
                "[--bytes multiple of 4096] [--seconds S]\n",
                HOST_MAX_QUEUES);
        return 2;
    }
    snprintf(full, sizeof(full), "%s,queues=%u", spec, queues);
    if (host_create(&h, full) || host_bringup(&h, (uint16_t)queues, depth + 1)) {
        fprintf(stderr, "bench_sim: cannot bring the sim up with '%s'\n", full);
        return 1;
    }
    for (i = 0; i < queues; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].h = &h;
        w[i].qid = (uint16_t)(i + 1);
        w[i].depth = depth;
        w[i].bytes = bytes;
        w[i].seconds = seconds;
        if (host_buf(&h, bytes, &w[i].buf) || host_buf(&h, (size_t)depth * 4096, &w[i].lists)) {
            fprintf(stderr, "bench_sim: out of memory\n");
            return 1;
        }
    }
    nvl_sim_reset_stats(h.sim);
    t0 = now_s();
    for (i = 0; i < queues; i++)
        pthread_create(&tid[i], NULL, worker_main, &w[i]);
    for (i = 0; i < queues; i++) {
        pthread_join(tid[i], NULL);
        if (w[i].failed) {
            fprintf(stderr, "bench_sim: queue %u failed\n", i + 1);
            return 1;
        }
        done += w[i].done;
    }
    dt = now_s() - t0;
    nvl_sim_get_stats(h.sim, &st);
    printf("sim '%s': %u queue(s) x depth %u, %u-byte reads: %.3f M IOPS, %.2f GB/s "
           "(%llu commands in %.2f s, %llu violations)\n",
           full, queues, depth, bytes, (double)done / dt / 1e6, (double)done * bytes / dt / 1e9,
           (unsigned long long)done, dt, (unsigned long long)st.violations_total);
    host_destroy(&h);
    return st.violations_total ? 1 : 0;
}
