/* Tests for driver/sim/src/sim_queue.c: the fetch/complete engine and its doorbell rules (each
 * broken on purpose and caught with CSTS.CFS), CQ-full back-pressure, phase tags over many
 * wraps, several service threads, and the accuracy of the bandwidth and latency model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim_host.h"

#define CSTS 0x1c

static uint64_t sim_rng(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A host with one I/O queue pair of `entries` (SQ) and `cq_entries` (CQ). */
static void up_with_queue(struct host *h, const char *spec, uint32_t sq_entries,
                          uint32_t cq_entries, struct hbuf *data)
{
    struct nvme_sqe sqe;
    struct hq *q = &h->ioq[1];

    assert_int_equal(host_create(h, spec), 0);
    assert_int_equal(host_enable(h, 16), 0);
    assert_int_equal(host_buf(h, (size_t)sq_entries * 64, &q->sqm), 0);
    assert_int_equal(host_buf(h, (size_t)cq_entries * 16, &q->cqm), 0);
    q->qid = 1;
    q->size = sq_entries; /* the SQ ring; the CQ ring size is tracked below */
    q->sq = (struct nvme_sqe *)q->sqm.p;
    q->cq = (struct nvme_cqe *)q->cqm.p;
    q->phase = 1;
    memset(&sqe, 0, sizeof(sqe));
    sqe.opc = 0x05;
    sqe.prp1 = q->cqm.iova;
    sqe.cdw10 = ((cq_entries - 1) << 16) | 1;
    sqe.cdw11 = 1;
    assert_int_equal(host_admin(h, &sqe, NULL), 0);
    memset(&sqe, 0, sizeof(sqe));
    sqe.opc = 0x01;
    sqe.prp1 = q->sqm.iova;
    sqe.cdw10 = ((sq_entries - 1) << 16) | 1;
    sqe.cdw11 = (1u << 16) | 1;
    assert_int_equal(host_admin(h, &sqe, NULL), 0);
    assert_int_equal(host_buf(h, 64 * 1024, data), 0);
}

static void read_sqe(struct nvme_sqe *sqe, struct hbuf *data, uint64_t lba)
{
    host_rw_sqe(sqe, 0x02, lba, 1, 512, data, (size_t)(lba % 64) * 512, NULL);
}

/* After a rule is broken: CSTS.CFS, violation v counted once, and after a disable and re-enable
 * the controller comes back clean. Destroys the host. */
static void expect_cfs(struct host *h, enum nvl_sim_violation v)
{
    struct hbuf b;

    assert_int_equal(host_wait_csts(h, 2, 2, 2000), 0);
    assert_int_equal(host_viol(h, v), 1);
    assert_int_equal(host_disable(h), 0);
    assert_int_equal(host_reg32(h, CSTS) & 2, 0);
    memset(&h->ioq, 0, sizeof(h->ioq));
    assert_int_equal(host_bringup(h, 1, 8), 0);
    assert_int_equal(host_buf(h, 4096, &b), 0);
    assert_int_equal(host_io(h, 1, 0x02, 0, 1, &b, 0, NULL), 0);
    host_destroy(h);
}

/* Ten reads on queue 1 whose CQ has 4 entries: three complete, and the sim holds the rest back
 * (SQ head stuck at 3, tail at 10) until the host frees CQ slots. */
static void fill_cq(struct host *h, struct hbuf *data)
{
    struct nvme_sqe sqe;
    struct hq *q = &h->ioq[1];

    for (int i = 0; i < 10; i++) {
        read_sqe(&sqe, data, (uint64_t)i);
        host_push(q, &sqe, 0);
    }
    host_ring(h, q);
    assert_int_equal(host_wait_viol(h, NVL_SIM_VIOL_CQ_FULL, 1, 2000), 0);
}

/* A doorbell write that breaks a rule by itself, on a host with queue pair 1 of 16 entries. */
struct bad_doorbell {
    bool cq; /* the CQ head doorbell, else the SQ tail doorbell */
    uint16_t qid;
    uint32_t value;
    enum nvl_sim_violation viol;
};

static const struct bad_doorbell sq_tail_out_of_range = {false, 1, 16, NVL_SIM_VIOL_SQ_TAIL};
static const struct bad_doorbell cq_head_out_of_range = {true, 1, 16, NVL_SIM_VIOL_CQ_HEAD};
static const struct bad_doorbell doorbell_of_absent_queue = {false, 3, 1,
                                                             NVL_SIM_VIOL_DOORBELL_NOQUEUE};

static void bad_doorbell(void **state)
{
    const struct bad_doorbell *c = *state;
    struct host h;
    struct hbuf data;

    up_with_queue(&h, "mode=mem,size=1M", 16, 16, &data);
    host_db_write(c->cq ? host_cq_db(&h, c->qid) : host_sq_db(&h, c->qid), c->value);
    expect_cfs(&h, c->viol);
}

/* The new tail may not run over entries the controller has not fetched yet. The SQ is kept from
 * draining by a full CQ (3 usable slots). */
static void sq_tail_overrun(void **state)
{
    struct host h;
    struct hbuf data;

    (void)state;
    up_with_queue(&h, "mode=mem,size=1M", 16, 4, &data);
    fill_cq(&h, &data);
    assert_int_equal(host_reg32(&h, CSTS) & 2, 0);
    /* 7 unfetched, room for 8 more: a tail of 10 + 9 = 19 % 16 = 3 passes the head. */
    host_db_write(host_sq_db(&h, 1), 3);
    expect_cfs(&h, NVL_SIM_VIOL_SQ_TAIL);
}

/* The head may not pass entries the controller posted: one CQE posted, head moved by two. */
static void cq_head_past_posted(void **state)
{
    struct host h;
    struct hbuf data;
    struct nvme_sqe sqe;
    struct nvme_cqe c;

    (void)state;
    up_with_queue(&h, "mode=mem,size=1M", 16, 16, &data);
    read_sqe(&sqe, &data, 0);
    host_submit(&h, &h.ioq[1], &sqe, 0);
    assert_int_equal(host_reap_noring(&h.ioq[1], &c, 2000), 0);
    host_db_write(host_cq_db(&h, 1), 2);
    expect_cfs(&h, NVL_SIM_VIOL_CQ_HEAD);
}

/* A CQ of 4 entries holds 3 completions: the rest wait, nothing is overwritten, and everything
 * completes in order once the host frees slots. */
static void cq_full_back_pressure(void **state)
{
    struct host h;
    struct hbuf data;
    struct nvme_cqe c;
    struct hq *q = &h.ioq[1];
    int i;

    (void)state;
    up_with_queue(&h, "mode=mem,size=1M", 16, 4, &data);
    fill_cq(&h, &data);
    sleep_us(2000);
    /* Exactly three posted (phase 1), the fourth slot untouched (phase 0). */
    for (i = 0; i < 3; i++)
        assert_int_equal(__atomic_load_n(&q->cq[i].status, __ATOMIC_ACQUIRE) & 1, 1);
    assert_int_equal(__atomic_load_n(&q->cq[3].status, __ATOMIC_ACQUIRE) & 1, 0);
    /* Reap with a CQ ring of 4 while the SQ ring is 16. */
    q->size = 4;
    for (i = 0; i < 10; i++) {
        assert_int_equal(host_reap(&h, q, &c, 2000), 0);
        assert_int_equal(c.cid, i);
        assert_int_equal(CQE_STATUS(&c), 0);
        assert_int_equal(c.sqid, 1);
        assert_true(c.sqhd <= 10);
    }
    assert_int_equal(host_reg32(&h, CSTS) & 2, 0);
    host_destroy(&h);
}

/* Many wraps of a 4-entry queue pair: phase tags, sqhd and CIDs stay right. */
static void phase_tags_over_wraps(void **state)
{
    struct host h;
    struct hbuf data;
    struct nvme_sqe sqe;
    struct nvme_cqe c;
    struct hq *q = &h.ioq[1];
    int i, j;

    (void)state;
    up_with_queue(&h, "mode=mem,size=1M", 4, 4, &data);
    for (i = 0; i < 300; i++) {
        for (j = 0; j < 3; j++) {
            read_sqe(&sqe, &data, (uint64_t)j);
            host_push(q, &sqe, 0);
        }
        host_ring(&h, q);
        for (j = 0; j < 3; j++) {
            assert_int_equal(host_reap(&h, q, &c, 2000), 0);
            assert_int_equal(c.cid, (uint16_t)(i * 3 + j));
            assert_int_equal(CQE_STATUS(&c), 0);
        }
        /* Everything submitted was fetched. */
        assert_int_equal(c.sqhd, q->sq_tail);
    }
    host_destroy(&h);
}

/* Three service threads, six queue pairs, writes then reads at depth on all of them, data
 * checked in the backing memory and in the buffers. */
static void several_threads(void **state)
{
    struct host h;
    struct hbuf bufs[7];
    struct nvme_sqe sqe;
    struct nvme_cqe c;
    struct nvl_sim_stats s;
    uint8_t *mem;
    int q, i, pass;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem,size=16M,lba=4096,threads=3,queues=6"), 0);
    assert_int_equal(host_bringup(&h, 6, 32), 0);
    mem = nvl_sim_mem(h.sim, NULL);
    for (q = 1; q <= 6; q++)
        assert_int_equal(host_buf(&h, 24 * 4096, &bufs[q]), 0);
    for (pass = 0; pass < 2; pass++) {
        for (q = 1; q <= 6; q++) {
            for (i = 0; i < 24; i++) {
                uint64_t lba = (uint64_t)q * 100 + (uint64_t)i;

                if (pass == 0)
                    pattern_fill(bufs[q].p + i * 4096, 4096, lba * 4096, 7);
                else
                    memset(bufs[q].p + i * 4096, 0, 4096);
                host_rw_sqe(&sqe, pass == 0 ? 0x01 : 0x02, lba, 1, 4096, &bufs[q], (size_t)i * 4096,
                            NULL);
                host_push(&h.ioq[q], &sqe, 0);
            }
            host_ring(&h, &h.ioq[q]);
        }
        for (q = 1; q <= 6; q++)
            for (i = 0; i < 24; i++) {
                assert_int_equal(host_reap(&h, &h.ioq[q], &c, 2000), 0);
                assert_int_equal(CQE_STATUS(&c), 0);
            }
        for (q = 1; q <= 6; q++) {
            uint64_t lba = (uint64_t)q * 100;

            if (pass == 0)
                assert_int_equal(pattern_check(mem + lba * 4096, 24 * 4096, lba * 4096, 7), 0);
            else
                assert_int_equal(pattern_check(bufs[q].p, 24 * 4096, lba * 4096, 7), 0);
        }
    }
    host_stats(&h, &s);
    assert_int_equal(s.writes, 6 * 24);
    assert_int_equal(s.reads, 6 * 24);
    assert_int_equal(s.violations_total, 0);
    for (q = 1; q <= 6; q++)
        host_buf_free(&h, &bufs[q]);
    host_destroy(&h);
}

/* Keeps `depth` reads of `bytes` in flight on queue 1 for `seconds`; returns achieved B/s. */
static double run_stream(struct host *h, struct hbuf *buf, struct hbuf *lists, uint32_t bytes,
                         uint32_t depth, double seconds)
{
    struct hq *q = &h->ioq[1];
    struct nvme_sqe sqe;
    struct nvme_cqe c;
    uint64_t t0, t_end, done = 0, submitted = 0;
    uint32_t nlb = bytes / 4096, inflight = 0;

    t0 = now_ns();
    t_end = t0 + (uint64_t)(seconds * 1e9);
    for (;;) {
        while (inflight < depth && now_ns() < t_end) {
            struct hbuf list = {lists->p + (submitted % depth) * 4096, 4096,
                                lists->iova + (submitted % depth) * 4096};

            host_rw_sqe(&sqe, 0x02, 0, nlb, 4096, buf, 0, &list);
            host_submit(h, q, &sqe, 0);
            submitted++;
            inflight++;
        }
        if (!inflight)
            break;
        if (host_reap(h, q, &c, 5000))
            return -1.0;
        if (CQE_STATUS(&c))
            return -2.0;
        inflight--;
        done++;
    }
    return (double)(done * bytes) / ((double)(now_ns() - t0) / 1e9);
}

/* The bandwidth model: with enough in flight the achieved rate is the configured one. It may be
 * lower on a loaded machine when a thread is descheduled for longer than the queue lasts (here
 * 64 x 256 KiB = 33 ms of work, so the test is retried), never noticeably higher. */
static void model_bandwidth_accuracy(void **state)
{
    struct host h;
    struct hbuf buf, lists;
    double bw = 0, want = 0.5e9;
    int attempt;

    (void)state;
    assert_int_equal(host_create(&h, "mode=null,lba=4096,mdts=6,bw=500MB/s,lat=100us"), 0);
    assert_int_equal(host_bringup(&h, 1, 128), 0);
    assert_int_equal(host_buf(&h, 256 * 1024, &buf), 0);
    assert_int_equal(host_buf(&h, 64 * 4096, &lists), 0);
    for (attempt = 0; attempt < 5; attempt++) {
        bw = run_stream(&h, &buf, &lists, 256 * 1024, 64, 0.2);
        assert_true(bw > 0);
        /* Never faster than configured (0.5% for the last command's partial turn). */
        assert_true(bw <= want * 1.005);
        if (bw >= want * 0.97)
            break;
    }
    printf("model: configured %.3f GB/s, achieved %.3f GB/s (%.1f%%)\n", want / 1e9, bw / 1e9,
           100.0 * bw / want);
    assert_true(bw >= want * 0.97);
    host_buf_free(&h, &lists);
    host_buf_free(&h, &buf);
    host_destroy(&h);
}

/* The latency model: a lone command never completes before its latency. */
static void model_latency(void **state)
{
    struct host h;
    struct hbuf buf;
    uint64_t t0, dt, min_dt = UINT64_MAX;
    int i;

    (void)state;
    assert_int_equal(host_create(&h, "mode=null,lba=4096,lat=2ms"), 0);
    assert_int_equal(host_bringup(&h, 1, 8), 0);
    assert_int_equal(host_buf(&h, 4096, &buf), 0);
    for (i = 0; i < 20; i++) {
        t0 = now_ns();
        assert_int_equal(host_io(&h, 1, 0x02, 0, 1, &buf, 0, NULL), 0);
        dt = now_ns() - t0;
        if (dt < min_dt)
            min_dt = dt;
    }
    printf("model: latency 2 ms, fastest completion %.3f ms\n", (double)min_dt / 1e6);
    assert_true(min_dt >= 2000000);
    assert_true(min_dt < 4000000);
    host_buf_free(&h, &buf);
    host_destroy(&h);
}

/* Host threads on their own queue pairs (as GPU warps would be), random transfer sizes and PRP1
 * offsets, batches of writes then reads of the same ranges, with the latency model deferring
 * completions: every byte must come back, nothing may be flagged. */
struct hammer {
    struct host *h;
    uint16_t qid;
    uint32_t seed;
    int iterations;
    int failed;
    struct hbuf wbuf, rbuf, lists; /* allocated by the main thread: host_buf is not thread safe */
};

static void *hammer_main(void *arg)
{
    struct hammer *w = arg;
    struct hq *q = &w->h->ioq[w->qid];
    struct hbuf wbuf = w->wbuf, rbuf = w->rbuf, lists = w->lists;
    uint64_t rng = w->seed * 2654435761u + 1;
    uint64_t base_lba = (uint64_t)w->qid * 4096; /* 16 MiB of 4 KiB blocks per thread */
    int it;

    for (it = 0; it < w->iterations && !w->failed; it++) {
        uint32_t batch = 1 + (uint32_t)(sim_rng(&rng) % 8), i, pass;
        uint32_t nlb[8];
        size_t off[8];

        for (i = 0; i < batch; i++) {
            nlb[i] = 1 + (uint32_t)(sim_rng(&rng) % 32);
            off[i] = (size_t)i * 33 * 4096 + (size_t)(sim_rng(&rng) % 1024) * 4;
        }
        for (pass = 0; pass < 2; pass++) {
            struct hbuf *b = pass ? &rbuf : &wbuf;

            for (i = 0; i < batch; i++) {
                struct hbuf list = {lists.p + (size_t)(pass * 8 + i) * 4096, 4096,
                                    lists.iova + (uint64_t)(pass * 8 + i) * 4096};
                struct nvme_sqe sqe;
                uint64_t lba = base_lba + (uint64_t)i * 32;

                if (!pass)
                    pattern_fill(b->p + off[i], (size_t)nlb[i] * 4096, lba * 4096, w->seed + it);
                else
                    memset(b->p + off[i], 0, (size_t)nlb[i] * 4096);
                host_rw_sqe(&sqe, pass ? 0x02 : 0x01, lba, nlb[i], 4096, b, off[i], &list);
                host_push(q, &sqe, 0);
            }
            host_ring(w->h, q);
            for (i = 0; i < batch; i++) {
                struct nvme_cqe c;

                if (host_reap(w->h, q, &c, 5000) || CQE_STATUS(&c))
                    w->failed = 1;
            }
        }
        for (i = 0; i < batch && !w->failed; i++) {
            uint64_t lba = base_lba + (uint64_t)i * 32;

            if (pattern_check(rbuf.p + off[i], (size_t)nlb[i] * 4096, lba * 4096, w->seed + it))
                w->failed = 1;
        }
    }
    return NULL;
}

static void concurrent_hosts_random_io(void **state)
{
    struct host h;
    struct hammer w[3];
    pthread_t tid[3];
    struct nvl_sim_stats s;
    int i;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem,size=64M,lba=4096,mdts=5,threads=2,lat=20us"), 0);
    assert_int_equal(host_bringup(&h, 3, 32), 0);
    for (i = 0; i < 3; i++) {
        w[i].h = &h;
        w[i].qid = (uint16_t)(i + 1);
        w[i].seed = (uint32_t)(100 + i);
        w[i].iterations = 100;
        w[i].failed = 0;
        assert_int_equal(host_buf(&h, 8 * 33 * 4096, &w[i].wbuf), 0);
        assert_int_equal(host_buf(&h, 8 * 33 * 4096, &w[i].rbuf), 0);
        assert_int_equal(host_buf(&h, 16 * 4096, &w[i].lists), 0);
    }
    for (i = 0; i < 3; i++) {
        assert_int_equal(pthread_create(&tid[i], NULL, hammer_main, &w[i]), 0);
    }
    for (i = 0; i < 3; i++) {
        pthread_join(tid[i], NULL);
        assert_false(w[i].failed);
    }
    host_stats(&h, &s);
    assert_int_equal(s.violations_total, 0);
    assert_int_equal(s.errors, 0);
    assert_true(s.reads >= 3 * 100);
    host_destroy(&h);
}

/* A bad_doorbell test named after its case. */
static struct CMUnitTest bad_doorbell_test(const char *name, const struct bad_doorbell *c)
{
    return (struct CMUnitTest){name, bad_doorbell, NULL, NULL, (void *)c};
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        bad_doorbell_test("sq_tail_out_of_range", &sq_tail_out_of_range),
        cmocka_unit_test(sq_tail_overrun),
        bad_doorbell_test("cq_head_out_of_range", &cq_head_out_of_range),
        cmocka_unit_test(cq_head_past_posted),
        bad_doorbell_test("doorbell_of_absent_queue", &doorbell_of_absent_queue),
        cmocka_unit_test(cq_full_back_pressure),
        cmocka_unit_test(phase_tags_over_wraps),
        cmocka_unit_test(several_threads),
        cmocka_unit_test(concurrent_hosts_random_io),
        cmocka_unit_test(model_bandwidth_accuracy),
        cmocka_unit_test(model_latency),
    };

    nvl_log_set_level(NVL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
